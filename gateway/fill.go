package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// roomFill is a store load that extends a room's ring backwards, so that
// the joins waiting on it are answered from memory: after a gateway
// restart or in a reconnect storm the viewers of a room resume from about
// the same seq, and when a room's viewers arrive at a gateway that has no
// ring for it yet they all want its newest messages; one query serves them
// all instead of one each. Guarded by room.mu.
type roomFill struct {
	// tail: the newest HistoryOnJoin messages (for joins without resume);
	// else every message after seq after (for resumes).
	tail    bool
	after   uint64
	waiters []fillWaiter
}

// serves reports whether a join waiting on f finds its history in the
// ring afterwards: a resume after seq after waits on a resume fill from at
// or below it, a join without resume on a tail fill.
func (f *roomFill) serves(resume *uint64, after uint64) bool {
	if resume == nil {
		return f.tail
	}
	return !f.tail && f.after <= after
}

// fillMargin is how far below the first resume point a fill starts, so
// that viewers a few messages behind it share the load.
const fillMargin = 64

// fillWaiter is a join waiting on a roomFill; its member is catching up
// (batches queue in member.pending).
type fillWaiter struct {
	c      *conn
	m      *member
	resume *uint64 // the resume point; nil for a join without resume
}

// fillRing loads r.fill's messages from the store, adds them below the
// ring when they reach it (or as the ring when it is empty), and
// hands every waiter back to its loop: a waiter the ring now covers gets
// its history from it, the others load their own (loadHistory). While the
// store has not caught up with the ring (the history writer persists in
// batches) it asks again, for up to 2 s. The load takes a history-load
// slot (histSem), waiting up to fillSlotWait for one; without one the
// waiters are handed back as they are (loadHistory answers them from
// memory when no slot is free either). Runs the load on its own
// goroutine.
func (s *Server) fillRing(r *room) {
	r.mu.Lock()
	f := history.Filter{AfterSeq: r.fill.after, Limit: s.cfg.MaxResume, IncludeDeleted: true}
	if r.fill.tail {
		f = history.Filter{Tail: true, Limit: s.cfg.HistoryOnJoin, IncludeDeleted: true}
	}
	r.mu.Unlock()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var err error
		if s.takeLoadSlot(fillSlotWait) {
			err = s.fillLoad(r, f)
			<-s.histSem
		} else {
			err = errNoLoadSlot
		}
		if err == nil {
			s.m.historyLoads.WithLabelValues("store").Inc()
		}
		r.mu.Lock()
		fill := r.fill
		r.fill = nil
		r.mu.Unlock()
		for _, w := range fill.waiters {
			w.c.lp.execute(func() { s.finishFill(r, w) })
		}
	}()
}

// fillSlotWait is how long a ring fill waits for a history-load slot: a
// storm of joins of fresh rooms (a gateway restart) is served in turn
// rather than told complete:false, about as long as a fill waits for a
// lagging store.
const fillSlotWait = 2 * time.Second

var errNoLoadSlot = errors.New("gateway: no history-load slot")

// takeLoadSlot takes a slot of histSem, waiting up to wait for one; the
// caller gives it back with <-s.histSem. It reports false when none came
// free in time or the server stopped.
func (s *Server) takeLoadSlot(wait time.Duration) bool {
	select {
	case s.histSem <- struct{}{}:
		return true
	default:
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case s.histSem <- struct{}{}:
		return true
	case <-t.C:
	case <-s.ctx.Done():
	}
	return false
}

