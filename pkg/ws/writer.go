package ws

import (
	"encoding/binary"
	"math/rand/v2"
	"unicode/utf8"
)

// AppendFrameHeader appends an unmasked (server role) frame header for a
// payload of length bytes, using the minimal length encoding.
func AppendFrameHeader(dst []byte, op OpCode, fin bool, length int) []byte {
	b0 := byte(op & 0x0f)
	if fin {
		b0 |= 0x80
	}
	return appendLength(append(dst, b0), 0, length)
}

// appendLength appends the second header byte (with maskBit) and the
// extended payload length.
func appendLength(dst []byte, maskBit byte, length int) []byte {
	switch {
	case length < 126:
		return append(dst, maskBit|byte(length))
	case length <= 0xffff:
		return binary.BigEndian.AppendUint16(append(dst, maskBit|126), uint16(length))
	default:
		return binary.BigEndian.AppendUint64(append(dst, maskBit|127), uint64(length))
	}
}

// AppendFrame appends a final, unmasked frame (server → client) carrying
// payload. Control frames must carry at most MaxControlPayload bytes.
func AppendFrame(dst []byte, op OpCode, payload []byte) []byte {
	return append(AppendFrameHeader(dst, op, true, len(payload)), payload...)
}

// AppendClosePayload appends the payload of a close frame: the status code
// and reason truncated at a rune boundary to fit a control frame. Code 0 or
// CloseNoStatus appends nothing (a close frame without a status code).
func AppendClosePayload(dst []byte, code uint16, reason string) []byte {
	if code == 0 || code == CloseNoStatus {
		return dst
	}
	dst = binary.BigEndian.AppendUint16(dst, code)
	if len(reason) > maxCloseReason {
		cut := maxCloseReason
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	return append(dst, reason...)
}

// AppendClose appends an unmasked close frame (server → client) with the
// status code and reason; see AppendClosePayload for truncation and codes.
func AppendClose(dst []byte, code uint16, reason string) []byte {
	var p [MaxControlPayload]byte
	payload := AppendClosePayload(p[:0], code, reason)
	return AppendFrame(dst, OpClose, payload)
}

// AppendClientFrame appends a final frame masked with mask (client role).
// payload itself is not modified.
func AppendClientFrame(dst []byte, op OpCode, payload []byte, mask [4]byte) []byte {
	dst = appendLength(append(dst, 0x80|byte(op&0x0f)), 0x80, len(payload))
	dst = append(dst, mask[:]...)
	start := len(dst)
	dst = append(dst, payload...)
	MaskBytes(mask, dst[start:])
	return dst
}

// NewMask returns a masking key for AppendClientFrame from the runtime's
// per-thread ChaCha8 generator (unpredictable, as RFC 6455 section 5.3
// requires, and cheap enough to call per frame).
func NewMask() [4]byte {
	var m [4]byte
	binary.LittleEndian.PutUint32(m[:], rand.Uint32())
	return m
}

// MaskBytes XORs b in place with the masking key, starting at key index 0.
// Applying it twice restores the input.
func MaskBytes(mask [4]byte, b []byte) {
	if len(b) >= 8 {
		k := uint64(binary.LittleEndian.Uint32(mask[:]))
		k |= k << 32
		for len(b) >= 32 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k)
			binary.LittleEndian.PutUint64(b[8:], binary.LittleEndian.Uint64(b[8:])^k)
			binary.LittleEndian.PutUint64(b[16:], binary.LittleEndian.Uint64(b[16:])^k)
			binary.LittleEndian.PutUint64(b[24:], binary.LittleEndian.Uint64(b[24:])^k)
			b = b[32:]
		}
		for len(b) >= 8 {
			binary.LittleEndian.PutUint64(b, binary.LittleEndian.Uint64(b)^k)
			b = b[8:]
		}
	}
	for i := range b {
		b[i] ^= mask[i&3]
	}
}
