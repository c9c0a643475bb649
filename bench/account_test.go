package bench

import (
	"math/rand/v2"
	"reflect"
	"testing"
)

func TestTracker(t *testing.T) {
	tests := []struct {
		name                  string
		start                 uint64
		seqs                  []uint64
		upTo                  uint64
		delivered, dups, lost uint64
		gaps                  uint64
	}{
		{name: "in order", seqs: []uint64{1, 2, 3, 4}, upTo: 4, delivered: 4},
		{name: "injected gap", seqs: []uint64{1, 2, 4, 5}, upTo: 5, delivered: 4, lost: 1, gaps: 1},
		{name: "injected duplicate", seqs: []uint64{1, 2, 2, 3}, upTo: 3, delivered: 3, dups: 1},
		{name: "gap filled later", seqs: []uint64{1, 4, 2, 3, 5}, upTo: 5, delivered: 5},
		{name: "gap and dup", seqs: []uint64{1, 3, 3, 1, 6}, upTo: 6, delivered: 3, dups: 2, lost: 3, gaps: 3},
		{name: "tail lost", seqs: []uint64{1, 2}, upTo: 5, delivered: 2, lost: 3},
		{name: "start skips history", start: 10, seqs: []uint64{9, 10, 11, 12}, upTo: 12, delivered: 2, dups: 2},
		{name: "nothing", upTo: 3, lost: 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tr Tracker
			tr.Start(tc.start)
			for _, s := range tc.seqs {
				tr.Add(s)
			}
			if tr.Delivered != tc.delivered || tr.Dups != tc.dups || tr.Lost(tc.upTo) != tc.lost || tr.Gaps() != tc.gaps {
				t.Fatalf("delivered %d dups %d lost %d gaps %d, want %d %d %d %d",
					tr.Delivered, tr.Dups, tr.Lost(tc.upTo), tr.Gaps(), tc.delivered, tc.dups, tc.lost, tc.gaps)
			}
		})
	}
}

func TestTrackerOverflow(t *testing.T) {
	var tr Tracker
	tr.Add(1)
	tr.Add(maxMissing + 100)
	if got, want := tr.Lost(maxMissing+100), uint64(maxMissing+98); got != want {
		t.Fatalf("lost %d, want %d", got, want)
	}
}

func TestHist(t *testing.T) {
	var h Hist
	for v := uint64(1); v <= 100000; v++ {
		h.Record(v)
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		got, want := float64(h.Quantile(q)), q*100000
		if got < want || got > want*1.02 {
			t.Errorf("q%v = %v, want within 2%% above %v", q, got, want)
		}
	}
	if h.Max() != 100000 || h.Min() != 1 || h.Count() != 100000 {
		t.Fatalf("max %d min %d count %d", h.Max(), h.Min(), h.Count())
	}
	back := HistFrom(h.Data())
	var m Hist
	m.Merge(back)
	m.Merge(back)
	if m.Count() != 200000 || m.Quantile(0.5) != h.Quantile(0.5) {
		t.Fatalf("merged count %d p50 %d, want 200000 %d", m.Count(), m.Quantile(0.5), h.Quantile(0.5))
	}
	for i := 0; i < histBuckets; i++ {
		if histIndex(histLow(i)) != i || histIndex(histHigh(i)) != i {
			t.Fatalf("bucket %d: low %d high %d map to %d %d", i, histLow(i), histHigh(i), histIndex(histLow(i)), histIndex(histHigh(i)))
		}
	}
}

