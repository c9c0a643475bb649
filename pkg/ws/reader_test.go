package ws

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"unicode/utf8"
	"unsafe"
)

type readerCase struct {
	name string
	r    Reader  // configuration
	in   []byte  // the stream
	want []event // messages in order
	code uint16  // close code of the final error, 0 for none
	left int     // bytes left unconsumed at the end when code == 0
}

func conformanceCases() []readerCase {
	client := Reader{Client: true}
	rsv1 := Reader{AllowRSV1: true}
	small := Reader{MaxMessage: 10}
	big := Reader{MaxMessage: 1 << 20}
	b126 := strings.Repeat("b", 126)
	b125 := strings.Repeat("p", 125)
	b64k := strings.Repeat("x", 65536)

	cases := []readerCase{
		// Well-formed input.
		{name: "text", in: cf(OpText, "Hello"), want: []event{{OpText, "Hello", false}}},
		{name: "binary empty", in: cf(OpBinary, ""), want: []event{{OpBinary, "", false}}},
		{name: "ping", in: cf(OpPing, "hi"), want: []event{{OpPing, "hi", false}}},
		{name: "pong empty", in: cf(OpPong, ""), want: []event{{OpPong, "", false}}},
		{name: "ping 125 bytes", in: cf(OpPing, b125), want: []event{{OpPing, b125, false}}},
		{name: "close with code", in: cf(OpClose, closePayload(1000, "bye")), want: []event{{OpClose, closePayload(1000, "bye"), false}}},
		{name: "close empty", in: cf(OpClose, ""), want: []event{{OpClose, "", false}}},
		{name: "frames back to back", in: cat(cf(OpText, "a"), cf(OpBinary, "bc"), cf(OpPing, "")),
			want: []event{{OpText, "a", false}, {OpBinary, "bc", false}, {OpPing, "", false}}},
		{name: "incomplete header", in: cf(OpText, "Hello")[:1], left: 1},
		{name: "incomplete mask key", in: cf(OpText, "Hello")[:4], left: 4},
		{name: "incomplete payload after a message", in: cat(cf(OpText, "a"), cf(OpText, "Hello")[:8]),
			want: []event{{OpText, "a", false}}, left: 8},
		{name: "16-bit length", in: cf(OpBinary, b126), want: []event{{OpBinary, b126, false}}},
		{name: "64-bit length", r: big, in: cf(OpBinary, b64k), want: []event{{OpBinary, b64k, false}}},
		{name: "client role unmasked", r: client, in: cat(sf(OpText, "hi"), sf(OpPing, "")),
			want: []event{{OpText, "hi", false}, {OpPing, "", false}}},

		// Masking.
		{name: "unmasked frame from client", in: sf(OpText, "hi"), code: CloseProtocolError},
		{name: "unmasked control frame from client", in: sf(OpPing, ""), code: CloseProtocolError},
		{name: "masked frame from server", r: client, in: cf(OpText, "hi"), code: CloseProtocolError},

		// Reserved bits.
		{name: "RSV1 without extension", in: rawFrame(0xC1, true, 0, []byte("x")), code: CloseProtocolError},
		{name: "RSV2", in: rawFrame(0xA1, true, 0, []byte("x")), code: CloseProtocolError},
		{name: "RSV3", in: rawFrame(0x91, true, 0, []byte("x")), code: CloseProtocolError},
		{name: "RSV2 with RSV1 allowed", r: rsv1, in: rawFrame(0xA1, true, 0, []byte("x")), code: CloseProtocolError},
		{name: "RSV1 allowed marks compressed", r: rsv1, in: rawFrame(0xC1, true, 0, []byte("\xff\x00")),
			want: []event{{OpText, "\xff\x00", true}}},
		{name: "RSV1 allowed on first fragment", r: rsv1,
			in:   cat(rawFrame(0x42, true, 0, []byte("ab")), cfrag(OpContinuation, true, "c")),
			want: []event{{OpBinary, "abc", true}}},
		{name: "RSV1 on continuation", r: rsv1,
			in:   cat(cfrag(OpText, false, "a"), rawFrame(0xC0, true, 0, []byte("b"))),
			code: CloseProtocolError},
		{name: "RSV1 on control frame", r: rsv1, in: rawFrame(0xC9, true, 0, nil), code: CloseProtocolError},

		// Control frames.
		{name: "ping over 125 bytes", in: rawFrame(0x89, true, 0, []byte(b126)), code: CloseProtocolError},
		{name: "ping declaring 126 without length bytes", in: []byte{0x89, 0xFE}, code: CloseProtocolError},
		{name: "ping 125 bytes in 16-bit form", in: rawFrame(0x89, true, 126, []byte(b125)), code: CloseProtocolError},
		{name: "fragmented ping", in: rawFrame(0x09, true, 0, nil), code: CloseProtocolError},
		{name: "fragmented close", in: rawFrame(0x08, true, 0, []byte(closePayload(1000, ""))), code: CloseProtocolError},
		{name: "fragmented pong", in: rawFrame(0x0A, true, 0, nil), code: CloseProtocolError},

		// Fragmentation.
		{name: "fragmented text", in: cat(cfrag(OpText, false, "Hel"), cfrag(OpContinuation, false, "lo "), cfrag(OpContinuation, true, "world")),
			want: []event{{OpText, "Hello world", false}}},
		{name: "fragmented binary", in: cat(cfrag(OpBinary, false, "\x00\xff"), cfrag(OpContinuation, true, "\x01")),
			want: []event{{OpBinary, "\x00\xff\x01", false}}},
		{name: "empty fragments", in: cat(cfrag(OpText, false, ""), cfrag(OpContinuation, false, ""), cfrag(OpContinuation, true, "")),
			want: []event{{OpText, "", false}}},
		{name: "ping between fragments", in: cat(cfrag(OpText, false, "Hel"), cf(OpPing, "p"), cfrag(OpContinuation, true, "lo")),
			want: []event{{OpPing, "p", false}, {OpText, "Hello", false}}},
		{name: "pong and close between fragments", in: cat(cfrag(OpBinary, false, "a"), cf(OpPong, ""), cfrag(OpContinuation, false, "b"),
			cf(OpClose, closePayload(1001, "")), cfrag(OpContinuation, true, "c"), cf(OpText, "next")),
			want: []event{{OpPong, "", false}, {OpClose, closePayload(1001, ""), false}, {OpBinary, "abc", false}, {OpText, "next", false}}},
		{name: "continuation without message", in: cfrag(OpContinuation, true, "x"), code: CloseProtocolError},
		{name: "continuation after completed message", in: cat(cfrag(OpText, false, "a"), cfrag(OpContinuation, true, "b"), cfrag(OpContinuation, true, "c")),
			want: []event{{OpText, "ab", false}}, code: CloseProtocolError},
		{name: "text while fragmented", in: cat(cfrag(OpText, false, "a"), cf(OpText, "b")), code: CloseProtocolError},
		{name: "binary while fragmented", in: cat(cfrag(OpText, false, "a"), cfrag(OpBinary, false, "b")), code: CloseProtocolError},
		{name: "client role fragments", r: client, in: cat(rawFrame(0x01, false, 0, []byte("a")), sf(OpPing, ""), rawFrame(0x80, false, 0, []byte("b"))),
			want: []event{{OpPing, "", false}, {OpText, "ab", false}}},

		// Length encoding.
		{name: "16-bit form for 125", in: rawFrame(0x82, true, 126, []byte(b125)), code: CloseProtocolError},
		{name: "16-bit form for 0", in: rawFrame(0x82, true, 126, nil), code: CloseProtocolError},
		{name: "64-bit form for 65535", r: big, in: rawHeader(0x82, true, 127, 65535), code: CloseProtocolError},
		{name: "64-bit form for 126", in: rawFrame(0x82, true, 127, []byte(b126)), code: CloseProtocolError},
		{name: "64-bit length top bit", r: big, in: rawHeader(0x82, true, 127, 1<<63|5), code: CloseProtocolError},
		{name: "64-bit length all ones", r: big, in: rawHeader(0x82, true, 127, ^uint64(0)), code: CloseProtocolError},

		// Message size.
		{name: "frame over max", r: small, in: cf(OpText, "01234567890"), code: CloseMessageTooBig},
		{name: "frame over max from header alone", r: small, in: rawHeader(0x81, true, 0, 11)[:2], code: CloseMessageTooBig},
		{name: "frame at max", r: small, in: cf(OpText, "0123456789"), want: []event{{OpText, "0123456789", false}}},
		{name: "fragments over max", r: small, in: cat(cfrag(OpText, false, "012345"), rawHeader(0x80, true, 0, 5)), code: CloseMessageTooBig},
		{name: "fragments at max", r: small, in: cat(cfrag(OpText, false, "01234"), cfrag(OpContinuation, true, "56789")),
			want: []event{{OpText, "0123456789", false}}},
		{name: "default max from 64-bit header", in: rawHeader(0x82, true, 127, DefaultMaxMessage+1), code: CloseMessageTooBig},
		{name: "default max exactly", in: cf(OpBinary, strings.Repeat("y", DefaultMaxMessage)),
			want: []event{{OpBinary, strings.Repeat("y", DefaultMaxMessage), false}}},
		{name: "huge 64-bit length", in: rawHeader(0x82, true, 127, 1<<62), code: CloseMessageTooBig},
		{name: "control frames ignore max", r: Reader{MaxMessage: 1}, in: cf(OpPing, b125), want: []event{{OpPing, b125, false}}},

		// UTF-8.
		{name: "text invalid byte", in: cf(OpText, "ok\xff"), code: CloseInvalidPayload},
		{name: "text overlong", in: cf(OpText, "\xc0\x80"), code: CloseInvalidPayload},
		{name: "text overlong 3-byte", in: cf(OpText, "\xe0\x80\xaf"), code: CloseInvalidPayload},
		{name: "text surrogate", in: cf(OpText, "\xed\xa0\x80"), code: CloseInvalidPayload},
		{name: "text beyond U+10FFFF", in: cf(OpText, "\xf4\x90\x80\x80"), code: CloseInvalidPayload},
		{name: "text truncated rune", in: cf(OpText, "a\xe2\x82"), code: CloseInvalidPayload},
		{name: "text multibyte ok", in: cf(OpText, "κόσμε €𝄞"), want: []event{{OpText, "κόσμε €𝄞", false}}},
		{name: "binary not validated", in: cf(OpBinary, "\xff\xfe"), want: []event{{OpBinary, "\xff\xfe", false}}},
		{name: "rune split across fragments", in: cat(cfrag(OpText, false, "a\xe2"), cfrag(OpContinuation, false, "\x82"), cfrag(OpContinuation, true, "\xacb")),
			want: []event{{OpText, "a€b", false}}},
		{name: "4-byte rune one byte per fragment", in: cat(cfrag(OpText, false, "\xf0"), cfrag(OpContinuation, false, "\x9d"),
			cfrag(OpContinuation, false, "\x84"), cfrag(OpContinuation, true, "\x9e")),
			want: []event{{OpText, "𝄞", false}}},
		{name: "invalid prefix fails on first fragment", in: cat(cfrag(OpText, false, "a\xed\xa0"), cfrag(OpContinuation, true, "\x80")),
			code: CloseInvalidPayload},
		{name: "invalid prefix fails before final", in: cat(cfrag(OpText, false, "ok"), cfrag(OpContinuation, false, "\xf4\x90")),
			code: CloseInvalidPayload},
		{name: "overlong split across fragments", in: cat(cfrag(OpText, false, "\xe0"), cfrag(OpContinuation, true, "\x80\xaf")),
			code: CloseInvalidPayload},
		{name: "surrogate split across fragments", in: cat(cfrag(OpText, false, "\xed"), cfrag(OpContinuation, true, "\xa0\x80")),
			code: CloseInvalidPayload},
		{name: "invalid continuation in later fragment", in: cat(cfrag(OpText, false, "a\xe2"), cfrag(OpContinuation, true, "b")),
			code: CloseInvalidPayload},
		{name: "incomplete rune at final fragment", in: cat(cfrag(OpText, false, "a\xe2\x82"), cfrag(OpContinuation, true, "")),
			code: CloseInvalidPayload},
		{name: "binary fragments not validated", in: cat(cfrag(OpBinary, false, "\xe2"), cfrag(OpContinuation, true, "")),
			want: []event{{OpBinary, "\xe2", false}}},

		// Close payloads.
		{name: "close one byte", in: cf(OpClose, "\x03"), code: CloseProtocolError},
		{name: "close reason invalid UTF-8", in: cf(OpClose, closePayload(1000, "\xff")), code: CloseInvalidPayload},
		{name: "close reason valid", in: cf(OpClose, closePayload(4000, "ünïcode")), want: []event{{OpClose, closePayload(4000, "ünïcode"), false}}},
	}
	for _, code := range []uint16{0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, 65535} {
		cases = append(cases, readerCase{name: fmt.Sprintf("close code %d invalid", code),
			in: cf(OpClose, closePayload(code, "")), code: CloseProtocolError})
	}
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999} {
		cases = append(cases, readerCase{name: fmt.Sprintf("close code %d valid", code),
			in: cf(OpClose, closePayload(code, "r")), want: []event{{OpClose, closePayload(code, "r"), false}}})
	}
	for _, op := range []byte{3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF} {
		cases = append(cases, readerCase{name: fmt.Sprintf("reserved opcode %d", op),
			in: rawFrame(0x80|op, true, 0, []byte("x")), code: CloseProtocolError})
		cases = append(cases, readerCase{name: fmt.Sprintf("reserved opcode %d client role", op), r: client,
			in: rawFrame(0x80|op, false, 0, nil), code: CloseProtocolError})
	}
	return cases
}

