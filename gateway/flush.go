// The flush pass: writes a loop's outbox to the viewers of each room; runs on the event loop.

package gateway

import (
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// maxIOV bounds the frames handed to one writev.
const maxIOV = 256

// flush writes every delivery queued for this loop since the last flush.
// Deliveries of a room are written together: a viewer that needs all of
// them gets their concatenation in one write. Runs on the loop.
func (l *loop) flush(s *Server) {
	l.out.mu.Lock()
	q := l.out.q
	l.out.q = l.spare[:0]
	queuedAt := l.out.queuedAt
	l.out.queuedAt = 0
	l.out.mu.Unlock()
	l.passHead = queuedAt
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
	if queuedAt != 0 && viewers > 0 {
		now := time.Now().UnixNano()
		l.delay.Store(now - queuedAt)
		l.delayHead.Store(queuedAt)
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
			switch m.c.write(shared, zshared, streamClass(last)) {
			case outOK:
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
			switch m.c.write(rest, zrest, classBatch) {
			case outOK:
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
			c.writeFrames(iov)
			iov = iov[:0]
		}
	}
	if len(iov) > 0 {
		c.writeFrames(iov)
	}
	clear(iov)
	l.iov = iov[:0]
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
