package presence

import (
	"bytes"
	"container/list"
	"context"
	"sync"
	"time"
)

var _ Dedupe = (*MemoryDedupe)(nil)

// DefaultDedupeCap is the number of keys a MemoryDedupe holds when
// NewMemoryDedupe is given no cap.
const DefaultDedupeCap = 1 << 20

// MemoryDedupe is the embedded dedupe store. Its size is bounded twice:
// keys expire after their ttl, and once it holds its cap the oldest keys
// are forgotten first, early. Keys of a minor class (Split) are kept in a
// space of their own with its own cap, so however many of them come they
// never push other keys out. It is safe for concurrent use; the zero value
// is not usable, call NewMemoryDedupe.
type MemoryDedupe struct {
	now func() time.Time
	cap int
	mu  sync.Mutex // guards m, order, minorOrder
	m   map[string]*list.Element
	// order holds *dedupeEntry oldest first (by insertion). With mixed
	// ttls an expired entry may sit behind a live one; it is then removed
	// by a lookup of its key or by the cap.
	order *list.List
	// minor (nil: none) tells the keys kept in minorOrder, at most
	// minorCap of them, instead of order.
	minor      func(key string) bool
	minorCap   int
	minorOrder *list.List
}

type dedupeEntry struct {
	key     string
	val     []byte
	expires time.Time
	in      *list.List // order or minorOrder
}

// NewMemoryDedupe returns an in-memory dedupe store holding at most max
// keys. Zero or less means DefaultDedupeCap.
func NewMemoryDedupe(max int) *MemoryDedupe {
	if max <= 0 {
		max = DefaultDedupeCap
	}
	return &MemoryDedupe{now: time.Now, cap: max, m: make(map[string]*list.Element), order: list.New(), minorOrder: list.New()}
}

// Split keeps the keys for which minor reports true in a space of their
// own holding at most max of them (zero or less: DefaultDedupeCap / 4),
// oldest forgotten first: they never push the other keys out, and the
// other keys never push them out. Call it before d is used; it returns d.
func (d *MemoryDedupe) Split(minor func(key string) bool, max int) *MemoryDedupe {
	if max <= 0 {
		max = DefaultDedupeCap / 4
	}
	d.minor, d.minorCap = minor, max
	return d
}

// Remember stores a copy of val under key unless a live value is there,
// which it returns.
func (d *MemoryDedupe) Remember(ctx context.Context, key string, val []byte, ttl time.Duration) ([]byte, bool, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	if el, ok := d.m[key]; ok {
		e := el.Value.(*dedupeEntry)
		if now.Before(e.expires) {
			return bytes.Clone(e.val), true, nil
		}
		d.removeLocked(el)
	}
	order, max := d.order, d.cap
	if d.minor != nil && d.minor(key) {
		order, max = d.minorOrder, d.minorCap
	}
	// Drop expired entries from the front, then make room under the cap.
	for el := order.Front(); el != nil && !now.Before(el.Value.(*dedupeEntry).expires); el = order.Front() {
		d.removeLocked(el)
	}
	for order.Len() >= max {
		d.removeLocked(order.Front())
	}
	e := &dedupeEntry{key: key, val: append([]byte{}, val...), expires: now.Add(ttl), in: order}
	d.m[key] = order.PushBack(e)
	return nil, false, nil
}

// Lookup returns copies of the live values of keys.
func (d *MemoryDedupe) Lookup(ctx context.Context, keys ...string) ([][]byte, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := d.now()
	out := make([][]byte, len(keys))
	for i, k := range keys {
		if el, ok := d.m[k]; ok {
			if e := el.Value.(*dedupeEntry); now.Before(e.expires) {
				out[i] = append([]byte{}, e.val...)
			}
		}
	}
	return out, nil
}

// Len returns the number of keys held, expired ones not yet dropped
// included.
func (d *MemoryDedupe) Len() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.order.Len() + d.minorOrder.Len()
}

// LenMinor returns the number of keys held in the minor space (Split),
// expired ones not yet dropped included.
func (d *MemoryDedupe) LenMinor() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.minorOrder.Len()
}

// removeLocked forgets el. d.mu must be held.
func (d *MemoryDedupe) removeLocked(el *list.Element) {
	e := el.Value.(*dedupeEntry)
	delete(d.m, e.key)
	e.in.Remove(el)
}
