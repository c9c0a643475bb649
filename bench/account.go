package bench

import (
	"slices"
	"sync/atomic"
)

// Tracker follows the seqs one viewer received in one room and counts
// deliveries, duplicates and gaps. A gap is a seq that was skipped; it stops
// counting as lost when it arrives later (a resume filling it). The zero
// value tracks a room from seq 0 (every message expected). Not safe for
// concurrent use.
type Tracker struct {
	last    uint64   // highest seq seen
	missing []uint64 // skipped seqs below last, ascending; usually empty
	// Delivered counts distinct seqs received.
	Delivered uint64
	// Dups counts seqs received again (at or below last and not missing).
	Dups uint64
	// Overflow counts skipped seqs that were not remembered individually
	// because the missing list was full; they count as lost for good.
	Overflow uint64
	// Marked counts seqs a thinned or shed batch covered with its from/to
	// marks without carrying them: left out on purpose, not lost.
	Marked uint64
	// markFrom is the from mark of the batch being added (BeginMark), 0
	// outside one: seqs it skips from there on are marked, not missing.
	markFrom uint64
}

// maxMissing bounds the remembered skipped seqs per viewer.
const maxMissing = 4096

// Start sets the seq the viewer is known to have seen up to (the room seq
// at a fresh join): later seqs up to it are ignored, not counted as dups.
func (t *Tracker) Start(seq uint64) {
	if seq > t.last {
		t.last = seq
	}
}

// Last is the highest seq seen (or the start).
func (t *Tracker) Last() uint64 { return t.last }

// Add accounts one received seq and reports whether it is new.
func (t *Tracker) Add(seq uint64) bool {
	switch {
	case seq == t.last+1:
		t.last = seq
	case seq > t.last+1 && t.markFrom != 0 && t.markFrom <= t.last+1:
		// Inside a marked batch: what it skips was left out on purpose
		// (counted here, not listed: a shed batch may skip thousands).
		t.Marked += seq - t.last - 1
		t.last = seq
	case seq > t.last+1:
		t.skipTo(seq - 1)
		t.last = seq
	default:
		i, found := slices.BinarySearch(t.missing, seq)
		if !found {
			t.Dups++
			return false
		}
		t.missing = slices.Delete(t.missing, i, i+1)
	}
	t.Delivered++
	return true
}

// AddRun accounts the n seqs first, first+1, ..., first+n-1, in that
// order, exactly as n calls of Add would, and returns how many were new.
// A run past the last seq seen (the usual batch) costs one Add.
func (t *Tracker) AddRun(first, n uint64) uint64 {
	if n == 0 {
		return 0
	}
	if first > t.last && first+n-1 >= first {
		// Add(first) moves last to first (after a gap, missing or marked,
		// as Add decides); each next seq is then last+1: new, in order.
		t.Add(first)
		t.last = first + n - 1
		t.Delivered += n - 1
		return n
	}
	fresh := uint64(0)
	for i := range n {
		if t.Add(first + i) {
			fresh++
		}
	}
	return fresh
}

// skipTo records the seqs after last up to seq as missing and moves last
// to seq.
func (t *Tracker) skipTo(seq uint64) {
	for s := t.last + 1; s <= seq; s++ {
		if len(t.missing) >= maxMissing {
			t.Overflow += seq - s + 1
			break
		}
		t.missing = append(t.missing, s)
	}
	t.last = max(t.last, seq)
}

// BeginMark starts a batch with from/to marks: the seqs before from that
// never arrived are a gap (missing). Call it before the batch's messages
// are added, and EndMark after.
func (t *Tracker) BeginMark(from uint64) {
	if from > t.last+1 {
		t.skipTo(from - 1)
	}
	t.markFrom = max(from, 1)
}

// EndMark ends a batch with marks from..to: the seqs in that range that did
// not arrive were left out on purpose (Marked), not lost.
func (t *Tracker) EndMark(from, to uint64) {
	t.markFrom = 0
	if to < from {
		return
	}
	kept := t.missing[:0]
	for _, s := range t.missing {
		if s >= from && s <= to {
			t.Marked++
		} else {
			kept = append(kept, s)
		}
	}
	t.missing = kept
	if to > t.last {
		t.Marked += to - t.last
		t.last = to
	}
}

// Lost returns the number of seqs up to upTo that never arrived: the
// skipped seqs still missing plus those after the last one seen. upTo is
// the last seq published to the room (0: count only skipped seqs).
func (t *Tracker) Lost(upTo uint64) uint64 {
	n := uint64(len(t.missing)) + t.Overflow
	if upTo > t.last {
		n += upTo - t.last
	}
	return n
}

// Gaps returns the number of skipped seqs still missing (not counting the
// tail after the last seq seen).
func (t *Tracker) Gaps() uint64 { return uint64(len(t.missing)) + t.Overflow }

// atomicCounter is a counter shared by goroutines.
type atomicCounter struct{ v atomic.Int64 }

// Add adds d and returns the new value.
func (c *atomicCounter) Add(d int64) int64 { return c.v.Add(d) }

// Load returns the value.
func (c *atomicCounter) Load() int64 { return c.v.Load() }