func TestReaderConformance(t *testing.T) {
	for _, tc := range conformanceCases() {
		t.Run(tc.name, func(t *testing.T) {
			got := feedAll(t, tc.r, tc.in)
			if !reflect.DeepEqual(got.Msgs, tc.want) {
				t.Errorf("messages:\n got  %v\n want %v", got.Msgs, tc.want)
			}
			if got.Code != tc.code {
				t.Errorf("close code = %d, want %d", got.Code, tc.code)
			}
			if tc.code == 0 {
				if left := len(tc.in) - got.Consumed; left != tc.left {
					t.Errorf("left %d bytes unconsumed, want %d", left, tc.left)
				}
			}
		})
	}
}

func TestReaderErrorLeavesBufferIntact(t *testing.T) {
	// Payload checks happen after unmasking; a rejected frame must be
	// masked again so the caller's buffer is unchanged.
	for _, in := range [][]byte{
		cf(OpText, "bad \xff utf8"),
		cf(OpClose, closePayload(1000, "\xff")),
		cf(OpClose, closePayload(1005, "")),
		cat(cfrag(OpText, false, "a"), cfrag(OpContinuation, true, "\xff")),
	} {
		buf := bytes.Clone(in)
		var r Reader
		var err error
		for n := 0; err == nil; {
			var k int
			_, k, _, err = r.Next(buf[n:])
			n += k
		}
		if !bytes.Equal(buf, in) {
			t.Errorf("buffer modified by rejected frame %x", in)
		}
	}
}

