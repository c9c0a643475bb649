// History fill: the one path from the history store to joins the ring does not serve; a load runs on its own goroutine and answers on each waiter's event loop.

package gateway

import (
	"context"
	"errors"
	"sort"
	"time"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// roomFill is the one store load path of the gateway: a load for the
// joins of a room whose history the room's ring does not hold. After a
// gateway restart or in a reconnect storm the viewers of a room resume from
// about the same seq, and when a room's viewers arrive at a gateway that
// has no ring for it yet they all want its newest messages; one query
// serves them all instead of one each. The answer extends the ring
// backwards when it can, and each waiter's history is built from the ring
// and the answer (answerHistoryLocked), so a waiter gets exactly what it
// asked for even when the ring cannot take the answer. A room has one fill
// per distinct request in flight (room.fills): a join that no fill in
// flight serves starts its own.
//
// The request and waiters are guarded by room.mu while the fill is in
// room.fills; ans is written by the fill's goroutine before it hands the
// waiters back, and only read afterwards.
type roomFill struct {
	// tail: the newest HistoryOnJoin messages (joins without resume while
	// the gateway knows nothing of the room); else up to limit messages
	// after seq after.
	tail    bool
	after   uint64
	limit   int
	waiters []fillWaiter
	ans     fillAnswer
}

// fillAnswer is what the store said to a fill.
type fillAnswer struct {
	// msgs are every stored message after seq after (deleted ones too),
	// ascending, up to the store's end unless cut (the query's limit
	// stopped it).
	msgs  []protocol.Message
	after uint64
	cut   bool
	err   error // the load failed (errNoLoadSlot: no history-load slot)
}

// fillMargin is how far below the first resume point a fill starts, so
// that viewers a few messages behind it share the load; a fill serves
// resumes up to fillWindow above its start, and loads MaxResume more
// than that, so each of them gets up to MaxResume messages.
const (
	fillMargin = 64
	fillWindow = 2 * fillMargin
)

// emptyFor is how long joins of a room this gateway has no message of
// take the store's empty answer as the room's end before asking the store
// again: long enough that a crowd arriving in an empty room shares about
// one load a second, short enough that a store that only lagged behind
// dispatch is asked again soon.
const emptyFor = time.Second

// fillWaiter is a join waiting on a roomFill; its member is catching up
// (batches queue in member.pending).
type fillWaiter struct {
	c      *conn
	m      *member
	resume *uint64 // the resume point; nil for a join without resume
}

// needLocked returns what a join's history needs from the store: the
// room's newest messages (tail) when it has no resume and the gateway
// knows nothing of the room, else the messages after seq after. mu must
// be held.
func (r *room) needLocked(resume *uint64, want int) (tail bool, after uint64) {
	if resume == nil && r.last == 0 {
		return true, 0
	}
	return false, r.joinAfterLocked(resume, want)
}

// serves reports whether f's answer holds the history of a join that
// needs tail, or the messages after seq after.
func (f *roomFill) serves(tail bool, after uint64) bool {
	if f.tail || tail {
		return f.tail == tail
	}
	return f.after <= after && after-f.after <= fillWindow
}

// waitFillLocked makes w, a join whose history the ring does not hold,
// wait on a fill of the room: one in flight that serves it, else a new
// one, which it returns (the caller starts it with runFill once mu is
// released; nil when w waits on a fill already running). mu must be held.
func (r *room) waitFillLocked(w fillWaiter, cfg *Config) *roomFill {
	tail, after := r.needLocked(w.resume, cfg.HistoryOnJoin)
	for _, f := range r.fills {
		if f.serves(tail, after) {
			f.waiters = append(f.waiters, w)
			return nil
		}
	}
	f := &roomFill{tail: true, limit: cfg.HistoryOnJoin, waiters: []fillWaiter{w}}
	if !tail {
		// From a little below this resume point: viewers of one room
		// resume from about the same seq, and the ones slightly behind
		// or ahead can wait on the same load.
		f.tail, f.after, f.limit = false, after-min(after, fillMargin), cfg.MaxResume+fillWindow
	}
	r.fills = append(r.fills, f)
	return f
}

// removeFillLocked takes f out of r.fills: joins no longer wait on it.
// mu must be held.
func (r *room) removeFillLocked(f *roomFill) {
	for i, g := range r.fills {
		if g == f {
			r.fills = append(r.fills[:i], r.fills[i+1:]...)
			break
		}
	}
	if len(r.fills) == 0 {
		r.fills = nil
	}
}

// runFill loads f's answer from the store (loadFill) on its own goroutine,
// holding a history-load slot (histSem) for it: it waits up to
// Config.HistorySlotWait for one, and without one the answer is
// errNoLoadSlot. Then it hands every waiter back to its loop (finishFill).
// Runs on the caller's goroutine only to start the load.
func (s *Server) runFill(r *room, f *roomFill) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		var a fillAnswer
		if s.takeLoadSlot(s.cfg.HistorySlotWait) {
			a = s.loadFill(r, f)
			<-s.histSem
		} else {
			a.err = errNoLoadSlot
		}
		if a.err == nil {
			s.m.historyLoads.WithLabelValues("store").Inc()
		}
		r.mu.Lock()
		f.ans = a
		r.removeFillLocked(f)
		waiters := f.waiters
		r.mu.Unlock()
		for _, w := range waiters {
			w.c.lp.execute(func() { s.finishFill(r, w, &f.ans) })
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

// loadFill asks the store for f's answer (queryFill) until it is one the
// fill can use (applyLocked: the store does not lag behind the ring), at
// most as often as loadUntil allows, and returns the last answer. Runs
// off the loop, holding a history-load slot.
func (s *Server) loadFill(r *room, f *roomFill) fillAnswer {
	var a fillAnswer
	s.loadUntil(func(ctx context.Context) (bool, error) {
		a = s.queryFill(ctx, r.name, f)
		if a.err != nil {
			return false, a.err
		}
		r.mu.Lock()
		defer r.mu.Unlock()
		// A retraction the store has not applied yet (under room.mu:
		// see retractMemory).
		s.retracts.mark(r.name, a.msgs)
		return r.applyLocked(&a, f, s.cfg.RingSize, s.cfg.HistoryOnJoin), nil
	})
	return a
}

// queryFill runs f's store query: the room's newest HistoryOnJoin
// messages, or up to f.limit after f.after, and then the room's newest
// when nothing follows f.after. Runs off the loop.
func (s *Server) queryFill(ctx context.Context, room string, f *roomFill) fillAnswer {
	q := history.Filter{Tail: f.tail, AfterSeq: f.after, Limit: f.limit, IncludeDeleted: true}
	msgs, err := s.cfg.History.Range(ctx, room, q)
	switch {
	case err != nil:
		return fillAnswer{err: err}
	case f.tail:
		return fillAnswer{msgs: msgs, after: tailAfter(msgs, q.Limit)}
	case len(msgs) > 0 || f.after == 0:
		return fillAnswer{msgs: msgs, after: f.after, cut: len(msgs) >= q.Limit}
	}
	// Nothing after the resume point: it is at or past the room's end as
	// far as the store knows, and a client named it. The room's end comes
	// from the store's newest messages instead, never from the resume
	// point (a bogus resume would otherwise make the room drop every batch
	// below it as seen: extendLocked).
	tail := history.Filter{Tail: true, Limit: s.cfg.HistoryOnJoin, IncludeDeleted: true}
	if msgs, err = s.cfg.History.Range(ctx, room, tail); err != nil {
		return fillAnswer{err: err}
	}
	return fillAnswer{msgs: msgs, after: tailAfter(msgs, tail.Limit)}
}

// applyLocked extends the ring with a, f's answer, when a reaches the
// store's end (extendLocked), and reports whether the fill is done: it is
// not while a ends below the ring's first seq although the store was not
// cut off (the history writer persists in batches and has not stored the
// messages just below the ring yet) and the ring does not cover f's
// request by itself. A store that stays behind is answered with
// complete:false (answerHistoryLocked) rather than freeze the viewers
// until it catches up. mu must be held.
func (r *room) applyLocked(a *fillAnswer, f *roomFill, ringSize, want int) bool {
	if a.cut || r.extendLocked(a.after, a.msgs, ringSize) {
		return true
	}
	top := a.after
	if n := len(a.msgs); n > 0 {
		top = a.msgs[n-1].Seq
	}
	if first := r.ringFirstLocked(); first == 0 || top+1 >= first {
		return true // the ring could not take a, and asking again would not change that
	}
	need := f.after
	if f.tail {
		need = r.joinAfterLocked(nil, want)
	}
	return r.coversLocked(need)
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
			// The store has no message of the room: it is empty, or
			// the store lags behind dispatch (the history writer
			// persists in batches). Joins take it as empty for
			// emptyFor (coversLocked: ringFrom 1 before any message),
			// then ask the store again.
			r.ring, r.ringFrom = r.ring[:0:0], 1
			r.emptyUntil = time.Now().Add(emptyFor)
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

// finishFill answers w, a join that waited on a fill, with a the fill's
// answer: from the ring when it now covers w's history, else from the
// answer and the ring (answerHistoryLocked). A resume the fill got no
// history-load slot for gets nothing and keeps its resume point. Runs on
// the waiter's loop.
func (s *Server) finishFill(r *room, w fillWaiter, a *fillAnswer) {
	c, m, resume, want := w.c, w.m, w.resume, s.cfg.HistoryOnJoin
	if c.state != stateOpen || c.member(r.name) != m {
		return
	}
	r.mu.Lock()
	after := r.joinAfterLocked(resume, want)
	msgs, complete := r.ringHistoryLocked(after, resume, want)
	source := "memory"
	switch {
	case complete:
	case resume != nil && errors.Is(a.err, errNoLoadSlot):
		// Too many loads in flight: a resume the ring does not reach back
		// to gets nothing and keeps its resume point (clients take a
		// history as complete up to the joined seq): the viewer sees the
		// gap at the next batch and resumes again, instead of skipping
		// it. Its point is kept only up to the room's newest seq as this
		// gateway knows it (m.from, set at the join): it never answers a
		// joined seq past that.
		r.mu.Unlock()
		s.m.historyLoads.WithLabelValues("failed").Inc()
		m.from = min(m.from, *resume)
		c.finishJoin(m, r.name, resume, nil, false)
		return
	case a.err != nil:
		msgs, complete = r.answerHistoryLocked(a, after, resume, s.cfg.MaxResume, want)
		source = "failed"
	default:
		msgs, complete = r.answerHistoryLocked(a, after, resume, s.cfg.MaxResume, want)
		source = "store"
	}
	// The history holds the ring up to the room's newest seq (also when
	// the resume point is past it): that is the joined seq, and the
	// batches queued meanwhile up to it were in the ring.
	m.from = max(m.from, r.last)
	r.mu.Unlock()
	s.m.historyLoads.WithLabelValues(source).Inc()
	c.finishJoin(m, r.name, resume, msgs, complete)
}

// answerHistoryLocked builds a join's history (after seq after) from a,
// its fill's answer, and the ring: the answer's messages below the ring
// (the oldest maxResume after after), then the ring's; without resume the
// newest want of them. It reports the history complete when the answer
// reaches back to after and on to the ring's first seq, or with no ring to
// the store's end. A failed answer contributes nothing: the ring's part,
// incomplete. mu must be held.
func (r *room) answerHistoryLocked(a *fillAnswer, after uint64, resume *uint64, maxResume, want int) ([]protocol.Message, bool) {
	var part []protocol.Message
	if a.err == nil {
		i := sort.Search(len(a.msgs), func(i int) bool { return a.msgs[i].Seq > after })
		part = a.msgs[i:]
	}
	more := a.cut
	if len(part) > maxResume {
		part, more = part[:maxResume], true // the gap is larger than MaxResume
	}
	reach := after
	if n := len(part); n > 0 {
		reach = part[n-1].Seq
	}
	complete := a.err == nil && a.after <= after
	first := r.ringFirstLocked()
	if first == 0 {
		complete = complete && !more
	} else {
		complete = complete && reach+1 >= first
		i := sort.Search(len(part), func(i int) bool { return part[i].Seq >= first })
		part = part[:i]
	}
	ring := r.ringAfterLocked(after)
	msgs := make([]protocol.Message, 0, len(part)+len(ring))
	for _, m := range part {
		if !m.Deleted {
			msgs = append(msgs, m)
		}
	}
	msgs = append(msgs, ring...)
	if resume == nil && len(msgs) > want {
		msgs = msgs[len(msgs)-want:]
	}
	return msgs, complete
}

// loadUntil calls load until it reports done, Config.HistoryRetryEvery
// apart, at most Config.HistoryRetries times more and for about
// HistoryRetries × HistoryRetryEvery in all (a slow store does not
// multiply the wait): a failing store gets Config.HistoryStoreTries, none
// more when there is no shared store. Each call gets
// Config.HistoryTimeout. Runs off the loop.
func (s *Server) loadUntil(load func(ctx context.Context) (done bool, err error)) {
	start := time.Now()
	budget := time.Duration(s.cfg.HistoryRetries) * s.cfg.HistoryRetryEvery
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(s.ctx, s.cfg.HistoryTimeout)
		done, err := load(ctx)
		cancel()
		if done || attempt >= s.cfg.HistoryRetries || time.Since(start) >= budget || s.ctx.Err() != nil ||
			(err != nil && (attempt >= s.cfg.HistoryStoreTries-1 || errors.Is(err, history.ErrNoShared))) {
			return
		}
		time.Sleep(s.cfg.HistoryRetryEvery)
	}
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
		switch c.write(p.out) {
		case outOK:
			m.from = max(m.from, p.last)
		case outDropBatches:
			c.s.m.dropped.Inc()
		}
	}
}
