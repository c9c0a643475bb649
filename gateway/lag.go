// How late a loop's writes are: the wait of each delivery from being queued
// on the loop to being written to every member that lacked it.

package gateway

import "slices"

// lagMark is a delivery an earlier pass took early (takeMore) at member
// index at: this pass's members before at lack it, the ones from at on
// had it from that pass (unless that write was dropped: their from is
// below last then).
type lagMark struct {
	at     int
	last   uint64 // the delivery's last seq
	queued int64  // Unix ns
}

// passLag is, over one flush, the longest wait of a delivery from being
// queued on the loop to being written to every member that lacked it, and
// when that delivery was queued. A delivery an earlier pass took early is
// done when this pass has written the members before the index it was
// taken at, and the members past that index that still lacked it (the
// taking pass's write to them was dropped) are written; any other when
// its room's pass ends. Counting every delivery
// until the end of the flush, as the loop did, made a loop that takes big
// rooms' batches early look up to a pass later than any viewer waited.
// Owned by the loop.
type passLag struct {
	lag, head int64 // ns; head is 0 when no delivery was written
	marks     []lagMark
	next      int
	// lacking is the highest last of the marks reached: a member whose
	// from is below it lacked a delivery its index said it had.
	lacking uint64
	oldest  int64 // the room pass's oldest delivery not taken early
}

// reset starts a flush.
func (p *passLag) reset() { p.lag, p.head = 0, 0 }

// room starts the pass over one room's deliveries.
func (p *passLag) room(ds []delivery) {
	p.marks, p.next, p.lacking, p.oldest = p.marks[:0], 0, 0, 0
	for _, d := range ds {
		switch {
		case d.queued == 0:
		case d.takenAt > 0:
			p.marks = append(p.marks, lagMark{at: d.takenAt - 1, last: d.last, queued: d.queued})
		case p.oldest == 0 || d.queued < p.oldest:
			p.oldest = d.queued
		}
	}
	slices.SortFunc(p.marks, func(a, b lagMark) int { return a.at - b.at })
}

// due is whether the pass, about to write member i, has finished what a
// mark needs: call reached then.
func (p *passLag) due(i int) bool { return p.next < len(p.marks) && p.marks[p.next].at <= i }

// reached counts the marks done by member index i at now (Unix ns).
func (p *passLag) reached(i int, now int64) {
	for p.next < len(p.marks) && p.marks[p.next].at <= i {
		p.note(now, p.marks[p.next].queued)
		p.lacking = max(p.lacking, p.marks[p.next].last)
		p.next++
	}
}

// lacks is whether m, about to be written, lacks a delivery of a mark
// reached already (the taking pass's write to it was dropped): call wrote
// with its from once it is written. A catching member's batches queue
// for its join's answer, as every catching member's do.
func (p *passLag) lacks(m *member) bool { return m.from < p.lacking && !m.catching }

// wrote counts, at now, the reached marks a member written from seq from
// on lacked.
func (p *passLag) wrote(from uint64, now int64) {
	for _, k := range p.marks[:p.next] {
		if k.last > from {
			p.note(now, k.queued)
		}
	}
}

// end finishes the room's pass at now: the rest of the marks (their
// members left) and the deliveries not taken early are done.
func (p *passLag) end(now int64) {
	p.reached(int(^uint(0)>>1), now)
	if p.oldest != 0 {
		p.note(now, p.oldest)
	}
}

func (p *passLag) note(now, queued int64) {
	if d := now - queued; p.head == 0 || d > p.lag {
		p.lag, p.head = max(d, 0), queued
	}
}
