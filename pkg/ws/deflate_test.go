package ws

import (
	"bytes"
	"compress/flate"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
)

func TestAcceptDeflate(t *testing.T) {
	tests := []struct {
		ext  string
		want bool
	}{
		{"", false},
		{"permessage-deflate", true},
		{"permessage-deflate; client_max_window_bits", true}, // Chromium, node ws
		{"permessage-deflate; client_max_window_bits=10; server_no_context_takeover", true},
		{"permessage-deflate; server_max_window_bits=10", false},
		{"permessage-deflate; server_max_window_bits=10, permessage-deflate", true},
		{"permessage-deflate; server_max_window_bits=15", true},
		{"permessage-deflate; unknown_param", false},
		{"x-webkit-deflate-frame", false},
		{"PerMessage-Deflate ; Client_No_Context_Takeover", true},
	}
	for _, tt := range tests {
		t.Run(tt.ext, func(t *testing.T) {
			if got := AcceptDeflate(tt.ext); got != tt.want {
				t.Fatalf("AcceptDeflate(%q) = %v, want %v", tt.ext, got, tt.want)
			}
		})
	}
}

// unframe returns the payload of a server frame, checking RSV1.
func unframe(t *testing.T, frame []byte) []byte {
	t.Helper()
	r := Reader{Client: true, AllowRSV1: true, MaxMessage: 1 << 20}
	msg, n, ok, err := r.Next(frame)
	if err != nil || !ok || n != len(frame) || !msg.Compressed {
		t.Fatalf("Next: ok=%v n=%d/%d compressed=%v err=%v", ok, n, len(frame), msg.Compressed, err)
	}
	return msg.Payload
}

func TestDeflateRoundTrip(t *testing.T) {
	var d Deflater
	var f Inflater
	for _, p := range []string{"", "a", `{"op":"batch","room":"r","msgs":[]}`, strings.Repeat(`{"seq":1,"text":"hello 弾幕"},`, 500)} {
		frame := d.AppendFrame(nil, OpText, []byte(p))
		z := unframe(t, frame)
		got, err := f.Inflate(z, 1<<20, true)
		if err != nil || string(got) != p {
			t.Fatalf("Inflate(%d bytes) = %d bytes, %v", len(p), len(got), err)
		}
		// A standard inflater reads it too (what browsers do).
		std, err := io.ReadAll(flate.NewReader(io.MultiReader(bytes.NewReader(z), bytes.NewReader([]byte{0, 0, 0xff, 0xff, 1, 0, 0, 0xff, 0xff}))))
		if err != nil || string(std) != p {
			t.Fatalf("flate reader: %d bytes, %v", len(std), err)
		}
	}
}

func TestInflateErrors(t *testing.T) {
	var d Deflater
	big := d.AppendFrame(nil, OpText, bytes.Repeat([]byte("x"), 5000))
	bad := d.AppendFrame(nil, OpText, []byte{'a', 0xff, 'b'})
	tests := []struct {
		name string
		z    []byte
		text bool
		code uint16
	}{
		{"too big", unframe(t, big), true, CloseMessageTooBig},
		{"bad utf8", unframe(t, bad), true, CloseInvalidPayload},
		{"garbage", []byte{0xff, 0xff, 0xff, 0xff}, true, CloseProtocolError},
	}
	var f Inflater
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.Inflate(tt.z, 4096, tt.text)
			var ce *CloseError
			if !errors.As(err, &ce) || ce.Code != tt.code {
				t.Fatalf("Inflate error = %v, want close code %d", err, tt.code)
			}
		})
	}
	// The inflater works again after an error.
	ok := d.AppendFrame(nil, OpText, []byte("fine"))
	if got, err := f.Inflate(unframe(t, ok), 4096, true); err != nil || string(got) != "fine" {
		t.Fatalf("after errors: %q, %v", got, err)
	}
}

func BenchmarkDeflateBatch(b *testing.B) {
	// 50 messages with distinct seqs, users and texts.
	words := strings.Fields("gg nice play lol 233333 what a save no way clutch rip hype pog first time here hello from berlin")
	p := []byte(`{"op":"batch","room":"bench","msgs":[`)
	for i := range 50 {
		if i > 0 {
			p = append(p, ',')
		}
		text := words[i%len(words)] + " " + words[(i*7)%len(words)] + " " + words[(i*13+5)%len(words)]
		p = fmt.Appendf(p, `{"seq":%d,"uid":"u%d","name":"viewer %d","text":%q,"ts":%d}`, 123456+i, i*7919%100000, i*7919%100000, text, 1764132000000+int64(i*19))
	}
	p = append(p, "]}"...)
	var d Deflater
	var frame []byte
	b.SetBytes(int64(len(p)))
	for b.Loop() {
		frame = d.AppendFrame(frame[:0], OpText, p)
	}
	b.ReportMetric(float64(len(frame))/float64(len(p)), "ratio")
}
