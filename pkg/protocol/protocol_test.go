package protocol

import (
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidRoom(t *testing.T) {
	tests := []struct {
		room string
		ok   bool
	}{
		{"a", true}, {"Room_1-x", true}, {strings.Repeat("r", 64), true},
		{"", false}, {strings.Repeat("r", 65), false}, {"a b", false}, {"a/b", false}, {"房间", false}, {"a.b", false},
	}
	for _, tt := range tests {
		if got := ValidRoom(tt.room); got != tt.ok {
			t.Errorf("ValidRoom(%q) = %v, want %v", tt.room, got, tt.ok)
		}
	}
}

func TestDecodeClient(t *testing.T) {
	tests := []struct {
		name string
		in   string
		op   string
		code Code
		text string
	}{
		{"ping", `{"op":"ping"}`, OpPing, "", ""},
		{"join", `{"op":"join","room":"r1"}`, OpJoin, "", ""},
		{"join with resume", `{"op":"join","room":"r1","resume":42}`, OpJoin, "", ""},
		{"leave", `{"op":"leave","room":"r1"}`, OpLeave, "", ""},
		{"send", `{"op":"send","room":"r1","id":"m1","text":"  hi\tthere  "}`, OpSend, "", "hi there"},
		{"send strips controls", `{"op":"send","room":"r1","id":"m1","text":"a\u0000b\u202ec"}`, OpSend, "", "abc"},
		{"not an object", `["op"]`, "", CodeInvalid, ""},
		{"empty", ``, "", CodeInvalid, ""},
		{"malformed", `{"op":`, "", CodeInvalid, ""},
		{"missing op", `{"room":"r"}`, "", CodeInvalid, ""},
		{"unknown op", `{"op":"dance"}`, "dance", CodeBadOp, ""},
		{"bad room", `{"op":"join","room":"a b"}`, OpJoin, CodeInvalid, ""},
		{"negative resume", `{"op":"join","room":"r","resume":-1}`, "", CodeInvalid, ""},
		{"send without id", `{"op":"send","room":"r1","text":"x"}`, OpSend, CodeInvalid, ""},
		{"id too long", `{"op":"send","room":"r1","id":"` + strings.Repeat("i", 65) + `","text":"x"}`, OpSend, CodeInvalid, ""},
		{"id with space", `{"op":"send","room":"r1","id":"a b","text":"x"}`, OpSend, CodeInvalid, ""},
		{"empty text", `{"op":"send","room":"r1","id":"m","text":" \n "}`, OpSend, CodeInvalid, ""},
		{"text too long", `{"op":"send","room":"r1","id":"m","text":"` + strings.Repeat("字", MaxTextRunes+1) + `"}`, OpSend, CodeTooLong, ""},
		{"text at the cap", `{"op":"send","room":"r1","id":"m","text":"` + strings.Repeat("字", MaxTextRunes) + `"}`, OpSend, "", strings.Repeat("字", MaxTextRunes)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := DecodeClient([]byte(tt.in))
			if tt.code != "" {
				if err == nil || err.Code != tt.code {
					t.Fatalf("err %v, want code %s", err, tt.code)
				}
				return
			}
			if err != nil {
				t.Fatalf("unexpected error %v", err)
			}
			if f.Op != tt.op || (tt.text != "" && f.Text != tt.text) {
				t.Fatalf("got %+v", f)
			}
		})
	}
}

func TestEncodeRoundTrip(t *testing.T) {
	msgs := []Message{{Room: "r", Seq: 1, UID: "u", Name: "<b>n</b>", Text: `he said "hi" & left`, TS: 5}}
	b := EncodeBatch("r", msgs)
	if strings.Contains(string(b), `"room":"r","seq"`) {
		t.Fatalf("room repeated inside batch: %s", b)
	}
	if msgs[0].Room != "r" {
		t.Fatalf("EncodeBatch modified its input")
	}
	f, err := DecodeServer(b)
	if err != nil || f.Op != OpBatch || f.Room != "r" || len(f.Msgs) != 1 || f.Msgs[0].Text != msgs[0].Text || f.Msgs[0].Name != "<b>n</b>" {
		t.Fatalf("round trip: %+v %v (%s)", f, err, b)
	}
	rj := EncodeReject("id1", "r", &Error{Code: CodeRateLimited, RetryAfter: 1500})
	f, _ = DecodeServer(rj)
	if f.Op != OpReject || f.Code != CodeRateLimited || f.RetryAfterMs != 1 {
		t.Fatalf("reject %s", rj)
	}
}

