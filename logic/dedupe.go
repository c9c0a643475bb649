package logic

import (
	"container/list"
	"context"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// dedupe remembers the answer given to accepted, held and rejected message
// ids for a while, bounded in size (least recently added dropped first).
// Rejects live in a space of their own, with its own bound and at most
// perUID per user: however many sends are rejected (a flood of one user's
// rate-limited sends, or of many users'), they never push an accepted or
// held id out. It is owned by the worker's goroutine.
type dedupe struct {
	max    int // accepted and held ids
	rejMax int // rejects
	perUID int // rejects per user
	ttl    time.Duration
	order  *list.List // of *dedupeItem, accepted and held, oldest first
	rejs   *list.List // of *dedupeItem, rejects, oldest first
	items  map[string]*list.Element
	uids   map[string]int // user → rejects in rejs
}

type dedupeEntry struct {
	seq  uint64
	held bool
	rej  *rejection // a verdict's reject (never unavailable)
}

// rejection is a reject remembered for an id: a retry of the send gets the
// same answer, so that one send never gets a reject and then an ack (a
// retry that crossed its reject, e.g. across a broker restart, would
// otherwise be decided afresh).
type rejection struct {
	Code    string `json:"code"`
	Message string `json:"msg,omitempty"`
	// Until is when retry_after_ms ran out (Unix ms); 0 = none given.
	Until int64 `json:"until,omitempty"`
}

// reply copies r into rep, with retry_after_ms what is left of it at now.
func (r *rejection) reply(rep *bus.Reply, now time.Time) {
	rep.Code, rep.Message = protocol.Code(r.Code), r.Message
	if left := r.Until - now.UnixMilli(); r.Until != 0 && left > 0 {
		rep.RetryAfterMs = left
	}
}

// rejectionOf returns the rejection to remember for a verdict's reject
// answered at now, or nil when it must not be remembered: unavailable asks
// the sender to retry with the same id.
func rejectionOf(rep bus.Reply, now time.Time) *rejection {
	if rep.Code == "" || rep.Code == protocol.CodeUnavailable {
		return nil
	}
	r := &rejection{Code: string(rep.Code), Message: rep.Message}
	if rep.RetryAfterMs > 0 {
		r.Until = now.UnixMilli() + rep.RetryAfterMs
	}
	return r
}

type dedupeItem struct {
	key     string
	uid     string // a reject's user
	entry   dedupeEntry
	expires time.Time
}

func newDedupe(max, rejMax, perUID int, ttl time.Duration) *dedupe {
	return &dedupe{max: max, rejMax: rejMax, perUID: perUID, ttl: ttl, order: list.New(), rejs: list.New(),
		items: make(map[string]*list.Element), uids: make(map[string]int)}
}

func (d *dedupe) get(key string, now time.Time) (dedupeEntry, bool) {
	el, ok := d.items[key]
	if !ok {
		return dedupeEntry{}, false
	}
	it := el.Value.(*dedupeItem)
	if now.After(it.expires) {
		d.evict(el)
		return dedupeEntry{}, false
	}
	return it.entry, true
}

// put remembers e under key, for user uid. It reports false when e is a
// reject it does not remember: uid already has perUID rejects remembered
// (its older ones stay; this one is answered and forgotten).
func (d *dedupe) put(key, uid string, e dedupeEntry, now time.Time) bool {
	return d.add(key, uid, e, now, true)
}

// load remembers e, found in the dedupe store, under key: like put, but a
// reject is kept even past its user's share.
func (d *dedupe) load(key, uid string, e dedupeEntry, now time.Time) {
	d.add(key, uid, e, now, false)
}

func (d *dedupe) add(key, uid string, e dedupeEntry, now time.Time, capped bool) bool {
	order, max := d.order, d.max
	if e.rej != nil {
		order, max = d.rejs, d.rejMax
		d.dropExpired(order, now, 4)
		old, ok := d.items[key] // the key names the user: a reject of the same user
		if replaces := ok && old.Value.(*dedupeItem).entry.rej != nil; capped && !replaces && d.uids[uid] >= d.perUID {
			return false
		}
	}
	if el, ok := d.items[key]; ok {
		d.evict(el)
	}
	d.items[key] = order.PushBack(&dedupeItem{key: key, uid: uid, entry: e, expires: now.Add(d.ttl)})
	if e.rej != nil {
		d.uids[uid]++
	}
	for order.Len() > max {
		d.evict(order.Front())
	}
	// Drop a few expired entries from the front on every put.
	d.dropExpired(order, now, 4)
	return true
}

// dropExpired drops up to n expired entries from the front of order.
func (d *dedupe) dropExpired(order *list.List, now time.Time, n int) {
	for range n {
		el := order.Front()
		if el == nil || now.Before(el.Value.(*dedupeItem).expires) {
			return
		}
		d.evict(el)
	}
}

// keepAccepted forgets every held and rejected id, keeping the accepted
// ones (a new generation). An accepted id was remembered only once its
// record stood (fenced, verified), so its seq stays true whoever owns the
// partition next; a held or rejected send of a partition that moved may
// since have been decided otherwise by its new owner.
func (d *dedupe) keepAccepted() {
	for el := d.order.Front(); el != nil; {
		next := el.Next()
		if el.Value.(*dedupeItem).entry.held {
			d.evict(el)
		}
		el = next
	}
	for el := d.rejs.Front(); el != nil; el = d.rejs.Front() {
		d.evict(el)
	}
}

func (d *dedupe) evict(el *list.Element) {
	it := el.Value.(*dedupeItem)
	delete(d.items, it.key)
	if it.entry.rej == nil {
		d.order.Remove(el)
		return
	}
	d.rejs.Remove(el)
	if d.uids[it.uid]--; d.uids[it.uid] <= 0 {
		delete(d.uids, it.uid)
	}
}

// IsRejectKey reports whether key is one logic stores a reject under in
// Config.Dedupe. A presence.MemoryDedupe holding logic's ids should keep
// those apart (presence.MemoryDedupe.Split), as NewMemoryDedupe does.
func IsRejectKey(key string) bool { return strings.HasSuffix(key, rejSuffix) }

// NewMemoryDedupe returns the in-memory dedupe store for logic (danmaku
// all, --presence memory): presence.DefaultDedupeCap accepted and held
// ids, and rejects in a space of their own (DefaultDedupeCap / 4) that a
// flood of rejects cannot grow past, so they never push accepted ids out.
func NewMemoryDedupe() *presence.MemoryDedupe {
	return presence.NewMemoryDedupe(0).Split(IsRejectKey, 0)
}

// heldKey is the dedupe store's key for a held message id (accepted ids
// are stored under their dedupeKey, with their seq).
func heldKey(key string) string { return key + "\x00held" }

// rejKey is the dedupe store's key for a rejected message id; its value is
// the rejection as JSON.
func rejKey(key string) string { return key + rejSuffix }

const rejSuffix = "\x00rej"

// lookupDurable asks Config.Dedupe about the ids of recs that this worker
// does not remember and copies what it knows into memory, so that a retry
// of a message accepted (or held, or rejected) before the last takeover,
// beyond the scan, gets the same answer. An accepted id wins over a held
// or rejected one (a reject whose partition was lost may have been stored
// while the new owner accepted the send). When the store fails, the batch
// goes on with what memory knows, and lookupDurable reports false.
func (l *Logic) lookupDurable(ctx context.Context, recs []bus.Record, now time.Time) bool {
	if l.cfg.Dedupe == nil {
		return true
	}
	var keys, uids []string
	for _, r := range recs {
		var in bus.Ingest
		if bus.Unmarshal(r.Value, &in) != nil || in.ID == "" {
			continue
		}
		if _, ok := l.dedupe.get(dedupeKey(in), now); !ok {
			keys = append(keys, dedupeKey(in), heldKey(dedupeKey(in)), rejKey(dedupeKey(in)))
			uids = append(uids, in.UID)
		}
	}
	if len(keys) == 0 {
		return true
	}
	qctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	vals, err := l.cfg.Dedupe.Lookup(qctx, keys...)
	if err != nil {
		l.m.dedupeErrors.Inc()
		l.cfg.Logger.Warn("logic: dedupe store lookup failed; deciding with what this worker remembers, retries answered unavailable", "err", err)
		return false
	}
	for i := 0; i+2 < len(vals); i += 3 {
		var rej rejection
		uid := uids[i/3]
		if seq, err := strconv.ParseUint(string(vals[i]), 10, 64); err == nil && seq > 0 {
			l.dedupe.load(keys[i], uid, dedupeEntry{seq: seq}, now)
		} else if vals[i+1] != nil {
			l.dedupe.load(keys[i], uid, dedupeEntry{held: true}, now)
		} else if vals[i+2] != nil && bus.Unmarshal(vals[i+2], &rej) == nil && rej.Code != "" {
			// Past the user's share too: it was stored under a
			// worker's share, and the retry must get it.
			l.dedupe.load(keys[i], uid, dedupeEntry{rej: &rej}, now)
		}
	}
	return true
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

// reStore hands the ids a takeover scan found to the rewriter, which
// writes those the dedupe store lacks (a write never replaces an entry):
// an id the previous owner acked while the store was down, and could not
// write there before it stopped, is then recognised after the next
// takeover too, once it is beyond any scan. In the background, so that a
// store outage does not hold up the takeover.
func (l *Logic) reStore(ws []durableWrite) {
	if l.cfg.Dedupe == nil || len(ws) == 0 {
		return
	}
	select {
	case l.rewrites <- ws:
	default:
		l.m.dedupeErrors.Add(float64(len(ws))) // the rewriter is full: given up
	}
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
