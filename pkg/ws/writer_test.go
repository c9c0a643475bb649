package ws

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestAppendFrameHeaderLengths(t *testing.T) {
	tests := []struct {
		name   string
		op     OpCode
		fin    bool
		length int
		want   []byte
	}{
		{"empty final text", OpText, true, 0, []byte{0x81, 0x00}},
		{"non-final binary", OpBinary, false, 5, []byte{0x02, 0x05}},
		{"continuation", OpContinuation, true, 1, []byte{0x80, 0x01}},
		{"7-bit max", OpBinary, true, 125, []byte{0x82, 125}},
		{"16-bit min", OpBinary, true, 126, []byte{0x82, 126, 0x00, 0x7e}},
		{"16-bit max", OpBinary, true, 65535, []byte{0x82, 126, 0xff, 0xff}},
		{"64-bit min", OpBinary, true, 65536, []byte{0x82, 127, 0, 0, 0, 0, 0, 1, 0, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := AppendFrameHeader([]byte("prefix"), tc.op, tc.fin, tc.length)
			if !bytes.Equal(got, append([]byte("prefix"), tc.want...)) {
				t.Errorf("AppendFrameHeader = %x, want prefix+%x", got, tc.want)
			}
		})
	}
}

func TestAppendClientFrameKeepsPayload(t *testing.T) {
	payload := []byte(strings.Repeat("payload ", 40))
	orig := bytes.Clone(payload)
	mask := [4]byte{1, 2, 3, 4}
	frame := AppendClientFrame(nil, OpBinary, payload, mask)
	if !bytes.Equal(payload, orig) {
		t.Fatal("AppendClientFrame modified its payload argument")
	}
	// 320 bytes: 16-bit length, then the mask key, then the masked payload.
	if frame[0] != 0x82 || frame[1] != 0x80|126 || binary.BigEndian.Uint16(frame[2:]) != 320 ||
		[4]byte(frame[4:8]) != mask || len(frame) != 8+320 {
		t.Fatalf("bad header %x", frame[:8])
	}
	body := bytes.Clone(frame[8:])
	MaskBytes(mask, body)
	if !bytes.Equal(body, payload) {
		t.Error("payload does not unmask to the original")
	}
}

func TestMaskBytes(t *testing.T) {
	mask := [4]byte{0xde, 0xad, 0xbe, 0xef}
	for n := range 100 {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(i * 7)
		}
		got := bytes.Clone(b)
		MaskBytes(mask, got)
		for i := range b {
			if got[i] != b[i]^mask[i%4] {
				t.Fatalf("len %d: byte %d = %#x, want %#x", n, i, got[i], b[i]^mask[i%4])
			}
		}
		MaskBytes(mask, got)
		if !bytes.Equal(got, b) {
			t.Fatalf("len %d: masking twice is not the identity", n)
		}
	}
}

func TestAppendClose(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes, runes of two bytes
	tests := []struct {
		name   string
		code   uint16
		reason string
		want   string // payload
	}{
		{"normal", CloseNormal, "bye", "\x03\xe8bye"},
		{"no reason", CloseGoingAway, "", "\x03\xe9"},
		{"no status", CloseNoStatus, "ignored", ""},
		{"zero code", 0, "ignored", ""},
		{"truncated at rune boundary", CloseProtocolError, long, "\x03\xea" + long[:122]},
		{"ascii truncated to 123", CloseProtocolError, strings.Repeat("a", 200), "\x03\xea" + strings.Repeat("a", 123)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			frame := AppendClose(nil, tc.code, tc.reason)
			want := AppendFrame(nil, OpClose, []byte(tc.want))
			if !bytes.Equal(frame, want) {
				t.Fatalf("AppendClose = %x, want %x", frame, want)
			}
			if len(frame)-2 > MaxControlPayload || len(frame) > 4 && !utf8.Valid(frame[4:]) {
				t.Fatal("close frame too long or reason cut inside a rune")
			}
			// Our own close frames must pass our own Reader.
			out := feed(t, Reader{Client: true}, frame, nil)
			if out.Code != 0 || len(out.Msgs) != 1 {
				t.Fatalf("client Reader rejected the close frame: %+v", out)
			}
		})
	}
}

func TestNewMaskVaries(t *testing.T) {
	seen := map[[4]byte]bool{}
	for range 64 {
		seen[NewMask()] = true
	}
	if len(seen) < 60 {
		t.Errorf("only %d distinct masks in 64 draws", len(seen))
	}
}

func TestOpCodeString(t *testing.T) {
	for op, want := range map[OpCode]string{OpText: "text", OpClose: "close", 3: "op(3)"} {
		if got := op.String(); got != want {
			t.Errorf("%d.String() = %q, want %q", byte(op), got, want)
		}
	}
}
