package presencetest

import (
	"bytes"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/presence"
)

// RunDedupe runs the presence.Dedupe suite against the stores newD
// returns.
func RunDedupe(t *testing.T, newD func(t *testing.T) presence.Dedupe) {
	run(t, newD, []testCase[presence.Dedupe]{
		{"lookup finds stored values only", dedupeLookupFindsStoredValuesOnly},
		{"first then duplicate", dedupeFirstThenDuplicate},
		{"empty value is still a duplicate", dedupeEmptyValueIsStillADuplicate},
		{"expiry", dedupeExpiry},
		{"concurrent one wins", dedupeConcurrentOneWins},
	})
}

// dedupeLookupFindsStoredValuesOnly is the subtest "lookup finds stored values only".
func dedupeLookupFindsStoredValuesOnly(t *testing.T, d presence.Dedupe) {
	remember(t, d, "l1", "seq=1", longTTL)
	remember(t, d, "l3", "", longTTL)
	got, err := d.Lookup(ctxFor(t), "l1", "l2", "l3")
	if err != nil {
		t.Fatalf("Lookup: %v", err)
	}
	if len(got) != 3 || string(got[0]) != "seq=1" || got[1] != nil || got[2] == nil || len(got[2]) != 0 {
		t.Fatalf("Lookup = %q; want [seq=1 <nil> \"\"]", got)
	}
	if got, err := d.Lookup(ctxFor(t)); err != nil || len(got) != 0 {
		t.Fatalf("Lookup() = %q, %v; want nothing", got, err)
	}
}

// dedupeFirstThenDuplicate is the subtest "first then duplicate".
func dedupeFirstThenDuplicate(t *testing.T, d presence.Dedupe) {
	if prev, dup := remember(t, d, "u1:m1", "ack seq=7", longTTL); dup || prev != nil {
		t.Fatalf("first Remember = %q, %v; want nil, false", prev, dup)
	}
	for i := range 2 {
		prev, dup := remember(t, d, "u1:m1", "ack seq=8", longTTL)
		if !dup || string(prev) != "ack seq=7" {
			t.Errorf("retry %d = %q, %v; want the first reply, true", i, prev, dup)
		}
	}
	if prev, dup := remember(t, d, "u1:m2", "ack seq=9", longTTL); dup {
		t.Errorf("another key = %q, dup; want new", prev)
	}
}

// dedupeEmptyValueIsStillADuplicate is the subtest "empty value is still a duplicate".
func dedupeEmptyValueIsStillADuplicate(t *testing.T, d presence.Dedupe) {
	remember(t, d, "k", "", longTTL)
	if prev, dup := remember(t, d, "k", "x", longTTL); !dup || len(prev) != 0 {
		t.Errorf("Remember = %q, %v; want empty, true", prev, dup)
	}
}

// dedupeExpiry is the subtest "expiry".
func dedupeExpiry(t *testing.T, d presence.Dedupe) {
	remember(t, d, "u1:m1", "first", shortTTL)
	if _, dup := remember(t, d, "u1:m1", "x", shortTTL); !dup {
		t.Fatal("not a duplicate before the ttl")
	}
	eventually(t, "key expires", func() bool {
		_, dup := remember(t, d, "u1:m1", "second", longTTL)
		return !dup
	})
	if prev, dup := remember(t, d, "u1:m1", "third", longTTL); !dup || string(prev) != "second" {
		t.Errorf("after re-storing = %q, %v; want second, true", prev, dup)
	}
}

// dedupeConcurrentOneWins is the subtest "concurrent one wins".
func dedupeConcurrentOneWins(t *testing.T, d presence.Dedupe) {
	const n = 16
	type result struct {
		prev []byte
		dup  bool
		err  error
	}
	res := make([]result, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	ctx := ctxFor(t)
	for i := range n {
		wg.Go(func() {
			<-start
			p, dup, err := d.Remember(ctx, "race", []byte("v"+strconv.Itoa(i)), longTTL)
			res[i] = result{p, dup, err}
		})
	}
	close(start)
	wg.Wait()
	winner := -1
	for i, r := range res {
		if r.err != nil {
			t.Fatalf("Remember %d: %v", i, r.err)
		}
		if !r.dup {
			if winner >= 0 {
				t.Fatalf("both %d and %d stored", winner, i)
			}
			winner = i
		}
	}
	if winner < 0 {
		t.Fatal("no Remember stored")
	}
	want := []byte("v" + strconv.Itoa(winner))
	for i, r := range res {
		if r.dup && !bytes.Equal(r.prev, want) {
			t.Errorf("loser %d got %q, want the winner's %q", i, r.prev, want)
		}
	}
}

func remember(t *testing.T, d presence.Dedupe, key, val string, ttl time.Duration) ([]byte, bool) {
	t.Helper()
	prev, dup, err := d.Remember(ctxFor(t), key, []byte(val), ttl)
	if err != nil {
		t.Fatalf("Remember(%q): %v", key, err)
	}
	return prev, dup
}
