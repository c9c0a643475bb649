// Package wstest is a bare WebSocket client for tests of danmaku servers:
// it sends whatever it is told (malformed frames included) and reads frames
// one at a time, so tests can check handshake statuses, close codes and
// frames that a well-behaved, reconnecting client would hide.
package wstest

import (
	"bufio"
	"bytes"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// Conn is a bare client connection. It is used by one goroutine at a time.
type Conn struct {
	t    testing.TB
	c    net.Conn
	br   *bufio.Reader
	rd   ws.Reader
	buf  []byte
	resp string
}

// Dial opens a TCP connection to addr; it is closed when the test ends.
func Dial(t testing.TB, addr string) *Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return New(t, c)
}

// New wraps a connection the caller dialled (and closes).
func New(t testing.TB, c net.Conn) *Conn {
	return &Conn{t: t, c: c, br: bufio.NewReader(c), rd: ws.Reader{Client: true, MaxMessage: 16 << 20}}
}

// AcceptCompressed lets the connection receive frames with RSV1 set
// (permessage-deflate, once negotiated); Message.Compressed marks them.
func (r *Conn) AcceptCompressed() { r.rd.AllowRSV1 = true }

// NetConn returns the TCP connection, for writing raw bytes.
func (r *Conn) NetConn() net.Conn { return r.c }

// Reader returns the buffered reader over the connection, for reading raw
// bytes (an HTTP answer to a request written with NetConn).
func (r *Conn) Reader() *bufio.Reader { return r.br }

// Response is the header block of the last handshake answer.
func (r *Conn) Response() string { return r.resp }

// Upgrade performs the handshake for pathQuery with extra header lines
// ("Name: value\r\n" each) and returns the HTTP status (0 when the server
// closed without an answer).
func (r *Conn) Upgrade(pathQuery, extra string) int {
	key := ws.NewKey()
	if _, err := r.c.Write(ws.AppendClientHandshake(nil, "test", pathQuery, key, extra)); err != nil {
		return 0
	}
	return r.ReadStatus(key)
}

// ReadStatus reads an HTTP answer's header block and returns its status (0
// when the connection ended first); key checks Sec-WebSocket-Accept on a
// 101.
func (r *Conn) ReadStatus(key string) int {
	_ = r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	var hdr []byte
	for !bytes.HasSuffix(hdr, []byte("\r\n\r\n")) {
		b, err := r.br.ReadByte()
		if err != nil {
			return 0
		}
		hdr = append(hdr, b)
	}
	r.resp = string(hdr)
	_, status, _ := ws.ParseHandshakeResponse(hdr, key)
	return status
}

// Send writes one masked frame.
func (r *Conn) Send(op ws.OpCode, payload []byte) error {
	_ = r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := r.c.Write(ws.AppendClientFrame(nil, op, payload, ws.NewMask()))
	return err
}

// Next returns the next complete message or control frame from the server.
func (r *Conn) Next(timeout time.Duration) (ws.Message, error) {
	_ = r.c.SetReadDeadline(time.Now().Add(timeout))
	tmp := make([]byte, 64<<10)
	for {
		msg, n, ok, err := r.rd.Next(r.buf)
		if err == nil && ok {
			msg.Payload = append([]byte(nil), msg.Payload...)
			r.buf = r.buf[n:]
			return msg, nil
		}
		if err == nil {
			r.buf = r.buf[n:]
			continue
		}
		if !errors.Is(err, ws.ErrNeedMore) {
			return ws.Message{}, err
		}
		k, err := r.br.Read(tmp)
		if err != nil {
			return ws.Message{}, err
		}
		r.buf = append(r.buf, tmp[:k]...)
	}
}

// NextFrame returns the next protocol frame (text message), skipping
// control frames; a close frame is returned as a *ws.CloseError.
func (r *Conn) NextFrame(timeout time.Duration) (protocol.ServerFrame, error) {
	deadline := time.Now().Add(timeout)
	for {
		m, err := r.Next(time.Until(deadline))
		if err != nil {
			return protocol.ServerFrame{}, err
		}
		switch m.Op {
		case ws.OpText:
			return protocol.DecodeServer(m.Payload)
		case ws.OpClose:
			code, reason, _ := ws.ParseClose(m.Payload)
			return protocol.ServerFrame{}, &ws.CloseError{Code: code, Reason: reason}
		}
	}
}

// NextOp skips frames until one with op arrives; it fails the test when
// none does within timeout.
func (r *Conn) NextOp(op string, timeout time.Duration) protocol.ServerFrame {
	r.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		f, err := r.NextFrame(time.Until(deadline))
		if err != nil {
			r.t.Fatalf("waiting for %s: %v", op, err)
		}
		if f.Op == op {
			return f
		}
	}
}

// CloseCode reads until the server's close frame and returns its code, or
// 0 when the connection ended without one.
func (r *Conn) CloseCode(timeout time.Duration) uint16 {
	deadline := time.Now().Add(timeout)
	for {
		m, err := r.Next(time.Until(deadline))
		if err != nil {
			return 0
		}
		if m.Op == ws.OpClose {
			code, _, _ := ws.ParseClose(m.Payload)
			return code
		}
	}
}