func TestReaderUnfragmentedAliasesBuffer(t *testing.T) {
	buf := cf(OpText, "Hello")
	var r Reader
	msg, n, ok, err := r.Next(buf)
	if err != nil || !ok || n != len(buf) {
		t.Fatalf("Next = n %d ok %v err %v", n, ok, err)
	}
	if &msg.Payload[0] != &buf[6] {
		t.Error("payload of an unfragmented frame does not alias the input buffer")
	}
	if string(buf[6:]) != "Hello" {
		t.Errorf("payload not unmasked in place: %q", buf[6:])
	}
}

func TestReaderFragmentBufferReleased(t *testing.T) {
	var r Reader
	in := cat(cfrag(OpText, false, "ab"), cf(OpPing, ""), cfrag(OpContinuation, true, "c"))
	_, n, ok, err := r.Next(in)
	if err != nil || ok || !r.InProgress() {
		t.Fatalf("first fragment: ok %v err %v inProgress %v", ok, err, r.InProgress())
	}
	in = in[n:]
	msg, n, ok, err := r.Next(in)
	if err != nil || !ok || msg.Op != OpPing || !r.InProgress() {
		t.Fatalf("ping: %v ok %v err %v inProgress %v", msg.Op, ok, err, r.InProgress())
	}
	msg, _, ok, err = r.Next(in[n:])
	if err != nil || !ok || string(msg.Payload) != "abc" {
		t.Fatalf("final: %q ok %v err %v", msg.Payload, ok, err)
	}
	if r.InProgress() || r.frag != nil {
		t.Error("fragment buffer kept after the message completed")
	}
	r.frag = &fragment{op: OpText}
	r.Reset()
	if r.InProgress() {
		t.Error("Reset kept the message in progress")
	}
}

