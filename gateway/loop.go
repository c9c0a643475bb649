package gateway

import (
	"context"
	"sync"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/danmaku-live/danmaku/pkg/ws"
)

// loop is the gateway's state for one gnet event loop. Every field except
// el, idx and out is owned by that event loop: it is read and written only
// in gnet callbacks of the loop's connections and in tasks run with
// el.Execute, never from another goroutine, so it needs no lock.
type loop struct {
	idx int
	el  gnet.EventLoop

	rooms map[string]*loopRoom // rooms with members on this loop
	conns []*conn              // every connection of the loop (conn.pos indexes it)

	// out holds frames for this loop's viewers that the dispatch, control
	// and presence goroutines queued since the last flush (guarded by
	// out.mu). At most one flush task is queued at a time, so while the
	// loop is busy frames accumulate and the next flush writes them to
	// each viewer in one syscall.
	out struct {
		mu     sync.Mutex
		q      []delivery
		queued bool
	}
	// Flush scratch, owned by the loop.
	spare   []delivery
	byRoom  map[string][]int
	joined  []byte // concatenated frames
	zjoined []byte // concatenated frames, compressed where possible
	iov     [][]byte
	// inflater decompresses client messages sent compressed; owned by the
	// loop.
	inflater ws.Inflater
}

// delivery is one shared frame for the viewers of a room on one loop.
// first/last are the batch's seq range and msgs its message count; all 0
// for frames outside the seq stream (delete, purge, notice, online).
type delivery struct {
	room        string
	frame       []byte
	zframe      []byte // the same message compressed (permessage-deflate); nil if none
	first, last uint64
	msgs        int
}

// pick returns the frame to write to c.
func (d *delivery) pick(c *conn) []byte {
	if c.deflate && d.zframe != nil {
		return d.zframe
	}
	return d.frame
}

// loopRoom is one room's members on one loop. Owned by the loop.
type loopRoom struct {
	r       *room
	members []*member
}

// member is a connection's membership in a room. Owned by the loop.
type member struct {
	c   *conn
	lr  *loopRoom
	pos int // index in lr.members
	// from is the highest seq this viewer has been given; batches ending
	// at or below it are skipped (they were in its history).
	from uint64
	// pending holds frames that arrive while history is being loaded from
	// the store (catching up); nil otherwise.
	pending  []pendingFrame
	catching bool
}

type pendingFrame struct {
	frame       []byte
	first, last uint64
}

// maxPending bounds frames queued for a viewer catching up; past it they
// are dropped and the viewer sees a gap and resumes.
const maxPending = 256

func (l *loop) addConn(c *conn) {
	c.pos = len(l.conns)
	l.conns = append(l.conns, c)
}

func (l *loop) removeConn(c *conn) {
	last := len(l.conns) - 1
	if c.pos < 0 || c.pos > last || l.conns[c.pos] != c {
		return
	}
	l.conns[c.pos] = l.conns[last]
	l.conns[c.pos].pos = c.pos
	l.conns[last] = nil
	l.conns = l.conns[:last]
	c.pos = -1
}

// post queues d for the loop's viewers and schedules a flush unless one is
// already queued. It is safe to call from any goroutine.
func (l *loop) post(s *Server, d delivery) {
	l.out.mu.Lock()
	l.out.q = append(l.out.q, d)
	schedule := !l.out.queued
	l.out.queued = true
	l.out.mu.Unlock()
	if schedule {
		l.execute(func() { l.flush(s) })
	}
}

// execute runs f on the loop. It is safe to call from any goroutine.
func (l *loop) execute(f func()) {
	_ = l.el.Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		f()
		return nil
	}))
}

// sweep enforces handshake and idle timeouts, pings quiet connections,
// expires tokens and closes draining connections whose time has come.
// Runs on the loop.
func (l *loop) sweep(s *Server, now time.Time) {
	nowMs := now.UnixMilli()
	hsDeadline := nowMs - s.cfg.HandshakeTimeout.Milliseconds()
	idleDeadline := nowMs - s.cfg.IdleTimeout.Milliseconds()
	pingAfter := nowMs - s.cfg.IdleTimeout.Milliseconds()/2
	// Iterate backwards: a connection closed at once (a failing write)
	// is swapped out of l.conns, which only moves later entries.
	for i := len(l.conns) - 1; i >= 0; i-- {
		if i >= len(l.conns) {
			continue
		}
		c := l.conns[i]
		switch {
		case c.state == stateHandshake:
			if c.opened < hsDeadline {
				s.m.handshakes.WithLabelValues("timeout").Inc()
				c.abort("handshake_timeout")
			}
		case c.state == stateClosing:
			if c.lingerUntil != 0 && nowMs >= c.lingerUntil {
				c.lingerUntil = 0
				_ = c.gc.Close()
			}
		case c.state != stateOpen:
		case c.closeAt != 0 && nowMs >= c.closeAt:
			c.closeWith(1001, "server draining", "drain")
		case c.lastRecv < idleDeadline:
			c.closeWith(4002, "idle timeout", "idle")
		case c.claims != nil && c.claims.ExpiresAt != nil && now.After(c.claims.ExpiresAt.Time):
			c.closeWith(4005, "token expired", "token_expired")
		case c.lastRecv < pingAfter && !c.pinged:
			c.pinged = true
			c.writeControl(0x9, nil)
		default:
			c.bad = 0
		}
	}
}
