package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// join adds the connection to room and sends joined + history: the newest
// HistoryOnJoin messages, or with resume every message after that seq.
// History comes from the room's ring when it covers the request, else from
// the store, loaded off the loop while batches for the viewer are queued.
// A join of a room the connection is already in acts as a resume.
// Runs on the loop.
func (c *conn) join(name string, resume *uint64) {
	s := c.s
	if resume != nil && *resume == 0 {
		// "Everything after nothing": a viewer that has seen nothing
		// gets what a join without resume gets (the newest
		// HistoryOnJoin messages), not the room from seq 1.
		resume = nil
	}
	if m := c.member(name); m != nil {
		c.removeMember(m)
	}
	if len(c.rooms) >= s.cfg.MaxRoomsPerConn {
		c.write(protocol.EncodeError(&protocol.Error{Code: protocol.CodeInvalid, Message: "too many rooms on one connection"}))
		return
	}
	var r *room
	for {
		r = s.rooms.getOrCreate(name)
		r.mu.Lock()
		if !r.dead {
			break
		}
		r.mu.Unlock()
	}
	// r.mu is held: register and snapshot atomically with respect to
	// the dispatch goroutine (see room).
	lr := c.lp.rooms[name]
	if lr == nil {
		lr = &loopRoom{r: r}
		c.lp.rooms[name] = lr
	}
	m := &member{c: c, lr: lr, pos: len(lr.members)}
	m.observer = c.observe && c.claims != nil && c.claims.CanModerate(name)
	lr.members = append(lr.members, m)
	c.rooms = append(c.rooms, m)
	r.viewers[c.lp.idx]++
	if m.observer {
		r.observers.Add(1)
	}
	if r.online.Add(1) == 1 {
		s.m.rooms.Inc()
	}

	last, first := r.last, r.ringFirstLocked()
	after := r.joinAfterLocked(resume, s.cfg.HistoryOnJoin)
	if msgs, ok := r.ringHistoryLocked(after, resume, s.cfg.HistoryOnJoin); ok {
		online := r.onlineCount()
		r.mu.Unlock()
		m.from = last
		s.m.historyLoads.WithLabelValues("memory").Inc()
		c.write(protocol.Encode(protocol.Joined{Op: protocol.OpJoined, Room: name, Seq: last, Online: online}))
		c.write(protocol.EncodeHistory(name, msgs, true))
		return
	}
	m.catching = true
	m.from = last
	// Joins the ring does not serve (a restarted gateway, a storm, a room
	// filling up): one store load per room extends the ring for all of
	// them (see roomFill).
	if f := r.fill; f == nil || f.serves(resume, after) {
		w := fillWaiter{c: c, m: m, resume: resume}
		if f != nil {
			f.waiters = append(f.waiters, w)
			r.mu.Unlock()
			return
		}
		f = &roomFill{tail: resume == nil, waiters: []fillWaiter{w}}
		if resume != nil {
			// From a little below this resume point: viewers of one
			// room resume from about the same seq, and the ones
			// slightly behind can wait on the same load.
			f.after = after - min(after, fillMargin)
		}
		r.fill = f
		r.mu.Unlock()
		s.fillRing(r)
		return
	}
	ring := r.ringAfterLocked(after)
	r.mu.Unlock()
	s.loadHistory(c, m, name, resume, after, first, ring)
}

// joinAfterLocked returns the seq a join's history starts after: the
// resume point, or want messages below the room's newest. mu must be held.
func (r *room) joinAfterLocked(resume *uint64, want int) uint64 {
	switch {
	case resume != nil:
		return *resume
	case r.last > uint64(want):
		return r.last - uint64(want)
	}
	return 0
}

// ringHistoryLocked returns a join's history from the ring, the messages
// after seq after (at most the newest want without resume), when the ring
// covers them. mu must be held.
func (r *room) ringHistoryLocked(after uint64, resume *uint64, want int) ([]protocol.Message, bool) {
	if !r.coversLocked(after) {
		return nil, false
	}
	msgs := r.ringAfterLocked(after)
	if resume == nil && len(msgs) > want {
		msgs = msgs[len(msgs)-want:]
	}
	return msgs, true
}