func TestReaderSize(t *testing.T) {
	if size := unsafe.Sizeof(Reader{}); size > 3*unsafe.Sizeof(uintptr(0)) {
		t.Errorf("Reader is %d bytes, want at most three words", size)
	}
}

func TestReaderZeroAllocs(t *testing.T) {
	frame := cf(OpText, `{"op":"send","room":"r1","text":"hello"}`)
	ping := cf(OpPing, "x")
	var r Reader
	allocs := testing.AllocsPerRun(1000, func() {
		for _, f := range [][]byte{frame, ping} {
			msg, _, ok, err := r.Next(f)
			if err != nil || !ok {
				t.Fatalf("Next: ok %v err %v", ok, err)
			}
			MaskBytes(testMask, msg.Payload) // restore for the next run
		}
	})
	if allocs != 0 {
		t.Errorf("Next allocates %.1f times per unfragmented frame, want 0", allocs)
	}
}

func TestRoundTrip(t *testing.T) {
	sizes := []int{0, 1, 125, 126, 65535, 65536}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, size := range sizes {
		payload := make([]byte, size)
		for i := range payload {
			payload[i] = byte(rng.IntN(256))
		}
		text := []byte(strings.Repeat("é", size/2) + strings.Repeat("a", size%2))
		for _, tc := range []struct {
			op      OpCode
			payload []byte
		}{{OpBinary, payload}, {OpText, text}} {
			t.Run(fmt.Sprintf("%v/%d/client to server", tc.op, size), func(t *testing.T) {
				in := AppendClientFrame(nil, tc.op, tc.payload, NewMask())
				got := feedAll(t, Reader{MaxMessage: 1 << 20}, in)
				want := []event{{tc.op, string(tc.payload), false}}
				if !reflect.DeepEqual(got.Msgs, want) || got.Code != 0 || got.Consumed != len(in) {
					t.Fatalf("got %+v", got)
				}
			})
			t.Run(fmt.Sprintf("%v/%d/server to client", tc.op, size), func(t *testing.T) {
				in := AppendFrame(nil, tc.op, tc.payload)
				got := feedAll(t, Reader{Client: true, MaxMessage: 1 << 20}, in)
				want := []event{{tc.op, string(tc.payload), false}}
				if !reflect.DeepEqual(got.Msgs, want) || got.Code != 0 || got.Consumed != len(in) {
					t.Fatalf("got %+v", got)
				}
			})
		}
	}
}

