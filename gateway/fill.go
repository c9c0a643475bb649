// History fill: store loads for joins the ring does not serve; a load runs on its own goroutine and answers on the waiter's event loop.

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

// waitFillLocked makes w, a join whose history (after seq after) the ring
// does not hold, wait on the room's fill: the one in flight when it serves
// w, else a new one (start: the caller runs it with fillRing once mu is
// released). It reports waiting false when a fill that does not serve w is
// in flight: w then loads its own history (loadOwn). mu must be held.
func (r *room) waitFillLocked(w fillWaiter, after uint64) (start, waiting bool) {
	f := r.fill
	switch {
	case f == nil:
	case f.serves(w.resume, after):
		f.waiters = append(f.waiters, w)
		return false, true
	default:
		return false, false
	}
	f = &roomFill{tail: w.resume == nil, waiters: []fillWaiter{w}}
	if w.resume != nil {
		// From a little below this resume point: viewers of one room
		// resume from about the same seq, and the ones slightly behind
		// can wait on the same load.
		f.after = after - min(after, fillMargin)
	}
	r.fill = f
	return true, true
}

// fillRing loads r.fill's messages from the store, adds them below the
// ring when they reach it (or as the ring when it is empty), and
// hands every waiter back to its loop: a waiter the ring now covers gets
// its history from it, the others load their own (loadOwn). While the
// store has not caught up with the ring (the history writer persists in
// batches) it asks again (loadUntil). The load takes a history-load slot
// (histSem), waiting up to Config.HistorySlotWait for one; without one the
// waiters are handed back as they are (loadOwn answers them from memory
// when no slot is free either). Runs the load on its own goroutine.
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
		if s.takeLoadSlot(s.cfg.HistorySlotWait) {
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

var errNoLoadSlot = errors.New("gateway: no history-load slot")

// takeLoadSlot takes a slot of histSem, waiting up to wait for one (0:
// only a slot free now); the caller gives it back with <-s.histSem. Every
// store load holds one. It reports false when none came free in time or
// the server stopped.
func (s *Server) takeLoadSlot(wait time.Duration) bool {
	select {
	case s.histSem <- struct{}{}:
		return true
	default:
	}
	if wait <= 0 {
		return false
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
	s.loadOwn(w, r.name, after, first, ring)
}

// loadOwn fetches the part of w's history (after seq after) the ring
// lacks, for a join the room's fill did not serve (a fill for other joins
// was in flight, or the ring could not take the answer), off the loop,
// then sends joined + history and the frames queued meanwhile. ring is
// the ring's part of the history and ringFirst the ring's first seq (0:
// none). Runs on the loop; the store query runs on its own goroutine.
func (s *Server) loadOwn(w fillWaiter, name string, after, ringFirst uint64, ring []protocol.Message) {
	c, m, resume := w.c, w.m, w.resume
	if !s.takeLoadSlot(0) {
		// Too many loads in flight: answer with what memory has. A resume
		// the ring does not reach back to gets nothing and keeps its
		// resume point (clients take a history as complete up to the
		// joined seq): the viewer sees the gap at the next batch and
		// resumes again, instead of skipping it.
		s.m.historyLoads.WithLabelValues("failed").Inc()
		if resume != nil {
			// The client's resume point is kept only up to the room's
			// newest seq as this gateway knows it (m.from, set at the
			// join): it never answers a joined seq past that.
			m.from = min(m.from, *resume)
			ring = nil
		}
		c.finishJoin(m, name, resume, ring, false)
		return
	}
	f := s.ownFilter(resume, after, ringFirst, len(ring))
	lp := c.lp
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		msgs, lagging, err := s.loadBelowRing(name, f, ringFirst)
		<-s.histSem
		lp.execute(func() {
			if c.state != stateOpen || c.member(name) != m {
				return
			}
			msgs, complete := s.ownHistory(msgs, ring, resume, ringFirst, err)
			c.finishJoin(m, name, resume, msgs, complete && !lagging)
		})
	}()
}

// ownFilter is loadOwn's store query: with resume, the gap after seq
// after, oldest first (past MaxResume the answer is incomplete); without,
// the newest HistoryOnJoin messages, or the ones just below the ring
// (ringFirst, ringLen messages long) when there is one.
func (s *Server) ownFilter(resume *uint64, after, ringFirst uint64, ringLen int) history.Filter {
	want := s.cfg.HistoryOnJoin
	var f history.Filter
	switch {
	case resume != nil:
		f = history.Filter{AfterSeq: after, Limit: s.cfg.MaxResume}
	case ringFirst == 0:
		f = history.Filter{Tail: true, Limit: want}
	default:
		need := want - ringLen
		if need <= 0 {
			need = 1
		}
		if ringFirst > uint64(need)+1 {
			after = ringFirst - 1 - uint64(need)
		} else {
			after = 0
		}
		f = history.Filter{AfterSeq: after, Limit: need}
	}
	if ringFirst != 0 {
		// Deleted messages too, to tell a store that lags behind the ring
		// from one that has a deleted message there; loadBelowRing leaves
		// them out.
		f.IncludeDeleted = true
	}
	return f
}

// loadBelowRing runs loadOwn's query f of room name, holding a
// history-load slot. The history writer persists in batches, so the store
// may not yet hold the messages just below the ring (ringFirst; after a
// gateway restart the ring starts at the first batch it saw). Joining the
// two across that gap would skip seqs silently: it waits for the store
// instead (loadUntil). lagging reports a store still behind after the wait
// (the writer is stuck, e.g. its consumer group is rejoining after a
// broker restart): the join is answered with complete:false rather than
// freeze the viewer until the store catches up. Runs off the loop.
func (s *Server) loadBelowRing(name string, f history.Filter, ringFirst uint64) (msgs []protocol.Message, lagging bool, err error) {
	s.loadUntil(func(ctx context.Context) (bool, error) {
		msgs, err = s.cfg.History.Range(ctx, name, f)
		return err == nil && !storeLags(msgs, f, ringFirst), err
	})
	lagging = err == nil && storeLags(msgs, f, ringFirst)
	if f.IncludeDeleted {
		kept := msgs[:0]
		for _, m := range msgs {
			if !m.Deleted {
				kept = append(kept, m)
			}
		}
		msgs = kept
	}
	return msgs, lagging, err
}

// ownHistory joins loadOwn's store messages (msgs, or the error that
// stopped the load) and ring into the join's history: the store's below
// the ring, then the ring, the newest HistoryOnJoin without resume. It
// reports whether that history is complete. Runs on the loop.
func (s *Server) ownHistory(msgs, ring []protocol.Message, resume *uint64, ringFirst uint64, err error) ([]protocol.Message, bool) {
	complete := err == nil
	if err != nil {
		s.m.historyLoads.WithLabelValues("failed").Inc()
		msgs = nil
	} else {
		s.m.historyLoads.WithLabelValues("store").Inc()
	}
	// Keep store messages below the ring, then the ring.
	if ringFirst != 0 {
		i := len(msgs)
		for i > 0 && msgs[i-1].Seq >= ringFirst {
			i--
		}
		msgs = msgs[:i]
	}
	if resume != nil && complete && len(msgs) >= s.cfg.MaxResume && ringFirst != 0 {
		complete = false // the gap is larger than MaxResume
	}
	all := append(msgs, ring...)
	if want := s.cfg.HistoryOnJoin; resume == nil && len(all) > want {
		all = all[len(all)-want:]
	}
	return all, complete
}

// storeTries is how many times a load asks a failing store (an error
// other than history.ErrNoShared, which gets one).
const storeTries = 3

// loadUntil calls load until it reports done, Config.HistoryRetryEvery
// apart, at most Config.HistoryRetries times more: a failing store gets
// storeTries, none more when there is no shared store. Each call gets
// Config.HistoryTimeout. Runs off the loop.
func (s *Server) loadUntil(load func(ctx context.Context) (done bool, err error)) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HistoryTimeout)
		done, err := load(ctx)
		cancel()
		if done || attempt >= s.cfg.HistoryRetries || s.ctx.Err() != nil || (err != nil && (attempt >= storeTries-1 || errors.Is(err, history.ErrNoShared))) {
			return
		}
		time.Sleep(s.cfg.HistoryRetryEvery)
	}
}

