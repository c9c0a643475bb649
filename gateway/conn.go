// One connection and its inbound side (frames, client messages, sends): runs on the connection's event loop.

package gateway

import (
	"errors"
	"net/netip"
	"time"

	"github.com/panjf2000/gnet/v2"
	"golang.org/x/sys/unix"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// Connection states.
const (
	stateHandshake uint8 = iota // waiting for the HTTP upgrade request
	stateOpen                   // WebSocket open
	stateClosing                // close frame sent or connection aborted
)

// maxBadFrames is how many malformed frames (bad JSON, unknown ops) a
// connection may send per sweep interval before it is closed with 4003.
const maxBadFrames = 20

// conn is one client connection. It is owned by its event loop: every field
// is read and written only on that loop (gnet callbacks and tasks run with
// loop.execute), except id, which is immutable.
type conn struct {
	s     *Server
	gc    gnet.Conn
	lp    *loop
	id    uint64
	ip    netip.Addr
	state uint8
	bad   uint8
	// pinged is set when the gateway sent a ping to a quiet connection.
	pinged bool
	// deflate is set when permessage-deflate was negotiated: batches are
	// written compressed and client messages may be.
	deflate bool
	// compact is set when the client chose protocol.SubprotocolCompact:
	// batches may be written in the compact form.
	compact bool
	pos     int // index in lp.conns
	rd      ws.Reader
	claims  *auth.Claims // nil for anonymous viewers
	rooms   []*member
	// Times in Unix ms (from the coarse clock).
	opened   int64
	lastRecv int64
	closeAt  int64 // drain: close with 1001 at this time; 0 = not draining
	overSoft int64 // when the backlog went above SoftOutbound; 0 = below
	counted  int64 // outbound backlog in bytes counted in Server.outbound (conn.count)
	// lingerUntil: a close frame was sent; close the TCP connection at this
	// time if the client has not answered with its own close frame.
	lingerUntil int64
	// registered is set once the conn is in the server's sender registry.
	registered bool
	// observe: the handshake asked observe=1; rooms this connection's token
	// may moderate do not count it online (see member.observer).
	observe bool
	// sendTokens is what is left of the connection's send budget
	// (Config.SendRate), in thousandths of a send, as of sendAt (Unix ms;
	// 0: no send yet, the budget is full).
	sendTokens int64
	sendAt     int64
}

// onTraffic handles readable input. Runs on the loop.
func (c *conn) onTraffic() gnet.Action {
	for c.state != stateClosing {
		n := c.gc.InboundBuffered()
		if n == 0 {
			return gnet.None
		}
		buf, err := c.gc.Peek(n)
		if err != nil {
			return gnet.None
		}
		var used int
		if c.state == stateHandshake {
			used = c.handshake(buf)
		} else {
			used = c.frames(buf)
		}
		if used <= 0 {
			break
		}
		_, _ = c.gc.Discard(used)
	}
	if c.state == stateClosing {
		c.drainClosing()
	}
	return gnet.None
}

// closeLinger is how long a connection that was sent a close frame is kept
// open waiting for the client's close frame. Closing at once while the
// client still writes would make the kernel reset the connection and the
// client could lose the close frame (and its code).
const closeLinger = time.Second

// drainClosing reads and discards input of a connection whose close frame
// was sent; the client's close frame, a parse error or the linger deadline
// (enforced by the sweep) closes it. Runs on the loop.
func (c *conn) drainClosing() {
	for {
		n := c.gc.InboundBuffered()
		if n == 0 {
			return
		}
		buf, _ := c.gc.Peek(n)
		msg, used, ok, err := c.rd.Next(buf)
		if errors.Is(err, ws.ErrNeedMore) {
			if n > 2*c.s.cfg.MaxMessage {
				_ = c.gc.Close()
			}
			return
		}
		if err != nil || (ok && msg.Op == ws.OpClose) {
			_, _ = c.gc.Discard(n)
			_ = c.gc.Close()
			return
		}
		_, _ = c.gc.Discard(used)
	}
}

// frames parses WebSocket frames. It returns the bytes consumed.
func (c *conn) frames(buf []byte) int {
	msg, n, ok, err := c.rd.Next(buf)
	if errors.Is(err, ws.ErrNeedMore) {
		return 0
	}
	if err != nil {
		var ce *ws.CloseError
		if errors.As(err, &ce) {
			c.closeWith(ce.Code, ce.Reason, "protocol")
		} else {
			c.closeWith(ws.CloseProtocolError, "protocol error", "protocol")
		}
		return len(buf)
	}
	c.lastRecv = c.s.nowMs()
	c.pinged = false
	if ok {
		c.message(msg)
	}
	return n
}

// message handles one complete message or control frame.
func (c *conn) message(msg ws.Message) {
	switch msg.Op {
	case ws.OpPing:
		c.write(outFrame{frame: ws.AppendFrame(nil, ws.OpPong, msg.Payload)})
	case ws.OpPong:
	case ws.OpClose:
		code, _, err := ws.ParseClose(msg.Payload)
		if err != nil {
			var ce *ws.CloseError
			if errors.As(err, &ce) {
				c.closeWith(ce.Code, ce.Reason, "protocol")
				return
			}
		}
		if code == 0 || code == ws.CloseNoStatus {
			code = ws.CloseNormal
		}
		c.closeWith(code, "", "client")
	case ws.OpBinary:
		c.closeWith(ws.CloseUnsupportedData, "binary frames are not supported", "protocol")
	case ws.OpText:
		p := msg.Payload
		if msg.Compressed {
			var err error
			if p, err = c.lp.inflater.Inflate(p, c.s.cfg.MaxMessage, true); err != nil {
				var ce *ws.CloseError
				if errors.As(err, &ce) {
					c.closeWith(ce.Code, ce.Reason, "protocol")
				} else {
					c.closeWith(ws.CloseProtocolError, "bad compressed message", "protocol")
				}
				return
			}
		}
		c.text(p)
	}
}

// text handles one JSON frame from the client.
func (c *conn) text(b []byte) {
	f, perr := protocol.DecodeClient(b)
	if perr != nil {
		if f.Op == protocol.OpSend && protocol.ValidID(f.ID) && protocol.ValidRoom(f.Room) {
			c.s.m.sendRejects.WithLabelValues(string(perr.Code)).Inc()
			c.writeOwn(protocol.EncodeReject(f.ID, f.Room, perr))
			return
		}
		c.bad++
		if c.bad > maxBadFrames {
			c.closeWith(protocol.CloseBadFrames, "too many invalid frames", "bad_frames")
			return
		}
		c.writeOwn(protocol.EncodeError(perr))
		return
	}
	switch f.Op {
	case protocol.OpPing:
		c.writeOwn(pongFrame)
	case protocol.OpJoin:
		c.join(f.Room, f.Resume)
	case protocol.OpLeave:
		c.leave(f.Room)
	case protocol.OpSend:
		c.send(f)
	}
}

var pongFrame = protocol.Encode(struct {
	Op string `json:"op"`
}{protocol.OpPong})

// send forwards a send to logic through the ingest queue.
func (c *conn) send(f protocol.ClientFrame) {
	s := c.s
	s.m.sends.Inc()
	if c.claims == nil {
		c.rejectSend(f, protocol.CodeUnauthorized, "sign in to send", 0)
		return
	}
	if c.member(f.Room) == nil {
		c.rejectSend(f, protocol.CodeInvalid, "join the room before sending", 0)
		return
	}
	if wait := c.takeSend(time.Now().UnixMilli()); wait > 0 {
		c.rejectSend(f, protocol.CodeUnavailable, "sending too fast, retry", wait)
		return
	}
	if !c.registered {
		s.senders.Store(c.id, c)
		c.registered = true
	}
	in := bus.Ingest{
		Room: f.Room, ID: f.ID, UID: c.claims.UID(), Name: c.claims.Name, Role: c.claims.RoleIn(f.Room),
		Text: f.Text, Mode: f.Mode, Size: f.Size, TS: time.Now().UnixMilli(), Gateway: s.cfg.ID, Conn: c.id, Retry: f.Retry,
	}
	select {
	case s.ingest <- in:
	default:
		c.rejectSend(f, protocol.CodeUnavailable, "server busy, retry", time.Second)
	}
}

// takeSend takes one send from the connection's budget at nowMs (a token
// bucket of Config.SendRate sends, refilled at SendRate a second). It
// returns 0 when the send may go, else how long until one may. Runs on
// the loop.
func (c *conn) takeSend(nowMs int64) time.Duration {
	rate := int64(c.s.cfg.SendRate)
	if rate <= 0 {
		return 0
	}
	full := rate * 1000
	if c.sendAt == 0 {
		c.sendTokens = full
	} else if nowMs > c.sendAt {
		c.sendTokens = min(full, c.sendTokens+(nowMs-c.sendAt)*rate)
	}
	c.sendAt = max(c.sendAt, nowMs)
	if c.sendTokens >= 1000 {
		c.sendTokens -= 1000
		return 0
	}
	return time.Duration(max(1, (1000-c.sendTokens+rate-1)/rate)) * time.Millisecond
}

func (c *conn) rejectSend(f protocol.ClientFrame, code protocol.Code, msg string, retry time.Duration) {
	c.s.m.sendRejects.WithLabelValues(string(code)).Inc()
	c.writeOwn(protocol.EncodeReject(f.ID, f.Room, &protocol.Error{Code: code, Message: msg, RetryAfter: retry}))
}

// unread reports whether the kernel holds bytes from c that the loop has
// not read yet. A loop that fell behind on its reads (an overloaded
// process) must not close a live viewer as idle because the pong it sent
// is still in the socket: the viewer would reconnect and add to the load
// (seen in the 1M bench: 400k+ idle closes once the processes lagged).
func (c *conn) unread() bool {
	n, err := unix.IoctlGetInt(c.gc.Fd(), unix.SIOCINQ)
	return err == nil && n > 0
}
