// The flush pass: writes a loop's outbox to the viewers of each room; runs on the event loop.

package gateway

import (
	"sync/atomic"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// flush writes every delivery queued for this loop since the last flush.
// Deliveries of a room are written together: a viewer that needs all of
// them gets their concatenation in one write. Runs on the loop.
func (l *loop) flush(s *Server) {
	l.out.mu.Lock()
	q := l.out.q
	l.out.q = l.spare[:0]
	waitTo := l.out.notBefore // the end of the wait before this flush
	l.out.mu.Unlock()
	l.passHead = 0
	if len(q) > 0 {
		l.passHead = q[0].queued
	}
	// After a wait for wide rooms every room's frames are bigger: the
	// pass exempts them all from the outbound budget's drops (outbound.go).
	waited := max(l.wideWait.Load(), 0)
	l.passWide = waited > 0
	start := time.Now()
	viewers := 0
	l.lag.reset()
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
	took := time.Since(start)
	if viewers > 0 {
		s.m.passSeconds.Add(took.Seconds())
	}
	if l.lag.head != 0 && viewers > 0 {
		s.m.loopDelay.Observe(float64(l.lag.lag) / 1e9)
		// The wait for wide rooms before this flush is not lateness: the
		// shed goroutine reads the delay less what of it the latest
		// delivery sat through (not less the wait after this flush,
		// which may be far shorter: a pass of big writes after one of
		// small writes waits ShedFlushDelay alone).
		sat := max(waitTo-max(l.lag.head, waitTo-waited), 0)
		l.notePass(max(l.lag.lag-sat, 0), l.lag.head, time.Now().UnixNano())
	}
	// Frames that arrived during this flush wait out its fan-out cost.
	// After a pass over a room under overload (shed.go) they wait
	// ShedFlushDelay. Where a write's fixed cost is what overloads the
	// loop (the wide rooms' writes below shedFrameBytes on average: a
	// small room beside a big stream does not make the loop wait for the
	// big stream's bytes), they wait as long
	// as the pass took if longer (up to ShedDelay): the loop then spends
	// at most half its time writing, and each viewer gets fewer, bigger
	// frames rather than fewer messages. Bigger writes cost mostly their
	// bytes, which no wait saves: a loop that waited as long as such a
	// pass would idle while its viewers' backlog grows.
	pace := s.paceAfter(viewers)
	var extra time.Duration
	if l.wide {
		wide := s.cfg.ShedFlushDelay
		if l.wideWrites > 0 && l.wideWire < shedFrameBytes*l.wideWrites {
			wide = max(wide, min(took, s.cfg.ShedDelay))
		}
		extra = max(wide-pace, 0)
		pace += extra
		l.wide, l.wideWire, l.wideWrites = false, 0, 0
	}
	l.wideWait.Store(int64(extra))
	l.out.mu.Lock()
	l.out.notBefore = time.Now().Add(pace).UnixNano()
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
	wide := lr.r.shedding.Load()
	l.exempt = wide || l.passWide
	l.wide = l.wide || wide
	defer func() { l.exempt = false }()
	// backed counts members whose backlog after their write is past a
	// sixteenth of the soft cap: when most of the room's members on the
	// loop are, the gateway cannot write the room's stream to them in
	// time (see shed.go), whatever one socket does.
	backed := 0
	backedAt := int64(s.cfg.SoftOutbound / 16)
	p := l.startPass(s, ds)
	l.lag.room(ds)
	for i := 0; i < len(lr.members); i++ {
		if l.lag.due(i) {
			l.lag.reached(i, time.Now().UnixNano())
		}
		if p.stream && i > 0 && i%takeEvery == 0 {
			l.extendPass(s, &p, i)
		}
		m := lr.members[i]
		from, lacked := m.from, l.lag.lacks(m)
		l.deliverMember(s, &p, m)
		if lacked {
			l.lag.wrote(from, time.Now().UnixNano())
		}
		if m.c.counted > backedAt {
			backed++
		}
		if i < len(lr.members) && lr.members[i] != m {
			i-- // m was closed and swapped out
		}
	}
	if p.written > 0 {
		s.m.deliveries.Add(float64(p.written))
		lr.r.written.Add(int64(p.written))
	}
	if p.msgs > 0 && p.writes > 0 {
		storeMax(&lr.r.writeBytes, p.wire/int64(p.writes))
		s.m.streamWrites.Add(float64(p.writes))
		s.m.streamBytes.Add(float64(p.wire))
	}
	if wide {
		l.wideWire += p.wire
		l.wideWrites += int64(p.writes)
	}
	if backed >= 2 && 2*backed > viewers {
		lr.r.backedAt.Store(max(l.passHead, 1))
	}
	l.endPass(&p)
	l.lag.end(time.Now().UnixNano())
	return viewers
}

// roomPass is deliverRoom's pass over one room's members: the deliveries
// and what every member is written from. Lives on the loop's stack.
type roomPass struct {
	ds []delivery
	// first..last is the seq range of the batches in ds and msgs their
	// messages (all 0 when ds holds no batch).
	first, last uint64
	msgs        int
	// shared is the concatenation of all frames (zshared compressed where
	// possible): what a member gets unless it is behind or catching up.
	shared, zshared []byte
	// stream: ds is one run of the seq stream (merged into shared), which
	// the pass may extend with the room's next batches (extendPass).
	stream bool
	// rest is the merged frame of ds[restAt:], for members a pass that took
	// batches early (takeMore) already gave ds[:restAt]; -1: none yet.
	restAt      int
	rest, zrest []byte
	restMsgs    int
	// cshared, czshared, crestAt, crest and czrest are shared, zshared,
	// restAt, rest and zrest in the compact form, for members that chose
	// it (conn.compact): made when the first of them needs them (cready;
	// crestAt -1).
	cshared, czshared []byte
	cready            bool
	crestAt           int
	crest, czrest     []byte
	written           int // messages × members written
	// wire and writes are the stream bytes written to members (as each
	// got them: compressed, compact) and how many writes.
	wire   int64
	writes int
	taken  int // deliveries taken early from the loop's queue
}

// wrote counts a stream write of n bytes on the wire to a member.
func (p *roomPass) wrote(n int) {
	p.wire += int64(n)
	p.writes++
}

// notePass records, for the shed goroutine, a write pass that ended at
// at (Unix ns) whose latest delivery, queued at head, waited delay (ns)
// until it was written to every member that lacked it (passLag).
func (l *loop) notePass(delay, head, at int64) {
	l.delay.Store(delay)
	l.delayHead.Store(head)
	l.delayAt.Store(at)
}

// storeMax raises a to v if v is larger.
func storeMax(a *atomic.Int64, v int64) {
	for {
		old := a.Load()
		if v <= old || a.CompareAndSwap(old, v) {
			return
		}
	}
}

// startPass sets up a pass over ds: their seq range and shared frames.
// Runs on the loop.
func (l *loop) startPass(s *Server, ds []delivery) roomPass {
	p := roomPass{ds: ds, restAt: -1, crestAt: -1}
	for _, d := range ds {
		if d.last != 0 {
			if p.first == 0 {
				p.first = d.first
			}
			p.last = max(p.last, d.last)
			p.msgs += d.msgs
		}
	}
	p.shared, p.zshared = ds[0].frame, orPlain(ds[0].zframe, ds[0].frame)
	p.stream = len(ds) == 1 && ds[0].last != 0 && ds[0].batch != nil
	if len(ds) > 1 {
		p.shared, p.zshared = l.joined[:0], l.zjoined[:0]
		if f, zf, ok := l.merged(s, ds, false, p.shared, p.zshared); ok {
			p.shared, p.zshared, p.stream = f, orPlain(zf, f), true
		} else {
			p.shared, p.zshared = l.concat(ds, false, p.shared, p.zshared)
		}
	}
	return p
}

// extendPass adds to p the room's batches queued since the pass began
// that continue its stream (takeMore), so the members written from member
// index at on get them too. Runs on the loop.
func (l *loop) extendPass(s *Server, p *roomPass, at int) {
	more := l.takeMore(p.ds[0].room, p.last, p.taken, at)
	if len(more) == 0 {
		return
	}
	p.taken += len(more)
	p.ds = append(append(l.extended[:0], p.ds...), more...)
	l.extended = p.ds
	for _, d := range more {
		p.last = d.last
		p.msgs += d.msgs
	}
	clear(more)
	f, zf, _ := l.merged(s, p.ds, false, l.joined[:0], l.zjoined[:0])
	p.shared, p.zshared, p.restAt = f, orPlain(zf, f), -1
	p.cready, p.crestAt = false, -1
}

// deliverMember writes m what it needs of p: nothing yet while it catches
// up (queued in m.pending), the shared frame when it has seen none of the
// batches, else the part it lacks. Runs on the loop.
func (l *loop) deliverMember(s *Server, p *roomPass, m *member) {
	switch {
	case m.catching:
		for _, d := range p.ds {
			if d.last != 0 && (m.overflow || len(m.pending) >= maxPending) {
				m.overflow = true // finishJoin takes it from the ring
				continue
			}
			m.pending = append(m.pending, pendingFrame{out: d.out(m.c.compact), first: d.first, last: d.last})
		}
	case p.last != 0 && p.last <= m.from:
		// Every batch was in its history; send only the rest.
		l.writeLacking(m, p.ds)
	case p.first == 0 || m.from < p.first:
		f, z := p.shared, p.zshared
		if m.c.compact {
			if !p.cready {
				p.cshared, p.czshared = l.compactShared(s, p.ds)
				p.cready = true
			}
			f, z = p.cshared, p.czshared
		}
		out := outFrame{frame: f, z: z, class: streamClass(p.last)}
		switch m.c.write(out) {
		case outOK:
			if p.last != 0 {
				m.from = p.last
				p.written += p.msgs
				p.wrote(len(out.pick(m.c.deflate)))
			}
		case outDropBatches:
			l.writeLacking(m, p.ds)
		}
	default:
		k := -1
		if p.stream {
			k = startAfter(p.ds, m.from)
		}
		if k <= 0 {
			p.written += l.writeLacking(m, p.ds)
			return
		}
		f, z := l.restFrom(s, p, k, m.c.compact)
		out := outFrame{frame: f, z: z, class: classBatch}
		switch m.c.write(out) {
		case outOK:
			m.from = p.last
			p.written += p.restMsgs
			p.wrote(len(out.pick(m.c.deflate)))
		case outDropBatches:
			l.writeLacking(m, p.ds)
		}
	}
}

// restFrom returns the merged frames of p.ds[k:] and their compressed
// form, in the compact form when compact, and sets p.restMsgs to their
// messages; it keeps them in p.rest (p.crest) for the next member that
// lacks the same part. Runs on the loop.
func (l *loop) restFrom(s *Server, p *roomPass, k int, compact bool) ([]byte, []byte) {
	p.restMsgs = 0
	for _, d := range p.ds[k:] {
		p.restMsgs += d.msgs
	}
	if compact {
		if k != p.crestAt {
			p.crestAt = k
			var zr []byte
			p.crest, zr, _ = l.merged(s, p.ds[k:], true, l.crest[:0], l.czrest[:0])
			l.crest, p.czrest = p.crest[:0], orPlain(zr, p.crest)
			if zr != nil {
				l.czrest = zr[:0]
			}
		}
		return p.crest, p.czrest
	}
	if k != p.restAt {
		p.restAt = k
		var zr []byte
		p.rest, zr, _ = l.merged(s, p.ds[k:], false, l.rest[:0], l.zrest[:0])
		l.rest, p.zrest = p.rest[:0], orPlain(zr, p.rest)
		if zr != nil {
			l.zrest = zr[:0]
		}
	}
	return p.rest, p.zrest
}

// endPass keeps p's scratch buffers for the next pass and drops its frame
// references. Runs on the loop.
func (l *loop) endPass(p *roomPass) {
	if len(p.ds) > 1 {
		l.joined = p.shared[:0]
		if len(p.zshared) > 0 && &p.zshared[0] != &p.shared[0] {
			l.zjoined = p.zshared[:0]
		}
		if p.cready && len(p.cshared) > 0 {
			l.cjoined = p.cshared[:0]
			if len(p.czshared) > 0 && &p.czshared[0] != &p.cshared[0] {
				l.czjoined = p.czshared[:0]
			}
		}
	}
	if p.taken > 0 {
		clear(l.extended) // drop the frame references
		l.extended = l.extended[:0]
	}
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
// them (member.from). skip is how many the pass has taken already; at is
// the member index the pass is at, kept in each delivery taken (takenAt):
// the next flush is done with it once past that index (passLag). Runs on
// the loop.
func (l *loop) takeMore(room string, last uint64, skip, at int) []delivery {
	l.out.mu.Lock()
	defer l.out.mu.Unlock()
	more := l.more[:0]
	for j := min(skip, len(l.out.q)); j < len(l.out.q); j++ {
		d := &l.out.q[j]
		if d.room != room || d.batch == nil || d.first != last+1 {
			break
		}
		if d.takenAt == 0 {
			d.takenAt = at + 1
		}
		more = append(more, *d)
		last = d.last
	}
	l.more = more[:0]
	return more
}

// concat appends every frame of ds to shared, and to zshared the
// compressed form of each where there is one, and returns both (zshared is
// shared when nothing is compressed). compact takes each batch's compact
// form where there is one. Runs on the loop.
func (l *loop) concat(ds []delivery, compact bool, shared, zshared []byte) ([]byte, []byte) {
	forms := func(d *delivery) (f, z []byte) {
		if compact && d.cframe != nil {
			return d.cframe, d.czframe
		}
		return d.frame, d.zframe
	}
	compressed := false
	for i := range ds {
		f, z := forms(&ds[i])
		shared = append(shared, f...)
		if z != nil {
			compressed = true
		}
	}
	if !compressed {
		return shared, shared
	}
	for i := range ds {
		f, z := forms(&ds[i])
		zshared = append(zshared, orPlain(z, f)...)
	}
	return shared, zshared
}

// compactShared returns the frames of ds for a member that chose the
// compact form, and their compressed form: as roomPass.shared, with each
// batch compact where it can be. Several deliveries are built in the
// loop's scratch (cjoined, czjoined). Runs on the loop.
func (l *loop) compactShared(s *Server, ds []delivery) ([]byte, []byte) {
	if len(ds) == 1 {
		d := &ds[0]
		if d.cframe == nil {
			return d.frame, orPlain(d.zframe, d.frame)
		}
		return d.cframe, orPlain(d.czframe, d.cframe)
	}
	if f, zf, ok := l.merged(s, ds, true, l.cjoined[:0], l.czjoined[:0]); ok {
		return f, orPlain(zf, f)
	}
	return l.concat(ds, true, l.cjoined[:0], l.czjoined[:0])
}

// writeLacking writes to m, in one conn.write, the frames of ds it still
// needs: frames outside the seq stream, and batches past m.from (all left
// out when the outbound policy drops batches). It returns the messages
// delivered. Runs on the loop.
func (l *loop) writeLacking(m *member, ds []delivery) int {
	c := m.c
	outs := l.outs[:0]
	from, msgs, batches := m.from, 0, 0
	for i := range ds {
		d := &ds[i]
		if d.last != 0 {
			if d.last <= from {
				continue
			}
			from, msgs, batches = d.last, msgs+d.msgs, batches+1
		}
		outs = append(outs, d.out(c.compact))
	}
	delivered := 0
	if len(outs) > 0 {
		switch c.write(outs...) {
		case outOK:
			m.from, delivered = from, msgs
		case outDropBatches:
			c.s.m.dropped.Add(float64(batches))
		}
	}
	clear(outs)
	l.outs = outs[:0]
	return delivered
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
func (l *loop) merged(s *Server, ds []delivery, compact bool, frames, zframes []byte) ([]byte, []byte, bool) {
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
		switch {
		case compact && len(msgs) > 0:
			payload = compactPayload(ds[0].room, first, last, msgs)
		case uint64(len(msgs)) == last-first+1:
			payload = protocol.EncodeBatch(ds[0].room, msgs)
		default:
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

// out returns d as a frame for conn.write: its compact form for a
// connection that chose it (compact) when there is one.
func (d *delivery) out(compact bool) outFrame {
	if compact && d.cframe != nil {
		return outFrame{frame: d.cframe, z: d.czframe, class: streamClass(d.last)}
	}
	return outFrame{frame: d.frame, z: d.zframe, class: streamClass(d.last)}
}

// paceAfter returns how long the loop waits after a flush that wrote to n
// viewers before its next one (Config.FlushRate).
func (s *Server) paceAfter(n int) time.Duration {
	if s.cfg.FlushRate <= 0 || n <= 0 {
		return 0
	}
	return min(time.Duration(n)*time.Second/time.Duration(s.cfg.FlushRate), s.cfg.MaxFlushDelay)
}
