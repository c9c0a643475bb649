package protocol

import (
	"reflect"
	"strings"
	"testing"
)

// TestCompactRoundTrip: a compact batch decodes to the same frame as the
// plain one for every kind of message (names equal to the uid or not,
// optional fields, escapes, a ts going backwards, thinned seqs), and is
// smaller.
func TestCompactRoundTrip(t *testing.T) {
	msgs := []Message{
		{Seq: 1043, UID: "u17", Name: "u17", Text: "233333", TS: 1733490000123},
		{Seq: 1044, UID: "u18", Name: "Bob \"B\"", Text: "哈哈哈 \\ \n\t\x01 😀", TS: 1733490000135},
		{Seq: 1046, UID: "m1", Name: "m1", Text: "？？？", TS: 1733490000100, Role: "mod", ID: "abc"},
		{Seq: 1050, UID: "s", Name: "Streamer", Text: "hi", TS: 1733490000200, Kind: KindPaid, Color: "#ff0000", Mode: ModeTop, Size: SizeLarge},
		{Seq: 1051, UID: "u9", Name: "u9", Text: "", TS: 1733490000200, Deleted: true},
	}
	for _, tc := range []struct {
		name     string
		from, to uint64
		plain    []byte
	}{
		{"thinned", 1043, 1052, EncodeThinned("demo", 1043, 1052, msgs)},
		{"full", 0, 0, EncodeBatch("demo", msgs[:2])},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ms := msgs
			if tc.to == 0 {
				ms = msgs[:2]
			}
			c := EncodeCompact("demo", tc.from, tc.to, ms)
			want, err := DecodeServer(tc.plain)
			if err != nil {
				t.Fatal(err)
			}
			got, err := DecodeServer(c)
			if err != nil {
				t.Fatalf("%s: %v", c, err)
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("compact %s\ndecodes to %+v\nplain to   %+v", c, got, want)
			}
			if len(c) >= len(tc.plain) {
				t.Fatalf("compact %d bytes, plain %d", len(c), len(tc.plain))
			}
			t.Logf("%d bytes compact, %d plain: %s", len(c), len(tc.plain), c)
		})
	}
	// No messages: the plain mark-only batch.
	if c, p := EncodeCompact("demo", 5, 9, nil), EncodeThinned("demo", 5, 9, nil); string(c) != string(p) {
		t.Fatalf("empty compact %s, plain %s", c, p)
	}
}

// TestCompactBadInput: malformed compact messages are an error, not a
// crash or a silently wrong message.
func TestCompactBadInput(t *testing.T) {
	for _, in := range []string{
		`{"op":"batch","room":"r","seq":1,"ts":1,"m":[[0,0,"x"]]}`,
		`{"op":"batch","room":"r","seq":1,"ts":1,"m":[[0,0,"x","u","n",{},7]]}`,
		`{"op":"batch","room":"r","seq":1,"ts":1,"m":[["a",0,"x","u"]]}`,
		`{"op":"batch","room":"r","seq":1,"ts":1,"m":[{"seq":1}]}`,
		`{"op":"batch","room":"r","seq":1,"ts":1,"m":[[0,0,"x","u",5]]}`,
	} {
		if f, err := DecodeServer([]byte(in)); err == nil {
			t.Errorf("%s decoded to %+v", in, f)
		} else if !strings.Contains(err.Error(), "compact message 0") {
			t.Errorf("%s: %v", in, err)
		}
	}
}

// TestCompactCoversMessage: every field of Message has its place in the
// compact form; a field added to Message must be added there too (and to
// docs/protocol.md, "Compact batches").
func TestCompactCoversMessage(t *testing.T) {
	carried := map[string]bool{"Room": true, "Seq": true, "TS": true, "Text": true, "UID": true, "Name": true}
	x := reflect.TypeOf(compactExtra{})
	for i := range x.NumField() {
		carried[x.Field(i).Name] = true
	}
	m := reflect.TypeOf(Message{})
	for i := range m.NumField() {
		if !carried[m.Field(i).Name] {
			t.Errorf("Message.%s is not carried by compact batches", m.Field(i).Name)
		}
	}
}
