package ws

import (
	"fmt"
	"strings"
	"testing"
)

// BenchmarkReaderNext parses a small masked text frame, the shape of a
// danmaku "send" from a viewer, in the server role.
func BenchmarkReaderNext(b *testing.B) {
	for _, size := range []int{32, 128, 1024, 16384} {
		b.Run(fmt.Sprintf("text/%dB", size), func(b *testing.B) {
			frame := AppendClientFrame(nil, OpText, []byte(strings.Repeat("d", size)), testMask)
			var r Reader
			b.ReportAllocs()
			b.SetBytes(int64(len(frame)))
			for b.Loop() {
				msg, _, ok, err := r.Next(frame)
				if err != nil || !ok {
					b.Fatal(ok, err)
				}
				MaskBytes(testMask, msg.Payload) // mask again for the next round
			}
		})
	}
}

// BenchmarkReaderFragmented parses a text message split into four masked
// fragments (the allocating path).
func BenchmarkReaderFragmented(b *testing.B) {
	var in []byte
	for i := range 4 {
		op := OpContinuation
		if i == 0 {
			op = OpText
		}
		in = append(in, rawFrame(b0(i == 3, op), true, 0, []byte(strings.Repeat("f", 64)))...)
	}
	var r Reader
	b.ReportAllocs()
	b.SetBytes(int64(len(in)))
	for b.Loop() {
		buf := in
		for {
			_, n, ok, err := r.Next(buf)
			if err != nil {
				b.Fatal(err)
			}
			buf = buf[n:]
			if ok {
				break
			}
		}
	}
}

// BenchmarkAppendFrame encodes a server → client text frame into a reused
// buffer, as the dispatch stage does once per batch.
func BenchmarkAppendFrame(b *testing.B) {
	for _, size := range []int{32, 1024, 65536} {
		b.Run(fmt.Sprintf("%dB", size), func(b *testing.B) {
			payload := []byte(strings.Repeat("p", size))
			dst := make([]byte, 0, size+16)
			b.ReportAllocs()
			b.SetBytes(int64(size))
			for b.Loop() {
				dst = AppendFrame(dst[:0], OpText, payload)
			}
		})
	}
}

// BenchmarkAppendClientFrame encodes a masked client frame (bench harness).
func BenchmarkAppendClientFrame(b *testing.B) {
	payload := []byte(strings.Repeat("c", 128))
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(payload)))
	for b.Loop() {
		dst = AppendClientFrame(dst[:0], OpText, payload, NewMask())
	}
}

func BenchmarkMaskBytes(b *testing.B) {
	buf := make([]byte, 4096)
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		MaskBytes(testMask, buf)
	}
}

// BenchmarkHandshake parses a typical browser upgrade request and writes
// the 101 answer.
func BenchmarkHandshake(b *testing.B) {
	req := upgradeReq("GET /ws?room=room_1&token=eyJhbGciOiJIUzI1NiJ9.e30.sig HTTP/1.1", with(nil,
		"Origin: https://live.example", "User-Agent: Mozilla/5.0 (X11; Linux x86_64) Gecko/20100101 Firefox/128.0",
		"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits", "Accept-Language: en-US,en;q=0.5")...)
	dst := make([]byte, 0, 256)
	b.ReportAllocs()
	b.SetBytes(int64(len(req)))
	for b.Loop() {
		h, _, err := ParseUpgrade(req, 0)
		if err != nil {
			b.Fatal(err)
		}
		dst = AppendAccept(dst[:0], h.Key, "")
	}
}
