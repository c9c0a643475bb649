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
// are forgotten first, early. It is safe for concurrent use; the zero
// value is not usable, call NewMemoryDedupe.
type MemoryDedupe struct {
	now func() time.Time
	cap int
	mu  sync.Mutex // guards m, order
	m   map[string]*list.Element
	// order holds *dedupeEntry oldest first (by insertion). With mixed
	// ttls an expired entry may sit behind a live one; it is then removed
	// by a lookup of its key or by the cap.
	order *list.List
}

type dedupeEntry struct {
	key     string
	val     []byte
	expires time.Time
}

// NewMemoryDedupe returns an in-memory dedupe store holding at most max
// keys. Zero or less means DefaultDedupeCap.
func NewMemoryDedupe(max int) *MemoryDedupe {
	if max <= 0 {
		max = DefaultDedupeCap
	}
	return &MemoryDedupe{now: time.Now, cap: max, m: make(map[string]*list.Element), order: list.New()}
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
	// Drop expired entries from the front, then make room under the cap.
	for el := d.order.Front(); el != nil && !now.Before(el.Value.(*dedupeEntry).expires); el = d.order.Front() {
		d.removeLocked(el)
	}
	for d.order.Len() >= d.cap {
		d.removeLocked(d.order.Front())
	}
	e := &dedupeEntry{key: key, val: append([]byte{}, val...), expires: now.Add(ttl)}
	d.m[key] = d.order.PushBack(e)
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
	return d.order.Len()
}

// removeLocked forgets el. d.mu must be held.
func (d *MemoryDedupe) removeLocked(el *list.Element) {
	delete(d.m, el.Value.(*dedupeEntry).key)
	d.order.Remove(el)
}