// coversLocked reports whether the ring holds every message after seq
// after: it starts right after it, or at seq 1 (the room began while this
// gateway watched), or nothing is missing, or a fill found the room
// empty (ringFrom 1 before any message). mu must be held.
func (r *room) coversLocked(after uint64) bool {
	if r.last == 0 {
		return r.ringFrom == 1
	}
	first := r.ringFirstLocked()
	return after >= r.last || (first != 0 && (first <= after+1 || first == 1))
}

// loadHistory fetches the part of a join's history the ring lacks, off the
// loop, then sends joined + history and the frames queued meanwhile.
// Runs on the loop; the store query runs on its own goroutine.
func (s *Server) loadHistory(c *conn, m *member, name string, resume *uint64, after, ringFirst uint64, ring []protocol.Message) {
	select {
	case s.histSem <- struct{}{}:
	default:
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
	want := s.cfg.HistoryOnJoin
	var f history.Filter
	switch {
	case resume != nil:
		// The gap, oldest first; past MaxResume the answer is incomplete.
		f = history.Filter{AfterSeq: after, Limit: s.cfg.MaxResume}
	case ringFirst == 0:
		f = history.Filter{Tail: true, Limit: want}
	default:
		// The messages just below the ring.
		need := want - len(ring)
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
		// from one that has a deleted message there; they are left out
		// below.
		f.IncludeDeleted = true
	}
	lp := c.lp
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		defer func() { <-s.histSem }()
		var msgs []protocol.Message
		var err error
		// The history writer persists in batches, so the store may not
		// yet hold the messages just below the ring (after a gateway
		// restart the ring starts at the first batch it saw). Joining the
		// two across that gap would skip seqs silently: wait for the
		// store instead.
		s.loadUntil(func(ctx context.Context) (bool, error) {
			msgs, err = s.cfg.History.Range(ctx, name, f)
			return err == nil && !storeLags(msgs, f, ringFirst), err
		})
		// Still behind after the wait (the writer is stuck, e.g. its
		// consumer group is rejoining after a broker restart): answer
		// store and ring with complete:false rather than freeze the
		// viewer until the store catches up.
		lagging := err == nil && storeLags(msgs, f, ringFirst)
		if f.IncludeDeleted {
			kept := msgs[:0]
			for _, m := range msgs {
				if !m.Deleted {
					kept = append(kept, m)
				}
			}
			msgs = kept
		}
		lp.execute(func() {
			if c.state != stateOpen || c.member(name) != m {
				return
			}
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
			if resume == nil && len(all) > want {
				all = all[len(all)-want:]
			}
			if lagging {
				complete = false
			}
			c.finishJoin(m, name, resume, all, complete)
		})
	}()
}

// loadUntil calls load until it reports done, 100 ms apart, for up to 2 s:
// a failing store gets three tries, none when there is no shared store.
// Each call gets 3 s. Runs off the loop.
func (s *Server) loadUntil(load func(ctx context.Context) (done bool, err error)) {
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(s.ctx, 3*time.Second)
		done, err := load(ctx)
		cancel()
		if done || attempt == 20 || s.ctx.Err() != nil || (err != nil && (attempt >= 2 || errors.Is(err, history.ErrNoShared))) {
			return
		}
		time.Sleep(100 * time.Millisecond)
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
	c.write(protocol.Encode(protocol.Joined{Op: protocol.OpJoined, Room: name, Seq: m.from, Online: online}))
	c.write(protocol.EncodeHistory(name, msgs, complete))
	m.catching = false
	pending := m.pending
	m.pending = nil
	for _, p := range pending {
		if p.last != 0 && p.last <= m.from {
			continue
		}
		if c.writeFrame(p.frame, p.last != 0) && p.last > m.from {
			m.from = p.last
		}
	}
}

// leave removes the connection from room. Runs on the loop.
func (c *conn) leave(name string) {
	if m := c.member(name); m != nil {
		c.removeMember(m)
	}
}