// fillLoad runs fillRing's store queries for r (f, then the room's newest
// messages when f's resume point is past the store's end) and extends the
// ring with the answer. It returns the last query's error. Runs off the
// loop, holding a history-load slot.
func (s *Server) fillLoad(r *room, f history.Filter) error {
	var err error
	s.loadUntil(func(ctx context.Context) (bool, error) {
		var msgs []protocol.Message
		msgs, err = s.cfg.History.Range(ctx, r.name, f)
		if err != nil {
			return false, err
		}
		after, whole := f.AfterSeq, len(msgs) < f.Limit
		if !f.Tail && len(msgs) == 0 && f.AfterSeq > 0 {
			// Nothing after the resume point: it is at or past the
			// room's end as far as the store knows, and a client
			// named it. The room's end comes from the store's
			// newest messages instead, never from the resume
			// point (a bogus resume would otherwise make the room
			// drop every batch below it as seen).
			tail := history.Filter{Tail: true, Limit: s.cfg.HistoryOnJoin, IncludeDeleted: true}
			if msgs, err = s.cfg.History.Range(ctx, r.name, tail); err != nil {
				return false, err
			}
			after, whole = tailAfter(msgs, tail.Limit), true
		}
		if f.Tail {
			after, whole = tailAfter(msgs, f.Limit), true
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		return whole && r.extendLocked(after, msgs, s.cfg.RingSize), nil
	})
	return err
}

// tailAfter returns the seq that msgs, the store's answer to a Tail
// query for limit messages, cover everything after: the one below the
// first, or 0 (the whole room) when fewer came back than asked for.
func tailAfter(msgs []protocol.Message, limit int) uint64 {
	if len(msgs) == limit && limit > 0 {
		return msgs[0].Seq - 1
	}
	return 0
}

// extendLocked puts msgs, the store's messages after seq after, below the
// ring when they reach its first seq (or as the ring when it is empty), and
// reports whether the ring then covers every seq after after. It leaves
// the ring as it is when they do not reach it (the store lags) or the ring
// would grow past its bound.
//
// The room's last seq is only ever set from a real message (here, the
// store's newest in msgs), never from after: after may derive from a
// client's resume, and a last seq past the room's end would make
// appendLocked drop every later batch as seen, for every viewer. mu must
// be held.
func (r *room) extendLocked(after uint64, msgs []protocol.Message, ringSize int) bool {
	top := after
	if n := len(msgs); n > 0 {
		top = msgs[n-1].Seq
	}
	if r.last == 0 {
		// Nothing from dispatch yet: the store's answer is the ring.
		if len(msgs) == 0 {
			if after != 0 {
				return false // nothing learned about the room's end
			}
			// The store has no message of the room: it is empty
			// (coversLocked: ringFrom 1 before any message).
			r.ring, r.ringFrom = r.ring[:0:0], 1
			return true
		}
		r.ring = append(r.ring[:0:0], msgs...)
		r.ringFrom = after + 1
		r.last = top
		return true
	}
	first := r.ringFirstLocked()
	if r.coversLocked(after) {
		return true
	}
	if top+1 < first {
		return false // a gap between the store and the ring
	}
	below := msgs
	for i, m := range msgs {
		if m.Seq >= first {
			below = msgs[:i]
			break
		}
	}
	if len(below)+len(r.ring) > ringSize+ringSize/4 {
		return false
	}
	r.ring = append(append(make([]protocol.Message, 0, len(below)+len(r.ring)), below...), r.ring...)
	r.ringFrom = after + 1
	return true
}

// finishFill answers a join that waited on a ring fill. Runs on the
// waiter's loop.
func (s *Server) finishFill(r *room, w fillWaiter) {
	c, m := w.c, w.m
	if c.state != stateOpen || c.member(r.name) != m {
		return
	}
	resume := w.resume
	r.mu.Lock()
	after := r.joinAfterLocked(resume, s.cfg.HistoryOnJoin)
	if msgs, ok := r.ringHistoryLocked(after, resume, s.cfg.HistoryOnJoin); ok {
		// The history covers the ring up to the room's newest seq (also
		// when the resume point is past it): that is the joined seq,
		// and the batches queued meanwhile up to it were in the ring.
		m.from = max(m.from, r.last)
		r.mu.Unlock()
		s.m.historyLoads.WithLabelValues("memory").Inc()
		c.finishJoin(m, r.name, resume, msgs, true)
		return
	}
	first := r.ringFirstLocked()
	ring := r.ringAfterLocked(after)
	r.mu.Unlock()
	s.loadHistory(c, m, r.name, resume, after, first, ring)
}
