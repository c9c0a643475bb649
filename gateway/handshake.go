// The HTTP upgrade of a new connection: runs on the connection's event loop.

package gateway

import (
	"errors"
	"net/url"
	"strconv"
	"strings"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

func (s *Server) originAllowed(origin string) bool {
	for _, o := range s.cfg.AllowedOrigins {
		if o == origin || o == "*" {
			return true
		}
	}
	return false
}

func (s *Server) addUser(c *conn) {
	uid := c.claims.UID()
	s.usersMu.Lock()
	set := s.users[uid]
	if set == nil {
		set = make(map[*conn]struct{}, 1)
		s.users[uid] = set
	}
	set[c] = struct{}{}
	s.usersMu.Unlock()
}

func (s *Server) removeUser(c *conn) {
	uid := c.claims.UID()
	s.usersMu.Lock()
	if set := s.users[uid]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(s.users, uid)
		}
	}
	s.usersMu.Unlock()
}

// handshake parses the upgrade request. It returns the bytes consumed (0
// when more are needed).
func (c *conn) handshake(buf []byte) int {
	h, n, err := ws.ParseUpgrade(buf, c.s.cfg.MaxUpgradeRequest)
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
	room, resume, refused := c.admit(&h)
	if refused != nil {
		c.reject(refused.Status, refused.Message, refused.Header)
		return len(buf)
	}
	c.open(&h, room, resume)
	return n
}

// admit checks an upgrade request h against the gateway's rules (path,
// origin, draining) and reads its query: the token (or the Authorization
// header), the room to join and the resume point. refused is the HTTP
// error to answer with when the request is not admitted. Runs on the loop.
func (c *conn) admit(h *ws.Handshake) (room string, resume *uint64, refused *ws.HandshakeError) {
	s := c.s
	refuse := func(status int, msg, header string) (string, *uint64, *ws.HandshakeError) {
		return "", nil, &ws.HandshakeError{Status: status, Message: msg, Header: header}
	}
	if h.Path != "/ws" {
		return refuse(404, "not found: the WebSocket endpoint is /ws", "")
	}
	if len(s.cfg.AllowedOrigins) > 0 && h.Origin != "" && !s.originAllowed(h.Origin) {
		return refuse(403, "origin not allowed", "")
	}
	if s.draining.Load() {
		return refuse(503, "server draining, reconnect elsewhere", "Retry-After: 1\r\n")
	}
	q, qerr := url.ParseQuery(h.RawQuery)
	if qerr != nil {
		return refuse(400, "malformed query", "")
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
			return refuse(401, "invalid or expired token", "")
		}
		c.claims = claims
	}
	room = q.Get("room")
	if room != "" && !protocol.ValidRoom(room) {
		return refuse(400, "room must match [A-Za-z0-9_-]{1,64}", "")
	}
	c.observe = q.Get("observe") == "1" || q.Get("observe") == "true"
	if v := q.Get("resume"); v != "" {
		seq, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return refuse(400, "resume must be a seq number", "")
		}
		resume = &seq
	}
	return room, resume, nil
}

// open accepts the admitted upgrade h: it negotiates the subprotocol and
// permessage-deflate, answers 101, registers the user and joins room.
// Runs on the loop.
func (c *conn) open(h *ws.Handshake, room string, resume *uint64) {
	s := c.s
	ext := ""
	// A client that offers danmaku.v1 (or danmaku.v1.compact) gets the
	// first of them it offered; one that offers only other subprotocols
	// gets none and fails the connection itself (RFC 6455).
	if p := ws.SelectProtocol(h.Protocols, protocol.SubprotocolCompact, protocol.Subprotocol); p != "" {
		ext = "Sec-WebSocket-Protocol: " + p + "\r\n"
		if p == protocol.SubprotocolCompact {
			c.compact = true
			s.ncompact.Add(1)
		}
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
}

// reject answers a failed upgrade with an HTTP error and closes.
func (c *conn) reject(status int, msg, header string) {
	c.s.m.handshakes.WithLabelValues("rejected").Inc()
	_, _ = c.gc.Write(ws.AppendHTTPError(nil, status, msg, header))
	c.state = stateClosing
	_ = c.gc.Close()
}