func TestFragmentedWithInterleavedPing(t *testing.T) {
	// A 3000-byte text message in fragments built with AppendFrameHeader,
	// a ping after every fragment.
	msg := strings.Repeat("弹幕", 500) // 3000 bytes, runes cut by the fragment size
	var in []byte
	var pings []event
	for off, i := 0, 0; off < len(msg); i++ {
		end := min(off+701, len(msg))
		op := OpContinuation
		if off == 0 {
			op = OpText
		}
		in = AppendFrameHeader(in, op, end == len(msg), end-off)
		in = append(in, msg[off:end]...)
		ping := fmt.Sprintf("ping %d", i)
		in = AppendFrame(in, OpPing, []byte(ping))
		pings = append(pings, event{OpPing, ping, false})
		off = end
	}
	got := feedAll(t, Reader{Client: true}, in)
	// The final fragment completes the message before the last ping.
	want := append(pings[:len(pings)-1:len(pings)-1], event{OpText, msg, false}, pings[len(pings)-1])
	if !reflect.DeepEqual(got.Msgs, want) || got.Code != 0 || got.Frags != len(pings)-1 {
		t.Fatalf("got %d msgs %d frags code %d, want %d msgs", len(got.Msgs), got.Frags, got.Code, len(want))
	}
}

func TestUTF8Incremental(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	samples := []string{"", "ascii only text", "κόσμε", "€𝄞 mix of 1-4 byte runes ü", "\xed\x9f\xbf\xee\x80\x80", "\xf4\x8f\xbf\xbf"}
	alphabet := []byte{0x00, 0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xec, 0xed, 0xee, 0xef, 0xf0, 0xf1, 0xf3, 0xf4, 0xf5, 0xff}
	for range 20000 {
		b := make([]byte, rng.IntN(12))
		for i := range b {
			b[i] = alphabet[rng.IntN(len(alphabet))]
		}
		samples = append(samples, string(b))
	}
	for _, s := range samples {
		want := utf8.ValidString(s)
		for split := 0; split <= len(s); split++ {
			st, ok := validUTF8(0, []byte(s[:split]))
			if ok {
				st, ok = validUTF8(st, []byte(s[split:]))
			}
			if got := ok && st == 0; got != want {
				t.Fatalf("%q split at %d: valid %v, want %v", s, split, got, want)
			}
			// A failing prefix must fail on its own: no valid
			// continuation could follow it.
			if _, pok := validUTF8(0, []byte(s[:split])); !pok && validPrefix(s[:split]) {
				t.Fatalf("%q: prefix %q rejected but can be completed", s, s[:split])
			}
		}
	}
}