// FuzzDecodeClient checks the decoder never panics and that what it
// accepts obeys the field rules.
func FuzzDecodeClient(f *testing.F) {
	for _, s := range []string{`{"op":"ping"}`, `{"op":"join","room":"r","resume":1}`, `{"op":"send","room":"r","id":"x","text":"hi"}`, `{"op":"leave","room":"r"}`, `{`, `[]`, `{"op":"send","text":"\ud800"}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		fr, err := DecodeClient(b)
		if err != nil {
			return
		}
		switch fr.Op {
		case OpPing:
		case OpJoin, OpLeave:
			if !ValidRoom(fr.Room) {
				t.Fatalf("accepted bad room %q", fr.Room)
			}
		case OpSend:
			if !ValidRoom(fr.Room) || !ValidID(fr.ID) || fr.Text == "" || !utf8.ValidString(fr.Text) || utf8.RuneCountInString(fr.Text) > MaxTextRunes {
				t.Fatalf("accepted bad send %+v", fr)
			}
			for _, r := range fr.Text {
				if needsCleaning(r) {
					t.Fatalf("control character %U left in text", r)
				}
			}
		default:
			t.Fatalf("accepted unknown op %q", fr.Op)
		}
	})
}

func TestThinnedBatch(t *testing.T) {
	tests := []struct {
		name        string
		b           []byte
		first, last uint64
		from, to    uint64
		msgs        int
	}{
		{"plain", EncodeBatch("r", []Message{{Seq: 3}, {Seq: 4}}), 3, 4, 0, 0, 2},
		{"thinned", EncodeThinned("r", 3, 9, []Message{{Seq: 5}, {Seq: 8}}), 3, 9, 3, 9, 2},
		{"all thinned", EncodeThinned("r", 10, 12, nil), 10, 12, 10, 12, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b Batch
			if err := json.Unmarshal(tt.b, &b); err != nil {
				t.Fatal(err)
			}
			if first, last := b.Range(); first != tt.first || last != tt.last {
				t.Fatalf("Range() = %d, %d; want %d, %d (%s)", first, last, tt.first, tt.last, tt.b)
			}
			f, err := DecodeServer(tt.b)
			if err != nil || f.From != tt.from || f.To != tt.to || len(f.Msgs) != tt.msgs {
				t.Fatalf("DecodeServer(%s) = from %d to %d, %d msgs, %v", tt.b, f.From, f.To, len(f.Msgs), err)
			}
		})
	}
}

func TestDecodeClientRetryMark(t *testing.T) {
	for in, want := range map[string]bool{
		`{"op":"send","room":"r1","id":"m1","text":"x","retry":true}`:  true,
		`{"op":"send","room":"r1","id":"m1","text":"x"}`:               false,
		`{"op":"send","room":"r1","id":"m1","text":"x","retry":false}`: false,
	} {
		f, err := DecodeClient([]byte(in))
		if err != nil || f.Retry != want {
			t.Errorf("%s: retry %v (err %v), want %v", in, f.Retry, err, want)
		}
	}
	if _, err := DecodeClient([]byte(`{"op":"send","room":"r1","id":"m1","text":"x","retry":"yes"}`)); err == nil || err.Code != CodeInvalid {
		t.Errorf("a retry mark that is not a boolean: err %v, want invalid", err)
	}
}

// TestDecodeSendDisplay checks the optional mode and size of a send: the
// wire forms, the spelled-out defaults, and a reject naming the id for an
// unknown value.
func TestDecodeSendDisplay(t *testing.T) {
	for _, tc := range []struct {
		name, frame, mode, size string
		code                    Code
	}{
		{"absent", `{"op":"send","room":"r","id":"a","text":"x"}`, "", "", ""},
		{"top large", `{"op":"send","room":"r","id":"a","text":"x","mode":"top","size":"large"}`, ModeTop, SizeLarge, ""},
		{"bottom small", `{"op":"send","room":"r","id":"a","text":"x","mode":"bottom","size":"small"}`, ModeBottom, SizeSmall, ""},
		{"defaults spelled out", `{"op":"send","room":"r","id":"a","text":"x","mode":"scroll","size":"normal"}`, "", "", ""},
		{"unknown mode", `{"op":"send","room":"r","id":"a","text":"x","mode":"left"}`, "", "", CodeInvalid},
		{"unknown size", `{"op":"send","room":"r","id":"a","text":"x","size":"huge"}`, "", "", CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := DecodeClient([]byte(tc.frame))
			if tc.code != "" {
				if err == nil || err.Code != tc.code || f.ID != "a" || f.Room != "r" {
					t.Fatalf("DecodeClient = %+v, %v; want %s naming the id", f, err, tc.code)
				}
				return
			}
			if err != nil || f.Mode != tc.mode || f.Size != tc.size {
				t.Fatalf("DecodeClient = %+v, %v; want mode %q size %q", f, err, tc.mode, tc.size)
			}
		})
	}
	// Old clients ignore the fields: a message without them encodes none.
	if b := string(Encode(Message{Seq: 1, UID: "u", Name: "n", Text: "t"})); strings.Contains(b, "mode") || strings.Contains(b, "size") {
		t.Fatalf("plain message encodes display fields: %s", b)
	}
}
