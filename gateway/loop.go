// One event loop's state (its connections, rooms and members) and its sweep: runs on the event loop.

package gateway

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/danmaku-live/danmaku/pkg/protocol"
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
	// out.mu). At most one flush is pending or running at a time (queued
	// stays true until a flush finds nothing more to write), so while the
	// loop is busy or paced frames accumulate and the next flush writes
	// them to each viewer in one syscall. notBefore (Unix ns) is when the
	// next flush may run: the last flush's fan-out cost paces the loop
	// (Config.FlushRate); timer runs a paced flush.
	out struct {
		mu        sync.Mutex
		q         []delivery
		queued    bool
		notBefore int64
		timer     *time.Timer
	}
	// delay is the longest a delivery of the last flush waited, from
	// being queued on this loop to being written to every member that
	// lacked it (ns, passLag), less what of the wait for wide rooms
	// before that flush it sat through, and delayAt when that flush
	// ended (Unix ns): how late the loop's own writes are, on this
	// gateway's clock, read by the shed goroutine (see shed.go).
	delay, delayAt atomic.Int64
	// delayHead is when that delivery was queued (Unix ns): a lag
	// measured on deliveries queued before a room's last cut does not
	// show the cut yet.
	delayHead atomic.Int64
	// passHead is when the oldest delivery of the running flush was
	// queued (Unix ns). Owned by the loop.
	passHead int64
	// exempt is set while a flush writes a room the gateway sheds, or
	// any room after a wait for wide rooms (passWide): its
	// viewers' batches are not dropped for the outbound budget (the
	// shedding answers it, the same for all of them). Owned by the loop.
	exempt bool
	// wide is set when the running flush wrote a room under overload
	// handling: the loop's next flush waits Config.ShedFlushDelay (see
	// shed.go). Owned by the loop.
	wide bool
	// wideWire and wideWrites are the bytes on the wire and the count of
	// such rooms' stream writes in the running flush (covers of no
	// messages too): below shedFrameBytes on average, a write's fixed
	// cost is what the wait saves, and the wait stretches to the pass's
	// length (see flush). Owned by the loop.
	wideWire, wideWrites int64
	// passWide: the running flush follows a wait for wide rooms. Owned by
	// the loop.
	passWide bool
	// wideWait is what the last flush added to the wait before the next
	// one because of wide rooms (ns), at the end of that wait
	// (out.notBefore): the shed goroutine does not count it as the loop
	// being late. Written by the loop.
	wideWait atomic.Int64
	// lag is the running flush's lateness (lag.go). Owned by the loop.
	lag passLag
	// Flush scratch, owned by the loop.
	spare    []delivery
	extended []delivery // a pass's deliveries with those takeMore added
	more     []delivery // takeMore's result
	byRoom   map[string][]int
	joined   []byte // concatenated frames
	zjoined  []byte // concatenated frames, compressed where possible
	rest     []byte // merged frames of the part of a flush some members lack
	zrest    []byte // the same, compressed
	// cjoined, czjoined, crest, czrest: joined, zjoined, rest and zrest
	// in the compact form (conn.compact).
	cjoined, czjoined, crest, czrest []byte
	iov                              [][]byte   // conn.write's frames for one writev
	outs                             []outFrame // writeLacking's frames for one conn.write
	// cork gathers what is written to corked (a connection finishing its
	// handshake) until uncork writes it in one syscall: the 101, joined and
	// history, instead of three writes, each a TCP segment and a wake-up
	// of the client. Owned by the loop.
	cork   []byte
	corked *conn
	// inflater decompresses client messages sent compressed, deflater
	// compresses merged batches; owned by the loop.
	inflater ws.Inflater
	deflater ws.Deflater
	merge    []protocol.Message // merged scratch
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
	// overflow is set when batches arrived for a catching member past
	// maxPending: they (and every later one until it is answered) were
	// not queued, and finishJoin takes them from the ring.
	overflow bool
	// observer: a moderator watching with observe=1, not counted online.
	observer bool
}

// pendingFrame is a delivery queued for a member catching up: its frame
// for the member's connection and its seq range (last 0: outside the seq
// stream).
type pendingFrame struct {
	out         outFrame
	first, last uint64
}

// maxPending bounds the batches queued for a viewer catching up; past it
// they are not queued (member.overflow) and its join is answered with them
// from the ring, or with complete:false when the ring no longer holds them.
// Frames outside the seq stream (delete, purge, notice, online) are always
// queued: they are few (moderators' actions, a count every
// PresenceInterval) and dropping one would leave a deleted message on
// screen.
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
	c.count(0)
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
	hsHardDeadline := nowMs - 4*s.cfg.HandshakeTimeout.Milliseconds()
	idleDeadline := nowMs - s.cfg.IdleTimeout.Milliseconds()
	pingAfter := nowMs - s.cfg.IdleTimeout.Milliseconds()/2
	// Iterate backwards: a connection closed at once (a failing write)
	// is swapped out of l.conns, which only moves later entries.
	for i := len(l.conns) - 1; i >= 0; i-- {
		if i >= len(l.conns) {
			continue
		}
		c := l.conns[i]
		// Backlogs drain between writes unseen: recount every one.
		c.count(c.gc.OutboundBuffered())
		switch {
		case c.state == stateHandshake:
			// A loop behind on its reads may sweep before it reads a
			// request that came in time: spare a connection with bytes
			// unread (for at most 4 timeouts, so a client cannot trickle
			// its way past the bound).
			if c.opened < hsDeadline && (!c.unread() || c.opened < hsHardDeadline) {
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
			c.closeWith(ws.CloseGoingAway, "server draining", "drain")
		case c.lastRecv < idleDeadline && !c.unread():
			c.closeWith(protocol.CloseIdleTimeout, "idle timeout", "idle")
		case c.claims != nil && c.claims.ExpiresAt != nil && now.After(c.claims.ExpiresAt.Time):
			c.closeWith(protocol.CloseTokenExpired, "token expired", "token_expired")
		case c.lastRecv < pingAfter && !c.pinged:
			c.pinged = true
			c.write(outFrame{frame: ws.AppendFrame(nil, ws.OpPing, nil)})
		default:
			c.bad = 0
		}
	}
}
