package ws

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrBadHandshake reports a "101 Switching Protocols" answer that does not
// complete the upgrade (wrong Upgrade, Connection or Sec-WebSocket-Accept)
// or a malformed response. Errors wrap it with the detail.
var ErrBadHandshake = errors.New("ws: bad handshake response")

func badHandshake(detail string) error {
	return fmt.Errorf("%w: %s", ErrBadHandshake, detail)
}

// NewKey returns a fresh Sec-WebSocket-Key: 16 random bytes, base64.
func NewKey() string {
	var nonce [16]byte
	_, _ = rand.Read(nonce[:]) // crypto/rand.Read never fails (it aborts the program instead)
	return base64.StdEncoding.EncodeToString(nonce[:])
}

// AppendClientHandshake appends a client upgrade request for
// ws://host/pathAndQuery with the given Sec-WebSocket-Key (see NewKey).
// pathAndQuery "" means "/". extraHeaders holds additional header lines,
// each ending in "\r\n" (e.g. "Authorization: Bearer ...\r\n"), or "".
func AppendClientHandshake(dst []byte, host, pathAndQuery, key string, extraHeaders string) []byte {
	if pathAndQuery == "" {
		pathAndQuery = "/"
	}
	dst = append(dst, "GET "...)
	dst = append(dst, pathAndQuery...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	dst = append(dst, key...)
	dst = append(dst, "\r\nSec-WebSocket-Version: 13\r\n"...)
	dst = append(dst, extraHeaders...)
	return append(dst, "\r\n"...)
}

// ParseHandshakeResponse parses the server's answer to a client handshake
// sent with key. It returns the number of bytes of the header block (frames
// may follow them in buf) and the HTTP status.
//
// It returns ErrNeedMore while the header block is incomplete (up to
// DefaultMaxHeader bytes), a *HandshakeError when the status is not 101 (n
// then spans the header block only, not any body; its Header keeps the
// response's Retry-After line, see [HandshakeError.RetryAfter]), and an error wrapping
// ErrBadHandshake when the response is malformed or the upgrade headers or
// Sec-WebSocket-Accept do not match.
func ParseHandshakeResponse(buf []byte, key string) (n int, status int, err error) {
	end := headerEnd(buf)
	if end < 0 {
		if len(buf) > DefaultMaxHeader {
			return 0, 0, badHandshake("header block too large")
		}
		return 0, 0, ErrNeedMore
	}
	if end > DefaultMaxHeader {
		return 0, 0, badHandshake("header block too large")
	}
	s := string(buf[:end])

	// Status line: HTTP-version SP status-code SP [reason-phrase].
	line, s, ok := nextLine(s)
	version, rest, ok1 := strings.Cut(line, " ")
	code, reason, _ := strings.Cut(rest, " ")
	if _, _, vok := parseHTTPVersion(version); !ok || !ok1 || !vok || len(code) != 3 {
		return 0, 0, badHandshake("malformed status line")
	}
	status, cerr := strconv.Atoi(code)
	if cerr != nil || status < 100 {
		return 0, 0, badHandshake("malformed status code")
	}

	var upgradeWS, connUpgrade, hasAccept bool
	var accept, retryAfter string
	for {
		line, s, ok = nextLine(s)
		if !ok {
			return 0, status, badHandshake("malformed header line")
		}
		if line == "" {
			break
		}
		name, value, found := strings.Cut(line, ":")
		if !found || !isToken(name) {
			return 0, status, badHandshake("malformed header line")
		}
		value = trimOWS(value)
		switch {
		case equalFold(name, "Upgrade"):
			upgradeWS = upgradeWS || hasToken(value, "websocket")
		case equalFold(name, "Connection"):
			connUpgrade = connUpgrade || hasToken(value, "upgrade")
		case equalFold(name, "Sec-WebSocket-Accept"):
			if hasAccept {
				return 0, status, badHandshake("repeated Sec-WebSocket-Accept")
			}
			hasAccept, accept = true, value
		case equalFold(name, "Retry-After"):
			retryAfter = "Retry-After: " + value + "\r\n"
		}
	}
	if status != 101 {
		return end, status, &HandshakeError{Status: status, Message: reason, Header: retryAfter}
	}
	switch {
	case !upgradeWS:
		return 0, status, badHandshake("missing Upgrade: websocket")
	case !connUpgrade:
		return 0, status, badHandshake("missing Connection: upgrade")
	case accept != AcceptKey(key):
		return 0, status, badHandshake("Sec-WebSocket-Accept mismatch")
	}
	return end, status, nil
}
