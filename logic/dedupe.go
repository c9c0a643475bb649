package logic

import (
	"container/list"
	"time"
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
