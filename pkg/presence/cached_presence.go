package presence

import (
	"context"
	"sync"
	"time"
)

// maxCachedRooms bounds the rooms whose last count CachedPresence keeps;
// past it the copy starts over.
const maxCachedRooms = 100_000

// CachedPresence wraps a Presence store so that online counts go stale
// instead of failing while the store is down: Online, OnlineMany and Top
// remember their last answers and give them back when the store fails
// (or is being skipped after a failure, see CacheConfig.RetryAfter). A
// room never asked about before has no copy and the call fails. Report
// always goes to the store, except while it is being skipped, when it
// fails at once with ErrUnavailable; a gateway's next report after the
// store returns puts its counts back.
//
// Top answers within CacheConfig.TopFresh of the store's last answer come
// from that answer.
//
// CachedPresence is safe for concurrent use; create it with
// NewCachedPresence. It uses CacheConfig.RetryAfter and TopFresh.
type CachedPresence struct {
	inner Presence
	cacheHealth
	topFresh time.Duration

	topMu  sync.Mutex     // one Top store call at a time
	mu     sync.Mutex     // guards counts and top
	counts map[string]int // room → last count from the store
	top    []RoomCount    // last Top answer, for its n
	topN   int            // n of that answer (<= 0: all rooms)
	topAt  time.Time      // when the store gave it
}

// Interface guards.
var (
	_ Presence     = (*CachedPresence)(nil)
	_ OnlineManyer = (*CachedPresence)(nil)
)

// NewCachedPresence wraps inner; see CachedPresence.
func NewCachedPresence(inner Presence, cfg CacheConfig) *CachedPresence {
	cfg = cfg.withDefaults()
	c := &CachedPresence{inner: inner, counts: make(map[string]int), topFresh: cfg.TopFresh}
	c.init(cfg.RetryAfter)
	return c
}

// Report passes gateway's counts to the store.
func (c *CachedPresence) Report(ctx context.Context, gateway string, counts map[string]int, ttl time.Duration) error {
	if !c.br.allow(c.now()) {
		return ErrUnavailable
	}
	if err := c.inner.Report(ctx, gateway, counts, ttl); err != nil {
		c.failed(ctx)
		return err
	}
	c.br.ok()
	return nil
}

// Online asks the store, answering room's last count when it fails.
func (c *CachedPresence) Online(ctx context.Context, room string) (int, error) {
	ns, err := c.OnlineMany(ctx, []string{room})
	if err != nil {
		return 0, err
	}
	return ns[0], nil
}

// OnlineMany asks the store, answering the rooms' last counts when it
// fails; it fails when any room has no copy.
func (c *CachedPresence) OnlineMany(ctx context.Context, rooms []string) ([]int, error) {
	err := error(ErrUnavailable)
	if c.br.allow(c.now()) {
		var ns []int
		if ns, err = OnlineMany(ctx, c.inner, rooms); err == nil {
			c.br.ok()
			c.mu.Lock()
			if len(c.counts)+len(rooms) > maxCachedRooms {
				clear(c.counts)
			}
			for i, r := range rooms {
				c.counts[r] = ns[i]
			}
			c.mu.Unlock()
			return ns, nil
		}
		if !c.failed(ctx) {
			return nil, err
		}
	}
	out := make([]int, len(rooms))
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, r := range rooms {
		n, ok := c.counts[r]
		if !ok {
			c.stats.misses.Add(1)
			return nil, err
		}
		out[i] = n
	}
	c.stats.fallbacks.Add(1)
	return out, nil
}

// Top answers its last Top answer while it is younger than TopFresh and
// covers n; otherwise it asks the store (for at least the rooms that answer
// covered, so that callers asking for different n do not take turns
// replacing it), one call at a time: the callers waiting meanwhile take
// its answer. When the store fails it answers its last Top (cut to n, or
// failing if that answer was for fewer rooms than n asks).
func (c *CachedPresence) Top(ctx context.Context, n int) ([]RoomCount, error) {
	if top, ok := c.lastTop(n, true); ok {
		return top, nil
	}
	c.topMu.Lock()
	defer c.topMu.Unlock()
	if top, ok := c.lastTop(n, true); ok {
		return top, nil
	}
	err := error(ErrUnavailable)
	if c.br.allow(c.now()) {
		ask := n
		c.mu.Lock()
		if n > 0 && (c.topN <= 0 || c.topN > n) && c.top != nil {
			ask = c.topN
		}
		c.mu.Unlock()
		var top []RoomCount
		if top, err = c.inner.Top(ctx, ask); err == nil {
			c.br.ok()
			c.mu.Lock()
			c.top, c.topN, c.topAt = top, ask, c.now()
			c.mu.Unlock()
			return cutTop(top, n), nil
		}
		if !c.failed(ctx) {
			return nil, err
		}
	}
	if top, ok := c.lastTop(n, false); ok {
		c.stats.fallbacks.Add(1)
		return top, nil
	}
	c.stats.misses.Add(1)
	return nil, err
}

// lastTop returns a copy of the last Top answer cut to n when it covers n
// (and, if fresh, is younger than TopFresh).
func (c *CachedPresence) lastTop(n int, fresh bool) ([]RoomCount, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	covers := c.top != nil && (c.topN <= 0 || (n > 0 && n <= c.topN) || len(c.top) < c.topN)
	if !covers || (fresh && (c.topFresh < 0 || c.now().Sub(c.topAt) >= c.topFresh)) {
		return nil, false
	}
	return cutTop(c.top, n), true
}

// cutTop returns a copy of top's first n (n <= 0: all).
func cutTop(top []RoomCount, n int) []RoomCount {
	if n > 0 && len(top) > n {
		top = top[:n]
	}
	return append([]RoomCount{}, top...)
}

// Close closes the wrapped store if it has a Close method.
func (c *CachedPresence) Close() error {
	if cl, ok := c.inner.(interface{ Close() error }); ok {
		return cl.Close()
	}
	return nil
}