// validPrefix reports whether some suffix makes p valid UTF-8.
func validPrefix(p string) bool {
	for _, tail := range []string{"", "\x80", "\x80\x80", "\x80\x80\x80", "\x90\x80\x80", "\xa0\x80", "\xbf", "\xbf\xbf", "\xbf\xbf\xbf"} {
		if utf8.ValidString(p + tail) {
			return true
		}
	}
	return false
}

func TestParseClose(t *testing.T) {
	tests := []struct {
		name    string
		payload string
		code    uint16
		reason  string
		errCode uint16
	}{
		{"empty", "", CloseNoStatus, "", 0},
		{"code only", closePayload(1000, ""), 1000, "", 0},
		{"code and reason", closePayload(4001, "room closed"), 4001, "room closed", 0},
		{"one byte", "\x03", 0, "", CloseProtocolError},
		{"code 1005", closePayload(1005, ""), 0, "", CloseProtocolError},
		{"code 999", closePayload(999, ""), 0, "", CloseProtocolError},
		{"bad reason", closePayload(1000, "\xc3"), 0, "", CloseInvalidPayload},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			code, reason, err := ParseClose([]byte(tc.payload))
			var ce *CloseError
			switch {
			case tc.errCode != 0 && (!errors.As(err, &ce) || ce.Code != tc.errCode):
				t.Fatalf("err = %v, want close code %d", err, tc.errCode)
			case tc.errCode == 0 && err != nil:
				t.Fatalf("err = %v", err)
			}
			if code != tc.code || reason != tc.reason {
				t.Errorf("ParseClose = %d %q, want %d %q", code, reason, tc.code, tc.reason)
			}
		})
	}
}

func TestValidCloseCode(t *testing.T) {
	valid := map[uint16]bool{}
	for _, c := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014} {
		valid[c] = true
	}
	for c := range 65536 {
		code := uint16(c)
		want := valid[code] || code >= 3000 && code <= 4999
		if got := ValidCloseCode(code); got != want {
			t.Errorf("ValidCloseCode(%d) = %v, want %v", code, got, want)
		}
	}
}
