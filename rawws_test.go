package main

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

// rawWS is a bare WebSocket connection for tests that need to send what a
// well-behaved client would not.
type rawWS struct {
	t    testing.TB
	c    net.Conn
	br   *bufio.Reader
	rd   ws.Reader
	buf  []byte
	resp string
}

// dialWS opens a TCP connection to addr; it is closed when the test ends.
func dialWS(t testing.TB, addr string) *rawWS {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &rawWS{t: t, c: c, br: bufio.NewReader(c), rd: ws.Reader{Client: true, MaxMessage: 4 << 20}}
}

// upgrade performs the handshake for pathQuery with extra header lines
// ("Name: value\r\n" each) and returns the HTTP status (0 when the server
// closed without an answer).
func (r *rawWS) upgrade(pathQuery, extra string) int {
	r.t.Helper()
	key := ws.NewKey()
	if _, err := r.c.Write(ws.AppendClientHandshake(nil, "test", pathQuery, key, extra)); err != nil {
		return 0
	}
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

// send writes one masked frame.
func (r *rawWS) send(op ws.OpCode, payload []byte) error {
	_ = r.c.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := r.c.Write(ws.AppendClientFrame(nil, op, payload, ws.NewMask()))
	return err
}

// next returns the next complete message from the server.
func (r *rawWS) next(timeout time.Duration) (ws.Message, error) {
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

// nextFrame returns the next protocol frame (text message), skipping
// control frames; a close frame is returned as an error.
func (r *rawWS) nextFrame(timeout time.Duration) (protocol.ServerFrame, error) {
	deadline := time.Now().Add(timeout)
	for {
		m, err := r.next(time.Until(deadline))
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

// closeCode reads until the server's close frame and returns its code, or
// 0 when the connection ended without one.
func (r *rawWS) closeCode(timeout time.Duration) uint16 {
	deadline := time.Now().Add(timeout)
	for {
		m, err := r.next(time.Until(deadline))
		if err != nil {
			return 0
		}
		if m.Op == ws.OpClose {
			code, _, _ := ws.ParseClose(m.Payload)
			return code
		}
	}
}
