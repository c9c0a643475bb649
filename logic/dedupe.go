package logic

import (
	"container/list"
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

// dedupe remembers the answer given to accepted and held message ids for a
// while, bounded in size (least recently added dropped first). It is owned
// by the worker's goroutine.
type dedupe struct {
	max   int
	ttl   time.Duration
	order *list.List // of *dedupeItem, oldest first
	items map[string]*list.Element
}

type dedupeEntry struct {
	seq  uint64
	held bool
}

type dedupeItem struct {
	key     string
	entry   dedupeEntry
	expires time.Time
}

func newDedupe(max int, ttl time.Duration) *dedupe {
	return &dedupe{max: max, ttl: ttl, order: list.New(), items: make(map[string]*list.Element)}
}

func (d *dedupe) get(key string, now time.Time) (dedupeEntry, bool) {
	el, ok := d.items[key]
	if !ok {
		return dedupeEntry{}, false
	}
	it := el.Value.(*dedupeItem)
	if now.After(it.expires) {
		d.order.Remove(el)
		delete(d.items, key)
		return dedupeEntry{}, false
	}
	return it.entry, true
}

func (d *dedupe) put(key string, e dedupeEntry, now time.Time) {
	if el, ok := d.items[key]; ok {
		d.order.Remove(el)
	}
	d.items[key] = d.order.PushBack(&dedupeItem{key: key, entry: e, expires: now.Add(d.ttl)})
	for d.order.Len() > d.max {
		d.evict(d.order.Front())
	}
	// Drop a few expired entries from the front on every put.
	for i := 0; i < 4; i++ {
		el := d.order.Front()
		if el == nil || now.Before(el.Value.(*dedupeItem).expires) {
			break
		}
		d.evict(el)
	}
}

func (d *dedupe) evict(el *list.Element) {
	d.order.Remove(el)
	delete(d.items, el.Value.(*dedupeItem).key)
}

// heldKey is the dedupe store's key for a held message id (accepted ids
// are stored under their dedupeKey, with their seq).
func heldKey(key string) string { return key + "\x00held" }

// lookupDurable asks Config.Dedupe about the ids of recs that this worker
// does not remember and copies what it knows into memory, so that a retry
// of a message accepted (or held) before the last takeover, beyond the
// scan, gets the same answer. When the store fails, the batch goes on with
// what memory knows.
func (l *Logic) lookupDurable(ctx context.Context, recs []bus.Record, now time.Time) {
	if l.cfg.Dedupe == nil {
		return
	}
	var keys []string
	for _, r := range recs {
		var in bus.Ingest
		if bus.Unmarshal(r.Value, &in) != nil || in.ID == "" {
			continue
		}
		if _, ok := l.dedupe.get(dedupeKey(in), now); !ok {
			keys = append(keys, dedupeKey(in), heldKey(dedupeKey(in)))
		}
	}
	if len(keys) == 0 {
		return
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	vals, err := l.cfg.Dedupe.Lookup(qctx, keys...)
	if err != nil {
		l.m.dedupeErrors.Inc()
		l.cfg.Logger.Warn("logic: dedupe store lookup failed; deciding with what this worker remembers", "err", err)
		return
	}
	for i := 0; i+1 < len(vals); i += 2 {
		if seq, err := strconv.ParseUint(string(vals[i]), 10, 64); err == nil && seq > 0 {
			l.dedupe.put(keys[i], dedupeEntry{seq: seq}, now)
		} else if vals[i+1] != nil {
			l.dedupe.put(keys[i], dedupeEntry{held: true}, now)
		}
	}
}

// durableWrite is an entry for Config.Dedupe whose write failed; it is
// written again until it lands or its TTL passes.
type durableWrite struct {
	key     string
	val     []byte
	expires time.Time
}

// maxRewrites bounds the entries waiting for the dedupe store to come back.
const maxRewrites = 1 << 20

// storeDurable writes keys with vals (nil: "1") to Config.Dedupe. What
// fails to land (the store is down) goes to the rewriter, which writes it
// once the store is back: an id acked during a Redis outage is still
// recognised after a later takeover, as long as this worker lives.
func (l *Logic) storeDurable(ctx context.Context, keys []string, vals [][]byte) {
	if l.cfg.Dedupe == nil || len(keys) == 0 {
		return
	}
	ws := make([]durableWrite, len(keys))
	expires := time.Now().Add(l.cfg.DedupeTTL)
	for i, k := range keys {
		ws[i] = durableWrite{key: k, val: []byte("1"), expires: expires}
		if vals != nil {
			ws[i].val = vals[i]
		}
	}
	if failed := l.writeDurable(ctx, ws, 2*time.Second); len(failed) > 0 {
		l.cfg.Logger.Warn("logic: dedupe store writes failed; writing them again when it is back", "n", len(failed))
		select {
		case l.rewrites <- failed:
		default:
			l.m.dedupeErrors.Add(float64(len(failed))) // the rewriter is full: given up
		}
	}
}

// writeDurable writes ws (16 at a time) within timeout and returns those
// that failed.
func (l *Logic) writeDurable(ctx context.Context, ws []durableWrite, timeout time.Duration) []durableWrite {
	sctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var failed []durableWrite
	work := make(chan int)
	for range min(16, len(ws)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				w := ws[i]
				if _, _, err := l.cfg.Dedupe.Remember(sctx, w.key, w.val, time.Until(w.expires)); err != nil {
					l.m.dedupeErrors.Inc()
					mu.Lock()
					failed = append(failed, w)
					mu.Unlock()
				}
			}
		}()
	}
	for i := range ws {
		work <- i
	}
	close(work)
	wg.Wait()
	return failed
}

// runRewrites writes again the dedupe entries whose first write failed,
// every second, dropping those whose TTL passed, until ctx is done. Runs
// on its own goroutine.
func (l *Logic) runRewrites(ctx context.Context) {
	var pending []durableWrite
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case ws := <-l.rewrites:
			pending = append(pending, ws...)
			if over := len(pending) - maxRewrites; over > 0 {
				l.m.dedupeErrors.Add(float64(over))
				pending = pending[over:]
			}
			continue
		case <-t.C:
		}
		now := time.Now()
		live := pending[:0]
		for _, w := range pending {
			if now.Before(w.expires) {
				live = append(live, w)
			}
		}
		if len(live) == 0 {
			pending = live
			continue
		}
		pending = l.writeDurable(ctx, live, 5*time.Second)
		if len(pending) == 0 {
			l.cfg.Logger.Info("logic: dedupe store back; the entries it missed are written", "n", len(live))
		}
	}
}
