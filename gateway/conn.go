package gateway

import (
	"errors"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
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

// handshake parses the upgrade request. It returns the bytes consumed (0
// when more are needed).
func (c *conn) handshake(buf []byte) int {
	s := c.s
	h, n, err := ws.ParseUpgrade(buf, 8192)
	if errors.Is(err, ws.ErrNeedMore) {
		return 0
	}
	var he *ws.HandshakeError
	if errors.As(err, &he) {
		c.reject(he.Status, he.Message, he.Header)
		return len(buf)
	}
	if err != nil {
		c.reject(400, "bad request", "")
		return len(buf)
	}
	if h.Path != "/ws" {
		c.reject(404, "not found: the WebSocket endpoint is /ws", "")
		return len(buf)
	}
	if len(s.cfg.AllowedOrigins) > 0 && h.Origin != "" && !s.originAllowed(h.Origin) {
		c.reject(403, "origin not allowed", "")
		return len(buf)
	}
	if s.draining.Load() {
		c.reject(503, "server draining, reconnect elsewhere", "Retry-After: 1\r\n")
		return len(buf)
	}
	q, qerr := url.ParseQuery(h.RawQuery)
	if qerr != nil {
		c.reject(400, "malformed query", "")
		return len(buf)
	}
	token := q.Get("token")
	if token == "" {
		if a := h.Authorization; len(a) > 7 && strings.EqualFold(a[:7], "bearer ") {
			token = a[7:]
		}
	}
	if token != "" {
		claims, err := s.cfg.Signer.Verify(token)
		if err != nil {
			c.reject(401, "invalid or expired token", "")
			return len(buf)
		}
		c.claims = claims
	}
	room := q.Get("room")
	if room != "" && !protocol.ValidRoom(room) {
		c.reject(400, "room must match [A-Za-z0-9_-]{1,64}", "")
		return len(buf)
	}
	c.observe = q.Get("observe") == "1" || q.Get("observe") == "true"
	var resume *uint64
	if v := q.Get("resume"); v != "" {
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			c.reject(400, "resume must be a seq number", "")
			return len(buf)
		}
		resume = &seq
	}
	ext := ""
	// A client that offers danmaku.v1 gets it; one that offers only other
	// subprotocols gets none and fails the connection itself (RFC 6455).
	if p := ws.SelectProtocol(h.Protocols, protocol.Subprotocol); p != "" {
		ext = "Sec-WebSocket-Protocol: " + p + "\r\n"
	}
	if !s.cfg.NoDeflate && ws.AcceptDeflate(h.Extensions) {
		ext += "Sec-WebSocket-Extensions: " + ws.DeflateResponse + "\r\n"
		c.deflate = true
		c.rd.AllowRSV1 = true
		s.ndeflate.Add(1)
	}
	// The 101, joined and history go out in one write (see cork).
	l := c.lp
	l.corked, l.cork = c, ws.AppendAccept(l.cork[:0], h.Key, ext)
	defer l.uncork()
	c.state = stateOpen
	c.lastRecv = s.nowMs()
	s.m.handshakes.WithLabelValues("ok").Inc()
	if c.claims != nil {
		s.addUser(c)
		if s.sess != nil && c.claims.Device != "" {
			s.sess.open(c)
		}
	}
	if room != "" {
		c.join(room, resume)
	}
	return n
}

// reject answers a failed upgrade with an HTTP error and closes.
func (c *conn) reject(status int, msg, header string) {
	c.s.m.handshakes.WithLabelValues("rejected").Inc()
	_, _ = c.gc.Write(ws.AppendHTTPError(nil, status, msg, header))
	c.state = stateClosing
	_ = c.gc.Close()
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
			c.closeWith(1002, "protocol error", "protocol")
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
		c.writeControl(byte(ws.OpPong), msg.Payload)
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
			c.write(protocol.EncodeReject(f.ID, f.Room, perr))
			return
		}
		c.bad++
		if c.bad > maxBadFrames {
			c.closeWith(4003, "too many invalid frames", "bad_frames")
			return
		}
		c.write(protocol.EncodeError(perr))
		return
	}
	switch f.Op {
	case protocol.OpPing:
		c.write(pongFrame)
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
	if !c.registered {
		s.senders.Store(c.id, c)
		c.registered = true
	}
	in := bus.Ingest{
		Room: f.Room, ID: f.ID, UID: c.claims.UID(), Name: c.claims.Name, Role: c.claims.Role,
		Text: f.Text, TS: time.Now().UnixMilli(), Gateway: s.cfg.ID, Conn: c.id,
	}
	select {
	case s.ingest <- in:
	default:
		c.rejectSend(f, protocol.CodeUnavailable, "server busy, retry", time.Second)
	}
}

func (c *conn) rejectSend(f protocol.ClientFrame, code protocol.Code, msg string, retry time.Duration) {
	c.s.m.sendRejects.WithLabelValues(string(code)).Inc()
	c.write(protocol.EncodeReject(f.ID, f.Room, &protocol.Error{Code: code, Message: msg, RetryAfter: retry}))
}

// member returns the membership in room, or nil.
func (c *conn) member(room string) *member {
	for _, m := range c.rooms {
		if m.lr.r.name == room {
			return m
		}
	}
	return nil
}

// write sends one text frame with payload. Runs on the loop.
func (c *conn) write(payload []byte) {
	if c.state != stateOpen {
		return
	}
	buf := ws.AppendFrameHeader(make([]byte, 0, len(payload)+10), ws.OpText, true, len(payload))
	c.writeRaw(append(buf, payload...))
}

// Outbound states (see outboundState).
const (
	outOK          = iota // write
	outDropBatches        // past the soft cap: drop batches, write the rest
	outClosed             // not open, or just closed as a slow consumer
)