// TestTrackerMarks: seqs a batch's from/to covers without carrying them are
// marked, not lost; a gap before a mark stays a gap.
func TestTrackerMarks(t *testing.T) {
	type batch struct {
		from, to uint64 // 0, 0: no marks
		seqs     []uint64
	}
	tests := []struct {
		name                         string
		batches                      []batch
		upTo                         uint64
		delivered, marked, lost, gap uint64
	}{
		{name: "thinned inside", batches: []batch{{0, 0, []uint64{1, 2}}, {3, 10, []uint64{5, 9}}}, upTo: 10, delivered: 4, marked: 6},
		{name: "empty cover batch", batches: []batch{{0, 0, []uint64{1}}, {2, 6, nil}}, upTo: 6, delivered: 1, marked: 5},
		{name: "gap before the mark", batches: []batch{{0, 0, []uint64{1}}, {4, 6, []uint64{5}}}, upTo: 6, delivered: 2, marked: 2, lost: 2, gap: 2},
		{name: "tail after the last mark is lost", batches: []batch{{1, 3, []uint64{2}}}, upTo: 5, delivered: 1, marked: 2, lost: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var tr Tracker
			for _, b := range tc.batches {
				if b.to != 0 {
					tr.BeginMark(b.from)
				}
				for _, s := range b.seqs {
					tr.Add(s)
				}
				if b.to != 0 {
					tr.EndMark(b.from, b.to)
				}
			}
			if tr.Delivered != tc.delivered || tr.Marked != tc.marked || tr.Lost(tc.upTo) != tc.lost || tr.Gaps() != tc.gap {
				t.Fatalf("delivered %d marked %d lost %d gaps %d; want %d %d %d %d",
					tr.Delivered, tr.Marked, tr.Lost(tc.upTo), tr.Gaps(), tc.delivered, tc.marked, tc.lost, tc.gap)
			}
		})
	}
}

// TestTrackerWideMark: a shed batch covering far more seqs than the
// missing list holds marks them all; none counts as lost.
func TestTrackerWideMark(t *testing.T) {
	var tr Tracker
	tr.Add(1)
	tr.BeginMark(2)
	tr.Add(3 * maxMissing)
	tr.Add(3*maxMissing + 7)
	tr.EndMark(2, 4*maxMissing)
	if tr.Lost(4*maxMissing) != 0 || tr.Delivered != 3 || tr.Marked != 4*maxMissing-3 {
		t.Fatalf("lost %d delivered %d marked %d", tr.Lost(4*maxMissing), tr.Delivered, tr.Marked)
	}
}

// TestAddRunIsAdds drives pairs of trackers through the same random
// histories: starts, marked batches, gaps, duplicates, seqs filling gaps
// (resumes), runs across the last seq and gaps past the missing list's
// bound. One adds each run with AddRun, the other seq by seq with Add;
// their state and AddRun's count of new seqs must match throughout.
func TestAddRunIsAdds(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 1))
	for trial := range 600 {
		var a, b Tracker
		var from uint64
		for step := range 60 {
			var first, n uint64
			switch k := rng.IntN(10); {
			case k == 0:
				s := a.Last() + uint64(rng.IntN(20))
				a.Start(s)
				b.Start(s)
				continue
			case k == 1 && from == 0: // a batch with marks begins
				from = a.Last() + 1 + uint64(rng.IntN(5))
				a.BeginMark(from)
				b.BeginMark(from)
				continue
			case k == 2 && from != 0: // ... and ends
				to := max(a.Last(), from) + uint64(rng.IntN(5))
				a.EndMark(from, to)
				b.EndMark(from, to)
				from = 0
				continue
			case k == 3 && rng.IntN(20) == 0: // a gap past maxMissing
				first, n = a.Last()+maxMissing+uint64(rng.IntN(100)), uint64(1+rng.IntN(3))
			case k <= 4 && a.Last() > 0: // old seqs: duplicates, or a resume filling gaps
				first = 1 + uint64(rng.Int64N(int64(a.Last())))
				n = uint64(rng.IntN(12))
			default: // new seqs, after a gap sometimes
				first, n = a.Last()+1+uint64(rng.IntN(3)*rng.IntN(3)), uint64(rng.IntN(40))
			}
			want := uint64(0)
			for i := range n {
				if b.Add(first + i) {
					want++
				}
			}
			if got := a.AddRun(first, n); got != want || !reflect.DeepEqual(norm(a), norm(b)) {
				t.Fatalf("trial %d step %d: AddRun(%d, %d) = %d, state %+v; %d Adds: %d new, state %+v",
					trial, step, first, n, got, a, n, want, b)
			}
		}
	}
}

// norm is t with an empty missing list as nil (Add and AddRun leave the
// same list; this only keeps the comparison about its content).
func norm(t Tracker) Tracker {
	if len(t.missing) == 0 {
		t.missing = nil
	}
	return t
}