// removeMember undoes a join. Runs on the loop.
func (c *conn) removeMember(m *member) {
	for i, mm := range c.rooms {
		if mm == m {
			c.rooms = append(c.rooms[:i], c.rooms[i+1:]...)
			break
		}
	}
	lr := m.lr
	last := len(lr.members) - 1
	lr.members[m.pos] = lr.members[last]
	lr.members[m.pos].pos = m.pos
	lr.members[last] = nil
	lr.members = lr.members[:last]
	r := lr.r
	if len(lr.members) == 0 {
		delete(c.lp.rooms, r.name)
	}
	r.mu.Lock()
	r.viewers[c.lp.idx]--
	if m.observer {
		r.observers.Add(-1)
	}
	if r.online.Add(-1) == 0 {
		r.idleSince = time.Now()
		c.s.m.rooms.Dec()
	}
	r.mu.Unlock()
	m.pending = nil
}

// onlineCount is the count a joined frame reports: the global count from
// presence when known, else this gateway's.
func (r *room) onlineCount() int {
	if g := r.global.Load(); g >= 0 {
		return int(max(g, r.viewerCount()))
	}
	return int(r.viewerCount())
}

// viewerCount is this gateway's members of the room that count as online:
// every member but the observing moderators.
func (r *room) viewerCount() int64 {
	return max(0, r.online.Load()-r.observers.Load())
}

// maxIOV bounds the frames handed to one writev.
const maxIOV = 256

// flush writes every delivery queued for this loop since the last flush.
// Deliveries of a room are written together: a viewer that needs all of
// them gets their concatenation in one write. Runs on the loop.
func (l *loop) flush(s *Server) {
	l.out.mu.Lock()
	q := l.out.q
	l.out.q = l.spare[:0]
	headAt, queuedAt := l.out.headAt, l.out.queuedAt
	l.out.headAt, l.out.queuedAt = 0, 0
	l.out.mu.Unlock()
	l.passHead = headAt
	viewers := 0
	if len(q) == 1 {
		viewers = l.deliverRoom(s, q)
	} else if len(q) > 1 {
		if l.byRoom == nil {
			l.byRoom = make(map[string][]int)
		}
		var order []string
		for i := range q {
			idx, seen := l.byRoom[q[i].room]
			if !seen {
				order = append(order, q[i].room)
			}
			l.byRoom[q[i].room] = append(idx, i)
		}
		var group []delivery
		for _, name := range order {
			group = group[:0]
			for _, i := range l.byRoom[name] {
				group = append(group, q[i])
			}
			viewers += l.deliverRoom(s, group)
		}
		clear(l.byRoom)
	}
	clear(q) // drop the frame references
	l.spare = q[:0]
	if headAt != 0 && viewers > 0 {
		now := time.Now().UnixNano()
		l.delay.Store(now - headAt)
		l.local.Store(now - queuedAt)
		l.delayHead.Store(headAt)
		l.delayAt.Store(now)
	}
	// Frames that arrived during this flush wait out its fan-out cost.
	l.out.mu.Lock()
	l.out.notBefore = time.Now().Add(s.paceAfter(viewers)).UnixNano()
	if len(l.out.q) > 0 {
		l.scheduleLocked(s)
	} else {
		l.out.queued = false
	}
	l.out.mu.Unlock()
}