// outboundState applies the outbound policy before a write: past the soft
// cap batches are dropped (the viewer sees a gap and resumes), past the
// hard cap, or above the soft cap for SlowTimeout, the viewer is closed as
// slow. While the process is over its OutboundBudget, batches are also
// dropped when the backlog with this write (size bytes) would pass a
// sixteenth of the soft cap: a loop that fell behind hands every viewer one
// large frame per pass, so the write, not the backlog before it, is what
// would grow the process past its budget — except for a room the gateway
// sheds (loop.exempt): shedding answers the budget for all its viewers
// alike. batches tells whether the write holds batches. Runs on the loop.
func (c *conn) outboundState(batches bool, size int) int {
	if c.state != stateOpen {
		return outClosed
	}
	s := c.s
	out := c.count(c.gc.OutboundBuffered())
	if out <= s.cfg.SoftOutbound {
		c.overSoft = 0
		if batches && out+size > s.cfg.SoftOutbound/16 && s.overBudget() && !c.lp.exempt {
			return outDropBatches
		}
		return outOK
	}
	if c.overSoft == 0 {
		c.overSoft = s.nowMs()
	}
	if out > s.cfg.HardOutbound || s.nowMs()-c.overSoft > s.cfg.SlowTimeout.Milliseconds() {
		s.m.slowConsumers.Inc()
		// The close frame may never reach a viewer that does not read;
		// it is queued for one that merely reads slowly.
		c.closeWith(protocol.CloseSlowConsumer, "slow consumer", "slow_consumer")
		_ = c.gc.Close() // it does not read: no point waiting for its close frame
		return outClosed
	}
	if batches {
		return outDropBatches
	}
	return outOK
}

// overBudget reports whether the viewers' outbound backlogs sum above
// Config.OutboundBudget.
func (s *Server) overBudget() bool {
	return s.cfg.OutboundBudget > 0 && s.outbound.Load() > s.cfg.OutboundBudget
}

// writeFrame writes a complete, shared WebSocket frame, applying the
// outbound policy (droppable frames are batches). It reports whether the
// frame was written. Runs on the loop.
func (c *conn) writeFrame(frame []byte, droppable bool) bool {
	switch c.outboundState(droppable, len(frame)) {
	case outOK:
		c.writeRaw(frame)
		return true
	case outDropBatches:
		c.s.m.dropped.Inc()
	}
	return false
}

// writeRaw writes complete frames (shared bytes: gnet copies what the
// socket does not take at once). Runs on the loop.
func (c *conn) writeRaw(b []byte) {
	if l := c.lp; l.corked == c {
		l.cork = append(l.cork, b...)
		return
	}
	_, _ = c.gc.Write(b)
	c.recount()
}

// recount counts c's backlog after a write, so the process's sum sees what
// a long pass adds before the pass comes back to c. A write that failed
// closed c and took it out of the loop: nothing to count. Runs on the loop.
func (c *conn) recount() {
	if c.pos >= 0 {
		c.count(c.gc.OutboundBuffered())
	}
}

// count records that c has out bytes of outbound backlog, adding the change
// to the server's sum, and returns out. Runs on the loop.
func (c *conn) count(out int) int {
	if d := int64(out) - c.counted; d != 0 {
		c.s.outbound.Add(d)
		c.counted = int64(out)
	}
	return out
}

// writeShared writes a frame shared by many viewers: z, its compressed
// form, if c took permessage-deflate, else plain. Runs on the loop.
func (c *conn) writeShared(plain, z []byte) {
	if c.deflate {
		c.writeRaw(z)
	} else {
		c.writeRaw(plain)
	}
}

// writeRawv writes several complete frames in one writev. Runs on the loop.
func (c *conn) writeRawv(bs [][]byte) {
	if l := c.lp; l.corked == c {
		for _, b := range bs {
			l.cork = append(l.cork, b...)
		}
		return
	}
	_, _ = c.gc.Writev(bs)
	c.recount()
}

func (c *conn) writeControl(op byte, payload []byte) {
	if c.state != stateOpen {
		return
	}
	c.writeRaw(ws.AppendFrame(nil, ws.OpCode(op), payload))
}

// closeWith sends a close frame and closes the connection once the client
// answers with its own close frame, or after closeLinger. A close the
// client started (its close frame already read) closes at once.
// Runs on the loop.
func (c *conn) closeWith(code uint16, reason, metric string) {
	if c.state == stateClosing {
		return
	}
	wasOpen := c.state == stateOpen
	if wasOpen {
		c.writeRaw(ws.AppendClose(nil, code, reason))
	}
	c.state = stateClosing
	c.s.m.closes.WithLabelValues(metric).Inc()
	if !wasOpen || metric == "client" {
		c.uncorkFirst()
		_ = c.gc.Close()
		return
	}
	c.rd.Reset()
	c.lingerUntil = c.s.nowMs() + closeLinger.Milliseconds()
}

// uncorkFirst writes what c gathered in its loop's cork before it is
// closed. Runs on the loop.
func (c *conn) uncorkFirst() {
	if c.lp.corked == c {
		c.lp.uncork()
	}
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

// abort closes without a close frame (handshake timeout).
func (c *conn) abort(metric string) {
	if c.state == stateClosing {
		return
	}
	c.state = stateClosing
	c.s.m.closes.WithLabelValues(metric).Inc()
	c.uncorkFirst()
	_ = c.gc.Close()
}

// kick tells the client why and closes with 4001.
func (c *conn) kick(reason string) {
	c.write(protocol.Encode(protocol.Kicked{Op: protocol.OpKicked, Reason: reason}))
	c.closeWith(protocol.CloseKicked, reason, "kicked")
}
