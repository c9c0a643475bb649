package gateway

import (
	"math/rand/v2"
	"testing"
)

// TestPassLag: a delivery an earlier pass took early is done when this
// pass has written the members before the index it was taken at; any
// other when its room's pass ends; the flush's lateness is the longest
// of those waits, and its head the delivery's queue time.
func TestPassLag(t *testing.T) {
	var p passLag
	p.reset()
	// One room of 2,000 members: X and Y taken early at members 512 and
	// 1024 by the last pass, Z queued since.
	p.room([]delivery{{queued: 100, takenAt: 513}, {queued: 150, takenAt: 1025}, {queued: 400}})
	clock := map[int]int64{512: 1000, 1024: 1200}
	for i := range 2000 {
		if p.due(i) {
			if _, ok := clock[i]; !ok {
				t.Fatalf("a mark came due at member %d", i)
			}
			p.reached(i, clock[i])
		}
	}
	p.end(1500)
	// X 900, Y 1050, Z 1100 (the pass's end less its queue time would
	// say 1400).
	if p.lag != 1100 || p.head != 400 {
		t.Fatalf("lag %d head %d, want 1100 and 400 (Z)", p.lag, p.head)
	}
	// A second room in the same flush, later and older: it sets the lag.
	p.room([]delivery{{queued: 50}})
	p.end(1600)
	if p.lag != 1550 || p.head != 50 {
		t.Fatalf("lag %d head %d after a second room, want 1550 and 50", p.lag, p.head)
	}
	// Marks past the room's members (they left) count at the end; a
	// delivery without a queue time (made outside post) not at all.
	p.reset()
	p.room([]delivery{{queued: 10, takenAt: 4097}, {}})
	for i := range 100 {
		if p.due(i) {
			t.Fatalf("mark at 4096 came due at member %d of 100", i)
		}
	}
	p.end(500)
	if p.lag != 490 || p.head != 10 {
		t.Fatalf("lag %d head %d, want 490 and 10", p.lag, p.head)
	}
	p.reset()
	p.room([]delivery{{}})
	p.end(500)
	if p.head != 0 {
		t.Fatalf("a flush of deliveries without queue times has head %d, want 0 (nothing to observe)", p.head)
	}
}

// TestPassLagProperty drives passLag with random flushes (rooms,
// deliveries taken early or not, members, a clock that advances per
// member written) and checks it against each delivery's wait computed
// directly, and that it never exceeds the oldest delivery's wait to the
// flush's end.
func TestPassLagProperty(t *testing.T) {
	for seed := range uint64(300) {
		rng := rand.New(rand.NewPCG(seed, 7))
		var p passLag
		p.reset()
		now := int64(1_000_000)
		var want, oldest int64
		for range 1 + rng.IntN(4) {
			members := rng.IntN(3000)
			var ds []delivery
			q := now - int64(rng.IntN(500_000))
			for range 1 + rng.IntN(6) {
				d := delivery{queued: q}
				if rng.IntN(2) == 0 {
					d.takenAt = 1 + takeEvery*(1+rng.IntN(8))
				}
				ds = append(ds, d)
				q += int64(rng.IntN(20_000))
				if oldest == 0 || d.queued < oldest {
					oldest = d.queued
				}
			}
			p.room(ds)
			at := make([]int64, members+1) // when member i is about to be written
			for i := range members {
				at[i] = now
				if p.due(i) {
					p.reached(i, now)
				}
				now += int64(1 + rng.IntN(20))
			}
			at[members] = now
			p.end(now)
			for _, d := range ds {
				done := now
				if d.takenAt > 0 && d.takenAt-1 < members {
					done = at[d.takenAt-1]
				}
				want = max(want, done-d.queued)
			}
			now += int64(rng.IntN(1000))
		}
		if p.lag != want {
			t.Fatalf("seed %d: lag %d, want %d", seed, p.lag, want)
		}
		if p.lag > now-oldest {
			t.Fatalf("seed %d: lag %d past the oldest delivery's wait to the flush's end %d", seed, p.lag, now-oldest)
		}
	}
}