// deliverRoom writes ds, deliveries of one room in the order they were
// queued, to every member of the room on this loop, and returns how many
// members there were (the flush's fan-out cost). Runs on the loop.
func (l *loop) deliverRoom(s *Server, ds []delivery) int {
	lr := l.rooms[ds[0].room]
	if lr == nil {
		return 0
	}
	viewers := len(lr.members)
	l.exempt = lr.r.shedding.Load()
	defer func() { l.exempt = false }()
	// backed counts members whose backlog after their write is past a
	// sixteenth of the soft cap: when most of the room's members on the
	// loop are, the gateway cannot write the room's stream to them in
	// time (see shed.go), whatever one socket does.
	backed := 0
	backedAt := int64(s.cfg.SoftOutbound / 16)
	// The seq range of the batches in ds, and the concatenation of all
	// frames: what a viewer gets unless it is behind or catching up.
	var first, last uint64
	msgs := 0
	for _, d := range ds {
		if d.last != 0 {
			if first == 0 {
				first = d.first
			}
			last = max(last, d.last)
			msgs += d.msgs
		}
	}
	shared, zshared := ds[0].frame, orPlain(ds[0].zframe, ds[0].frame)
	// stream: ds is one run of the seq stream (merged into shared), which
	// the pass may extend with the room's next batches (takeMore).
	stream := len(ds) == 1 && ds[0].last != 0 && ds[0].batch != nil
	if len(ds) > 1 {
		shared, zshared = l.joined[:0], l.zjoined[:0]
		if f, zf, ok := l.merged(s, ds, shared, zshared); ok {
			shared, zshared, stream = f, orPlain(zf, f), true
		} else {
			shared, zshared = l.concat(ds, shared, zshared)
		}
	}
	written, taken := 0, 0
	// rest is the merged frame of ds[restAt:], for members a pass that took
	// batches early (takeMore) already gave ds[:restAt]; -1: none yet.
	restAt, rest, zrest, restMsgs := -1, []byte(nil), []byte(nil), 0
	for i := 0; i < len(lr.members); i++ {
		if stream && i > 0 && i%takeEvery == 0 {
			if more := l.takeMore(ds[0].room, last, taken); len(more) > 0 {
				taken += len(more)
				ds = append(append(l.extended[:0], ds...), more...)
				l.extended = ds
				for _, d := range more {
					last = d.last
					msgs += d.msgs
				}
				clear(more)
				f, zf, _ := l.merged(s, ds, l.joined[:0], l.zjoined[:0])
				shared, zshared, restAt = f, orPlain(zf, f), -1
			}
		}
		m := lr.members[i]
		switch {
		case m.catching:
			for _, d := range ds {
				if d.last != 0 && (m.overflow || len(m.pending) >= maxPending) {
					m.overflow = true // finishJoin takes it from the ring
					continue
				}
				m.pending = append(m.pending, pendingFrame{frame: d.pick(m.c), first: d.first, last: d.last})
			}
		case last != 0 && last <= m.from:
			// Every batch was in its history; send only the rest.
			l.writeSome(m, ds)
		case first == 0 || m.from < first:
			switch m.c.outboundState(last != 0, len(shared)) {
			case outOK:
				m.c.writeShared(shared, zshared)
				if last != 0 {
					m.from = last
					written += msgs
				}
			case outDropBatches:
				l.writeSome(m, ds)
			}
		default:
			k := -1
			if stream {
				k = startAfter(ds, m.from)
			}
			if k <= 0 {
				written += l.writeSome(m, ds)
				break
			}
			if k != restAt {
				restAt, restMsgs = k, 0
				for _, d := range ds[k:] {
					restMsgs += d.msgs
				}
				var zr []byte
				rest, zr, _ = l.merged(s, ds[k:], l.rest[:0], l.zrest[:0])
				l.rest, zrest = rest[:0], orPlain(zr, rest)
				if zr != nil {
					l.zrest = zr[:0]
				}
			}
			switch m.c.outboundState(true, len(rest)) {
			case outOK:
				m.c.writeShared(rest, zrest)
				m.from = last
				written += restMsgs
			case outDropBatches:
				l.writeSome(m, ds)
			}
		}
		if m.c.counted > backedAt {
			backed++
		}
		if i < len(lr.members) && lr.members[i] != m {
			i-- // m was closed and swapped out
		}
	}
	if written > 0 {
		s.m.deliveries.Add(float64(written))
		lr.r.written.Add(int64(written))
	}
	if backed >= 2 && 2*backed > viewers {
		lr.r.backedAt.Store(max(l.passHead, 1))
	}
	if len(ds) > 1 {
		l.joined = shared[:0]
		if len(zshared) > 0 && &zshared[0] != &shared[0] {
			l.zjoined = zshared[:0]
		}
	}
	if taken > 0 {
		clear(l.extended) // drop the frame references
		l.extended = l.extended[:0]
	}
	return viewers
}

