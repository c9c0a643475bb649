package ws

import (
	"encoding/binary"
	"errors"
	"strconv"
	"unicode/utf8"
)

// OpCode is the 4-bit frame opcode of RFC 6455 section 5.2.
type OpCode byte

// Opcodes defined by RFC 6455. Every other value is reserved and rejected.
const (
	OpContinuation OpCode = 0x0
	OpText         OpCode = 0x1
	OpBinary       OpCode = 0x2
	OpClose        OpCode = 0x8
	OpPing         OpCode = 0x9
	OpPong         OpCode = 0xA
)

// IsControl reports whether op is a control opcode (close, ping, pong or a
// reserved control value).
func (op OpCode) IsControl() bool { return op&0x8 != 0 }

// String returns the opcode's name, or "op(N)" for reserved values.
func (op OpCode) String() string {
	switch op {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return "op(" + strconv.Itoa(int(op)) + ")"
}

// Close status codes of RFC 6455 section 7.4.1 used by this package.
const (
	CloseNormal          uint16 = 1000
	CloseGoingAway       uint16 = 1001
	CloseProtocolError   uint16 = 1002
	CloseUnsupportedData uint16 = 1003
	CloseNoStatus        uint16 = 1005 // never sent on the wire: "no code in the close frame"
	CloseAbnormal        uint16 = 1006 // never sent on the wire: "connection dropped"
	CloseInvalidPayload  uint16 = 1007
	ClosePolicyViolation uint16 = 1008
	CloseMessageTooBig   uint16 = 1009
	CloseInternalError   uint16 = 1011
	CloseServiceRestart  uint16 = 1012
	CloseTryAgainLater   uint16 = 1013
)

// MaxControlPayload is the largest payload a control frame may carry.
const MaxControlPayload = 125

// maxCloseReason is the longest close reason that fits a control frame
// after the two-byte status code.
const maxCloseReason = MaxControlPayload - 2

// ErrNeedMore reports incomplete input: the caller keeps the bytes it passed
// and calls again once more have arrived.
var ErrNeedMore = errors.New("ws: need more data")

// CloseError is a protocol violation by the peer. The connection must be
// closed, after telling the peer why with a close frame carrying Code
// (see AppendClose).
type CloseError struct {
	Code   uint16 // close status code to send, e.g. CloseProtocolError
	Reason string // short human-readable cause, at most 123 bytes
}

// Error implements error.
func (e *CloseError) Error() string {
	return "ws: close " + strconv.Itoa(int(e.Code)) + ": " + e.Reason
}

func protocolError(reason string) *CloseError {
	return &CloseError{Code: CloseProtocolError, Reason: reason}
}

// ValidCloseCode reports whether code may appear in a close frame on the
// wire: 1000-1003, 1007-1014 and the registered/private range 3000-4999.
// 1004-1006, 1015, everything below 1000 and the unassigned ranges are
// invalid.
func ValidCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// ParseClose decodes a close frame payload. An empty payload yields
// CloseNoStatus. A one-byte payload or an invalid code is a *CloseError with
// CloseProtocolError; a reason that is not valid UTF-8 is a *CloseError with
// CloseInvalidPayload.
func ParseClose(payload []byte) (code uint16, reason string, err error) {
	if err := checkClose(payload); err != nil {
		return 0, "", err
	}
	if len(payload) == 0 {
		return CloseNoStatus, "", nil
	}
	return binary.BigEndian.Uint16(payload), string(payload[2:]), nil
}

// checkClose validates a close payload without allocating on success.
func checkClose(payload []byte) *CloseError {
	switch {
	case len(payload) == 0:
		return nil
	case len(payload) == 1:
		return protocolError("close payload of one byte")
	case !ValidCloseCode(binary.BigEndian.Uint16(payload)):
		return protocolError("invalid close code " + strconv.Itoa(int(binary.BigEndian.Uint16(payload))))
	case !utf8.Valid(payload[2:]):
		return &CloseError{Code: CloseInvalidPayload, Reason: "close reason is not valid UTF-8"}
	}
	return nil
}
