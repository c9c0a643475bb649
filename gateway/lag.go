// How late a loop's writes are: the wait of each delivery from being queued
// on the loop to being written to every member that lacked it.

package gateway

import "slices"

// lagMark is a delivery an earlier pass took early (takeMore) at member
// index at: this pass's members before at lack it, the ones from at on
// had it from that pass.
type lagMark struct {
	at     int
	queued int64 // Unix ns
}

// passLag is, over one flush, the longest wait of a delivery from being
// queued on the loop to being written to every member that lacked it, and
// when that delivery was queued. A delivery an earlier pass took early is
// done when this pass has written the members before the index it was
// taken at; any other when its room's pass ends. Counting every delivery
// until the end of the flush, as the loop did, made a loop that takes big
// rooms' batches early look up to a pass later than any viewer waited.
// Owned by the loop.
type passLag struct {
	lag, head int64 // ns; head is 0 when no delivery was written
	marks     []lagMark
	next      int
	oldest    int64 // the room pass's oldest delivery not taken early
}

// reset starts a flush.
func (p *passLag) reset() { p.lag, p.head = 0, 0 }

// room starts the pass over one room's deliveries.
func (p *passLag) room(ds []delivery) {
	p.marks, p.next, p.oldest = p.marks[:0], 0, 0
	for _, d := range ds {
		switch {
		case d.queued == 0:
		case d.takenAt > 0:
			p.marks = append(p.marks, lagMark{at: d.takenAt - 1, queued: d.queued})
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
		p.next++
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
