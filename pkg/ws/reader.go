package ws

import (
	"encoding/binary"
	"math"
	"strconv"
	"unicode/utf8"
)

// DefaultMaxMessage is the message size limit of a Reader whose MaxMessage
// is zero.
const DefaultMaxMessage = 64 << 10

// Reader parses the frames of one connection and reassembles fragmented
// messages.
//
// The zero value is ready to use: a server-role Reader (frames must be
// masked) with a DefaultMaxMessage limit and no extensions. Set the exported
// fields before the first call to Next.
//
// A Reader is small (three words) and keeps no buffer unless a fragmented
// message is in progress. It is not safe for concurrent use: it belongs to
// the goroutine or event loop that owns the connection.
type Reader struct {
	// MaxMessage bounds the payload size of one data message, summed over
	// its fragments. Zero means DefaultMaxMessage. A larger frame is
	// rejected with CloseMessageTooBig as soon as its header is read.
	MaxMessage int

	// Client selects the client role: frames from the server must be
	// unmasked. The default (server role) requires every frame to be masked.
	Client bool

	// AllowRSV1 accepts the RSV1 bit on the first frame of a data message
	// and reports it as Message.Compressed (for permessage-deflate, once
	// negotiated). Zero value: RSV1 is a protocol error. RSV2 and RSV3 are
	// always protocol errors.
	AllowRSV1 bool

	frag *fragment // non-nil only while a fragmented message is in progress
}

// fragment is the state of a fragmented data message in progress.
type fragment struct {
	buf        []byte // unmasked payload of the fragments so far
	op         OpCode // OpText or OpBinary
	compressed bool
	utf8       utf8State
}

// Message is one complete data message (text or binary, reassembled from
// its fragments) or one control frame (close, ping, pong).
//
// For an unfragmented message or a control frame, Payload aliases the
// buffer passed to Next: it is valid until the caller discards or reuses
// those bytes, so copy it to keep it longer. For a message reassembled from
// fragments, Payload is the Reader's reassembly buffer, which the Reader
// lets go of when it returns the message; the caller may keep it.
type Message struct {
	Op         OpCode
	Payload    []byte
	Compressed bool // RSV1 was set on the first frame (only with Reader.AllowRSV1)
}

// InProgress reports whether a fragmented message has started but not yet
// completed.
func (r *Reader) InProgress() bool { return r.frag != nil }

// Reset drops any fragmented message in progress, keeping the configuration.
func (r *Reader) Reset() { r.frag = nil }

func (r *Reader) maxMessage() int {
	if r.MaxMessage > 0 {
		return r.MaxMessage
	}
	return DefaultMaxMessage
}

// Next consumes at most one frame from the start of buf.
//
//   - ok == true: msg holds a complete data message or a control frame and
//     n bytes were consumed.
//   - ok == false, n > 0, err == nil: a non-final fragment was consumed; its
//     payload is kept until the message completes.
//   - err == ErrNeedMore, n == 0: the frame at the start of buf is incomplete.
//   - err is a *CloseError, n == 0: the peer violated the protocol; send a
//     close frame with its Code and close the connection.
//
// Next only modifies bytes it consumes: it unmasks the payload of an
// unfragmented message or control frame in place (fragments are copied to
// the reassembly buffer and unmasked there). A partial frame, or a frame it
// rejects, is left intact in buf. The caller
// discards the n consumed bytes and calls Next again with what follows.
// Control frames arriving between the fragments of a message are returned
// at once; the fragmented message continues after them.
//
// Next does not allocate for unfragmented messages and control frames.
func (r *Reader) Next(buf []byte) (msg Message, n int, ok bool, err error) {
	if len(buf) < 2 {
		return msg, 0, false, ErrNeedMore
	}
	b0, b1 := buf[0], buf[1]
	fin := b0&0x80 != 0
	rsv1 := b0&0x40 != 0
	op := OpCode(b0 & 0x0f)
	masked := b1&0x80 != 0
	len7 := int(b1 & 0x7f)

	// Checks that depend only on the first two bytes come first, so the
	// outcome never depends on how the input was chunked.
	if err := r.checkFirstBytes(b0, op, masked, len7); err != nil {
		return msg, 0, false, err
	}
	hdr, length, err := payloadLength(buf, len7)
	if err != nil {
		return msg, 0, false, err
	}
	if !op.IsControl() {
		total := length
		if r.frag != nil {
			total += uint64(len(r.frag.buf))
		}
		if total > uint64(r.maxMessage()) {
			return msg, 0, false, &CloseError{Code: CloseMessageTooBig,
				Reason: "message over " + strconv.Itoa(r.maxMessage()) + " bytes"}
		}
	}
	var mask [4]byte
	if masked {
		if len(buf) < hdr+4 {
			return msg, 0, false, ErrNeedMore
		}
		copy(mask[:], buf[hdr:hdr+4])
		hdr += 4
	}
	// length <= maxMessage (an int) for data frames and <= 125 for control
	// frames, so the conversion is exact.
	end := hdr + int(length)
	if len(buf) < end {
		return msg, 0, false, ErrNeedMore
	}
	payload := buf[hdr:end]

	switch {
	case op.IsControl():
		MaskBytes(mask, payload)
		if op == OpClose {
			if cerr := checkClose(payload); cerr != nil {
				MaskBytes(mask, payload) // masking is an involution: restore
				return Message{}, 0, false, cerr
			}
		}
		return Message{Op: op, Payload: payload}, end, true, nil

	case op != OpContinuation && fin: // unfragmented message: zero-copy
		MaskBytes(mask, payload)
		if op == OpText && !rsv1 && !utf8.Valid(payload) {
			MaskBytes(mask, payload)
			return Message{}, 0, false, invalidUTF8()
		}
		return Message{Op: op, Payload: payload, Compressed: rsv1}, end, true, nil
	}
	if msg, ok, err = r.addFragment(op, fin, rsv1, mask, payload); err != nil {
		return Message{}, 0, false, err
	}
	return msg, end, ok, nil
}