// orPlain returns z, the compressed form of frames, or frames when there
// is none.
func orPlain(z, frames []byte) []byte {
	if z == nil {
		return frames
	}
	return z
}

// startAfter returns the index of the delivery in ds whose seq range
// starts right after from, or -1.
func startAfter(ds []delivery, from uint64) int {
	for k, d := range ds {
		if d.first == from+1 {
			return k
		}
	}
	return -1
}

// takeEvery is how many members a pass over a room writes between looks
// at the loop's queue (takeMore).
const takeEvery = 512

// takeMore returns copies of the deliveries at the head of the loop's
// queue, from index skip on, that continue room's seq stream after last:
// consecutive batches of room with nothing else between. A pass over a
// big room takes a while (a write per member, ~10 µs each), and without
// this the members it reaches last would wait a whole pass more for the
// batches that arrived meanwhile. The deliveries stay queued: the next
// flush gives them to the members already written, and the others skip
// them (member.from). skip is how many the pass has taken already. Runs
// on the loop.
func (l *loop) takeMore(room string, last uint64, skip int) []delivery {
	l.out.mu.Lock()
	defer l.out.mu.Unlock()
	more := l.more[:0]
	for _, d := range l.out.q[min(skip, len(l.out.q)):] {
		if d.room != room || d.batch == nil || d.first != last+1 {
			break
		}
		more = append(more, d)
		last = d.last
	}
	l.more = more[:0]
	return more
}

// concat appends every frame of ds to shared, and to zshared the
// compressed form of each where there is one, and returns both (zshared is
// shared when nothing is compressed). Runs on the loop.
func (l *loop) concat(ds []delivery, shared, zshared []byte) ([]byte, []byte) {
	compressed := false
	for _, d := range ds {
		shared = append(shared, d.frame...)
		if d.zframe != nil {
			compressed = true
		}
	}
	if !compressed {
		return shared, shared
	}
	for _, d := range ds {
		if d.zframe != nil {
			zshared = append(zshared, d.zframe...)
		} else {
			zshared = append(zshared, d.frame...)
		}
	}
	return shared, zshared
}

// writeSome writes to m the frames of ds it still needs: frames outside
// the seq stream, and batches past m.from unless its backlog is past the
// soft cap. It returns the messages delivered. Runs on the loop.
func (l *loop) writeSome(m *member, ds []delivery) int {
	c := m.c
	hasBatch, need, size := false, false, 0
	for _, d := range ds {
		if d.last == 0 || d.last > m.from {
			need = true
			hasBatch = hasBatch || d.last != 0
			size += len(d.frame)
		}
	}
	if !need {
		return 0
	}
	st := c.outboundState(hasBatch, size)
	if st == outClosed {
		return 0
	}
	iov := l.iov[:0]
	delivered := 0
	for _, d := range ds {
		if d.last != 0 {
			if d.last <= m.from {
				continue
			}
			if st == outDropBatches {
				c.s.m.dropped.Inc()
				continue
			}
			m.from = d.last
			delivered += d.msgs
		}
		iov = append(iov, d.pick(c))
		if len(iov) == maxIOV {
			c.writeRawv(iov)
			iov = iov[:0]
		}
	}
	if len(iov) == 1 {
		c.writeRaw(iov[0])
	} else if len(iov) > 1 {
		c.writeRawv(iov)
	}
	clear(iov)
	l.iov = iov[:0]
	return delivered
}

// smaller returns z, a frame compressed with permessage-deflate, when it is
// smaller than plain, the same frame uncompressed, else nil: each message
// may be sent compressed or not (RFC 7692), and a short batch compressed
// on its own (no context takeover) can come out larger.
func smaller(z, plain []byte) []byte {
	if len(z) >= len(plain) {
		return nil
	}
	return z
}

// textFrame wraps a JSON payload in one unmasked, final text frame.
func textFrame(payload []byte) []byte {
	return ws.AppendFrame(make([]byte, 0, len(payload)+10), ws.OpText, payload)
}
