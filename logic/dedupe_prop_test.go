package logic

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// checkDedupeInvariants: items names exactly the elements of order and
// rejs; order holds no rejects, rejs only rejects; uids counts rejs per
// user with no zero entries; both lists within their bounds.
func checkDedupeInvariants(t *testing.T, d *dedupe, step int) {
	t.Helper()
	if n := d.order.Len() + d.rejs.Len(); n != len(d.items) {
		t.Fatalf("step %d: %d listed, %d in items", step, n, len(d.items))
	}
	counts := map[string]int{}
	for el := d.order.Front(); el != nil; el = el.Next() {
		it := el.Value.(*dedupeItem)
		if d.items[it.key] != el {
			t.Fatalf("step %d: order element %q not in items", step, it.key)
		}
		if it.entry.rej != nil {
			t.Fatalf("step %d: reject %q in order", step, it.key)
		}
	}
	for el := d.rejs.Front(); el != nil; el = el.Next() {
		it := el.Value.(*dedupeItem)
		if d.items[it.key] != el {
			t.Fatalf("step %d: rejs element %q not in items", step, it.key)
		}
		if it.entry.rej == nil {
			t.Fatalf("step %d: non-reject %q in rejs", step, it.key)
		}
		counts[it.uid]++
	}
	if len(counts) != len(d.uids) {
		t.Fatalf("step %d: uids %v, rejs count %v", step, d.uids, counts)
	}
	for u, n := range counts {
		if d.uids[u] != n {
			t.Fatalf("step %d: uids[%s]=%d, rejs hold %d", step, u, d.uids[u], n)
		}
	}
	if d.order.Len() > d.max || d.rejs.Len() > d.rejMax {
		t.Fatalf("step %d: order %d/%d rejs %d/%d", step, d.order.Len(), d.max, d.rejs.Len(), d.rejMax)
	}
}

// TestDedupeKeepAcceptedProperty: random puts, loads, gets and
// generation changes; after every step the bookkeeping holds, and a
// generation change keeps exactly the live accepted entries (same seq,
// same expiry), dropping every held and rejected one.
func TestDedupeKeepAcceptedProperty(t *testing.T) {
	for seed := range uint64(200) {
		r := rand.New(rand.NewPCG(seed, 7))
		d := newDedupe(1+r.IntN(20), 1+r.IntN(10), 1+r.IntN(4), time.Duration(1+r.IntN(50))*time.Second)
		now := time.Unix(1000, 0)
		for step := range 400 {
			key := fmt.Sprintf("k%d", r.IntN(30))
			uid := fmt.Sprintf("u%d", r.IntN(5))
			var e dedupeEntry
			switch r.IntN(3) {
			case 0:
				e.seq = uint64(1 + r.IntN(1000))
			case 1:
				e.held = true
			default:
				e.rej = &rejection{Code: "rate_limited"}
			}
			switch op := r.IntN(10); {
			case op < 5:
				d.put(key, uid, e, now)
			case op < 7:
				d.load(key, uid, e, now)
			case op < 9:
				d.get(key, now)
			default:
				before := map[string]dedupeItem{}
				for el := d.order.Front(); el != nil; el = el.Next() {
					if it := el.Value.(*dedupeItem); !it.entry.held {
						before[it.key] = *it
					}
				}
				d.keepAccepted()
				if d.rejs.Len() != 0 || len(d.uids) != 0 {
					t.Fatalf("seed %d step %d: rejects left: %d, uids %v", seed, step, d.rejs.Len(), d.uids)
				}
				if len(d.items) != len(before) {
					t.Fatalf("seed %d step %d: %d kept, want %d", seed, step, len(d.items), len(before))
				}
				for k, it := range before {
					el, ok := d.items[k]
					if !ok {
						t.Fatalf("seed %d step %d: accepted %q dropped", seed, step, k)
					}
					got := el.Value.(*dedupeItem)
					if got.entry.seq != it.entry.seq || got.entry.held || got.expires != it.expires {
						t.Fatalf("seed %d step %d: %q kept as %+v, was %+v", seed, step, k, *got, it)
					}
				}
			}
			checkDedupeInvariants(t, d, step)
			now = now.Add(time.Duration(r.IntN(3000)) * time.Millisecond)
		}
	}
}