// checkFirstBytes checks what a frame's first two bytes (b0: FIN, RSV and
// opcode op; the mask bit masked and the 7-bit length len7) alone decide:
// reserved bits and opcodes, control frame rules, continuation order and
// masking. Next calls it before anything else.
func (r *Reader) checkFirstBytes(b0 byte, op OpCode, masked bool, len7 int) error {
	fin, rsv1 := b0&0x80 != 0, b0&0x40 != 0
	if b0&0x30 != 0 {
		return protocolError("RSV2 or RSV3 set")
	}
	if rsv1 && !r.AllowRSV1 {
		return protocolError("RSV1 set without a negotiated extension")
	}
	switch op {
	case OpClose, OpPing, OpPong:
		if !fin {
			return protocolError("fragmented control frame")
		}
		if len7 > MaxControlPayload {
			return protocolError("control frame payload over 125 bytes")
		}
		if rsv1 {
			return protocolError("RSV1 set on a control frame")
		}
	case OpContinuation:
		if r.frag == nil {
			return protocolError("continuation frame without a message in progress")
		}
		if rsv1 {
			return protocolError("RSV1 set on a continuation frame")
		}
	case OpText, OpBinary:
		if r.frag != nil {
			return protocolError("new data frame while a fragmented message is in progress")
		}
	default:
		return protocolError("reserved opcode " + strconv.Itoa(int(op)))
	}
	if masked == r.Client {
		if r.Client {
			return protocolError("masked frame from server")
		}
		return protocolError("unmasked frame from client")
	}
	return nil
}

// payloadLength reads a frame's payload length (len7 from its second
// byte, else the extended length that follows) and returns it with the
// header's length so far. Non-minimal encodings are refused.
func payloadLength(buf []byte, len7 int) (hdr int, length uint64, err error) {
	switch len7 {
	case 126:
		if len(buf) < 4 {
			return 0, 0, ErrNeedMore
		}
		length = uint64(binary.BigEndian.Uint16(buf[2:]))
		if length < 126 {
			return 0, 0, protocolError("non-minimal 16-bit payload length")
		}
		return 4, length, nil
	case 127:
		if len(buf) < 10 {
			return 0, 0, ErrNeedMore
		}
		length = binary.BigEndian.Uint64(buf[2:])
		if length>>63 != 0 {
			return 0, 0, protocolError("64-bit payload length with the top bit set")
		}
		if length <= math.MaxUint16 {
			return 0, 0, protocolError("non-minimal 64-bit payload length")
		}
		return 10, length, nil
	}
	return 2, uint64(len7), nil
}

// addFragment adds payload, a fragment of a message (masked with mask), to
// the message in progress: it copies it out of the caller's buffer
// (leaving that untouched until the caller discards it) and unmasks the
// copy. ok reports the message complete (fin), returned in msg.
func (r *Reader) addFragment(op OpCode, fin, rsv1 bool, mask [4]byte, payload []byte) (msg Message, ok bool, err error) {
	f := r.frag
	if f == nil {
		// Room for a few fragments of this size up front.
		f = &fragment{op: op, compressed: rsv1,
			buf: make([]byte, 0, min(r.maxMessage(), max(4*len(payload), 512)))}
	}
	start := len(f.buf)
	f.buf = append(f.buf, payload...)
	MaskBytes(mask, f.buf[start:])
	if f.op == OpText && !f.compressed {
		st, valid := validUTF8(f.utf8, f.buf[start:])
		if !valid || (fin && st != 0) {
			f.buf = f.buf[:start]
			return Message{}, false, invalidUTF8()
		}
		f.utf8 = st
	}
	if !fin {
		r.frag = f
		return Message{}, false, nil
	}
	r.frag = nil
	return Message{Op: f.op, Payload: f.buf, Compressed: f.compressed}, true, nil
}

func invalidUTF8() *CloseError {
	return &CloseError{Code: CloseInvalidPayload, Reason: "text message is not valid UTF-8"}
}
