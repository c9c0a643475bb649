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
		// headAt is when the oldest delivery in q was born (queued, or
		// its oldest message accepted, see delivery.born; Unix ns); 0
		// when q is empty.
		headAt int64
		// queuedAt is when the first delivery in q was queued here
		// (Unix ns); 0 when q is empty.
		queuedAt int64
	}
	// delay is how long the oldest delivery of the last flush waited,
	// from being queued to the end of the flush's write pass (ns), and
	// delayAt when that pass ended (Unix ns): what the loop's writes add
	// to a batch, read by the shed goroutine (see shed.go).
	delay, delayAt atomic.Int64
	// delayHead is when that oldest delivery was queued (Unix ns): a lag
	// measured on deliveries queued before a room's last cut does not
	// show the cut yet.
	delayHead atomic.Int64
	// local is the part of delay spent in this loop: from the first
	// delivery's queueing to the end of the pass (ns).
	local atomic.Int64
	// passHead is when the oldest delivery of the running flush was
	// queued (Unix ns). Owned by the loop.
	passHead int64
	// exempt is set while a flush writes a room the gateway sheds: its
	// viewers' batches are not dropped for the outbound budget (the
	// shedding answers it, the same for all of them). Owned by the loop.
	exempt bool
	// Flush scratch, owned by the loop.
	spare    []delivery
	extended []delivery // a pass's deliveries with those takeMore added
	more     []delivery // takeMore's result
	byRoom   map[string][]int
	joined   []byte // concatenated frames
	zjoined  []byte // concatenated frames, compressed where possible
	rest     []byte // merged frames of the part of a flush some members lack
	zrest    []byte // the same, compressed
	iov      [][]byte
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

// delivery is one shared frame for the viewers of a room on one loop.
// first/last are the batch's seq range and msgs its message count; all 0
// for frames outside the seq stream (delete, purge, notice, online).
type delivery struct {
	room        string
	frame       []byte
	zframe      []byte // the same message compressed (permessage-deflate); nil if none
	first, last uint64
	msgs        int
	batch       []protocol.Message // the batch's messages, for merging; nil outside the seq stream
	// born is when the batch's oldest message would have reached this
	// gateway with no queue on the way (Unix ns; see Server.born); 0:
	// when it was queued here.
	born int64
}

// maxMerge is the most messages merged into one batch frame (a batch
// from dispatch that is larger on its own is not split), so that a viewer
// behind by seconds of a busy room gets frames a few tens of KB long
// rather than one of megabytes.
const maxMerge = 256

// merged returns frames (and their compressed form, if any viewer takes
// compression) carrying every message of ds, deliveries of one room that
// are consecutive batches of its seq stream: one frame per run of up to
// maxMerge messages, so that a viewer given them all parses a few frames
// instead of len(ds). A run with seqs left out (thinned batches) is
// encoded with from/to covering the whole run. The frames are appended to
// frames and zframes (the loop's scratch). ok is false when ds holds
// anything else: a frame outside the stream or a gap between batches.
// Runs on the loop.
func (l *loop) merged(s *Server, ds []delivery, frames, zframes []byte) ([]byte, []byte, bool) {
	for i, d := range ds {
		if d.last == 0 || d.batch == nil || i > 0 && d.first != ds[i-1].last+1 {
			return nil, nil, false
		}
	}
	compress := s.ndeflate.Load() > 0
	for start := 0; start < len(ds); {
		msgs := l.merge[:0]
		end := start
		for end < len(ds) && (end == start || len(msgs)+len(ds[end].batch) <= maxMerge) {
			msgs = append(msgs, ds[end].batch...)
			end++
		}
		first, last := ds[start].first, ds[end-1].last
		var payload []byte
		if uint64(len(msgs)) == last-first+1 {
			payload = protocol.EncodeBatch(ds[0].room, msgs)
		} else {
			payload = protocol.EncodeThinned(ds[0].room, first, last, msgs)
		}
		clear(msgs)
		l.merge = msgs[:0]
		n0, z0 := len(frames), len(zframes)
		frames = ws.AppendFrame(frames, ws.OpText, payload)
		if compress {
			zframes = l.deflater.AppendFrame(zframes, ws.OpText, payload)
			if len(zframes)-z0 >= len(frames)-n0 {
				// Not smaller compressed (a short batch): plain.
				zframes = append(zframes[:z0], frames[n0:]...)
			}
		}
		start = end
	}
	if !compress {
		zframes = nil
	}
	return frames, zframes, true
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
	// overflow is set when batches arrived for a catching member past
	// maxPending: they (and every later one until it is answered) were
	// not queued, and finishJoin takes them from the ring.
	overflow bool
	// observer: a moderator watching with observe=1, not counted online.
	observer bool
}

type pendingFrame struct {
	frame       []byte
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

// post queues d for the loop's viewers and schedules a flush unless one is
// already pending. It is safe to call from any goroutine.
func (l *loop) post(s *Server, d delivery) {
	l.out.mu.Lock()
	defer l.out.mu.Unlock()
	now := time.Now().UnixNano()
	born := d.born
	if born == 0 {
		born = now
	}
	if len(l.out.q) == 0 {
		l.out.headAt, l.out.queuedAt = born, now
	} else if born < l.out.headAt {
		l.out.headAt = born
	}
	l.out.q = append(l.out.q, d)
	if !l.out.queued {
		l.out.queued = true
		l.scheduleLocked(s)
	}
}

// scheduleLocked queues a flush at out.notBefore, or at once if that has
// passed. Called with out.mu held.
func (l *loop) scheduleLocked(s *Server) {
	wait := time.Duration(l.out.notBefore - time.Now().UnixNano())
	if wait <= 0 {
		l.execute(func() { l.flush(s) })
		return
	}
	if l.out.timer == nil {
		l.out.timer = time.AfterFunc(wait, func() { l.execute(func() { l.flush(s) }) })
		return
	}
	l.out.timer.Reset(wait)
}

// paceAfter returns how long the loop waits after a flush that wrote to n
// viewers before its next one (Config.FlushRate).
func (s *Server) paceAfter(n int) time.Duration {
	if s.cfg.FlushRate <= 0 || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second/time.Duration(s.cfg.FlushRate), s.cfg.MaxFlushDelay)
}

// uncork writes what the corked connection gathered. Runs on the loop.
func (l *loop) uncork() {
	c := l.corked
	l.corked = nil
	if c != nil && len(l.cork) > 0 {
		_, _ = c.gc.Write(l.cork)
	}
	if cap(l.cork) > 64<<10 {
		l.cork = nil // a long history: do not keep its buffer
	} else {
		l.cork = l.cork[:0]
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
			c.closeWith(1001, "server draining", "drain")
		case c.lastRecv < idleDeadline && !c.unread():
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