// storeLags reports whether msgs, the store's answer to f, ends before the
// message just below ringFirst although the store was not cut off by
// f.Limit: a gap between the store and the ring.
func storeLags(msgs []protocol.Message, f history.Filter, ringFirst uint64) bool {
	if ringFirst == 0 || len(msgs) >= f.Limit {
		return false
	}
	last := f.AfterSeq
	if n := len(msgs); n > 0 {
		last = msgs[n-1].Seq
	}
	return last+1 < ringFirst
}

// finishJoin sends joined + history and flushes frames queued while the
// history loaded. Runs on the loop.
func (c *conn) finishJoin(m *member, name string, resume *uint64, msgs []protocol.Message, complete bool) {
	r := m.lr.r
	r.mu.Lock()
	online := r.onlineCount()
	r.mu.Unlock()
	if n := len(msgs); n > 0 && msgs[n-1].Seq > m.from {
		m.from = msgs[n-1].Seq
	}
	if m.overflow {
		// Batches arrived past maxPending and were not queued: the ring
		// has them (dispatch appends a batch to it before handing it to
		// the loops), so the history continues with the ring up to the
		// room's newest seq. When the ring no longer reaches back to the
		// history's end the answer is incomplete and the client resumes.
		m.overflow = false
		r.mu.Lock()
		if r.coversLocked(m.from) {
			msgs = append(msgs[:len(msgs):len(msgs)], r.ringAfterLocked(m.from)...)
			m.from = max(m.from, r.last)
		} else {
			complete = false
		}
		r.mu.Unlock()
	}
	// The joined seq is the one the history covers, not the room's newest:
	// clients take the history as complete up to it, and the batches that
	// arrived while it loaded (pending) follow it.
	c.writeOwn(protocol.Encode(protocol.Joined{Op: protocol.OpJoined, Room: name, Seq: m.from, Online: online}))
	c.writeOwn(protocol.EncodeHistory(name, msgs, complete))
	m.catching = false
	pending := m.pending
	m.pending = nil
	for _, p := range pending {
		if p.last != 0 && p.last <= m.from {
			continue
		}
		switch c.write(p.frame, nil, streamClass(p.last)) {
		case outOK:
			m.from = max(m.from, p.last)
		case outDropBatches:
			c.s.m.dropped.Inc()
		}
	}
}
