package ws

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"reflect"
	"testing"
)

// testMask is the masking key of the RFC 6455 section 5.7 examples.
var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// rawFrame builds one frame from its first header byte. lenForm forces the
// length encoding (126 or 127); 0 picks the minimal one.
func rawFrame(b0 byte, masked bool, lenForm int, payload []byte) []byte {
	out := rawHeader(b0, masked, lenForm, uint64(len(payload)))
	start := len(out)
	out = append(out, payload...)
	if masked {
		MaskBytes(testMask, out[start:])
	}
	return out
}

// rawHeader builds a frame header declaring length (mask key included).
func rawHeader(b0 byte, masked bool, lenForm int, length uint64) []byte {
	var mb byte
	if masked {
		mb = 0x80
	}
	out := []byte{b0}
	switch {
	case lenForm == 127 || lenForm == 0 && length > 0xffff:
		out = binary.BigEndian.AppendUint64(append(out, mb|127), length)
	case lenForm == 126 || lenForm == 0 && length >= 126:
		out = binary.BigEndian.AppendUint16(append(out, mb|126), uint16(length))
	default:
		out = append(out, mb|byte(length))
	}
	if masked {
		out = append(out, testMask[:]...)
	}
	return out
}

func b0(fin bool, op OpCode) byte {
	if fin {
		return 0x80 | byte(op)
	}
	return byte(op)
}

// cf is a final masked (client → server) frame.
func cf(op OpCode, payload string) []byte { return rawFrame(b0(true, op), true, 0, []byte(payload)) }

// cfrag is a masked fragment.
func cfrag(op OpCode, fin bool, payload string) []byte {
	return rawFrame(b0(fin, op), true, 0, []byte(payload))
}

// sf is a final unmasked (server → client) frame.
func sf(op OpCode, payload string) []byte { return rawFrame(b0(true, op), false, 0, []byte(payload)) }

func closePayload(code uint16, reason string) string {
	return string(binary.BigEndian.AppendUint16(nil, code)) + reason
}

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// event is one message as seen by the caller.
type event struct {
	Op         OpCode
	Payload    string
	Compressed bool
}

func (e event) String() string {
	p := e.Payload
	if len(p) > 40 {
		p = fmt.Sprintf("%q...(%d bytes)", p[:20], len(p))
	} else {
		p = fmt.Sprintf("%q", p)
	}
	return fmt.Sprintf("%v %s c=%v", e.Op, p, e.Compressed)
}

// outcome is everything observable from feeding a stream to a Reader.
type outcome struct {
	Msgs     []event
	Frags    int    // non-final fragments consumed
	Code     uint16 // close code of the *CloseError that stopped the stream, 0 if none
	Consumed int    // bytes consumed in total
}

// feed runs a Reader configured like cfg over input, delivering it in
// chunks that end at the given cut offsets, the way an event loop would:
// unconsumed bytes are kept and more are appended to them. It checks the
// Reader's contract on every call.
func feed(t testing.TB, cfg Reader, input []byte, cuts []int) outcome {
	t.Helper()
	r := cfg
	r.frag = nil
	var out outcome
	var buf []byte
	fed := 0
	checkUntouched := len(input) <= 4096
	for ci := 0; ci <= len(cuts); ci++ {
		next := len(input)
		if ci < len(cuts) {
			next = cuts[ci]
		}
		if next < fed {
			continue
		}
		buf = append(buf, input[fed:next]...)
		fed = next
		for {
			msg, n, ok, err := r.Next(buf)
			if n < 0 || n > len(buf) {
				t.Fatalf("Next consumed %d of %d bytes", n, len(buf))
			}
			if err != nil {
				if n != 0 || ok {
					t.Fatalf("Next returned n=%d ok=%v with error %v", n, ok, err)
				}
				if checkUntouched && !bytes.Equal(buf, input[out.Consumed:fed]) {
					t.Fatalf("Next modified unconsumed bytes (error %v)", err)
				}
				if err == ErrNeedMore {
					break
				}
				var ce *CloseError
				if !errors.As(err, &ce) {
					t.Fatalf("Next returned %T %v, want *CloseError", err, err)
				}
				out.Code = ce.Code
				return out
			}
			if n == 0 {
				t.Fatalf("Next made no progress without error")
			}
			if ok {
				out.Msgs = append(out.Msgs, event{msg.Op, string(msg.Payload), msg.Compressed})
			} else {
				if msg.Payload != nil || msg.Op != 0 {
					t.Fatalf("non-final fragment returned a message %v", msg)
				}
				out.Frags++
			}
			buf = buf[n:]
			out.Consumed += n
		}
	}
	return out
}

// chunkings returns the cut lists a stream is tested with: every single
// split point (sampled for large inputs) and byte by byte.
func chunkings(n int) [][]int {
	var all [][]int
	// Large inputs: every split near the ends (headers, final bytes), and
	// about 32 in between.
	stride := max(1, n/32)
	for i := 1; i < n; i++ {
		if n > 2048 && i > 64 && n-i > 64 && i%stride != 0 {
			continue
		}
		all = append(all, []int{i})
	}
	if n > 1 {
		bytewise := make([]int, 0, n-1)
		for i := 1; i < n; i++ {
			bytewise = append(bytewise, i)
		}
		all = append(all, bytewise)
	}
	// Pieces of varying odd sizes.
	var odd []int
	for i, step := 0, 1; ; step = step*3%17 + 1 {
		if i += step; i >= n {
			break
		}
		odd = append(odd, i)
	}
	return append(all, odd)
}

// feedAll feeds input whole and under every chunking and fails unless all
// outcomes are identical; it returns the outcome.
func feedAll(t testing.TB, cfg Reader, input []byte) outcome {
	t.Helper()
	want := feed(t, cfg, input, nil)
	for _, cuts := range chunkings(len(input)) {
		got := feed(t, cfg, input, cuts)
		if !reflect.DeepEqual(got, want) {
			desc := fmt.Sprint(cuts)
			if len(cuts) > 8 {
				desc = fmt.Sprintf("%d cuts starting %v", len(cuts), cuts[:8])
			}
			t.Fatalf("chunking %s changed the outcome:\n got  %+v\n want %+v", desc, got, want)
		}
	}
	return want
}
