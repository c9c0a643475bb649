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
// CachedPresence is safe for concurrent use; create it with
// NewCachedPresence. It uses CacheConfig.RetryAfter only.
type CachedPresence struct {
	inner Presence
	cacheHealth

	mu     sync.Mutex     // guards counts and top
	counts map[string]int // room → last count from the store
	top    []RoomCount    // last Top answer, for its n
	topN   int            // n of that answer (<= 0: all rooms)
}

// Interface guards.
var (
	_ Presence     = (*CachedPresence)(nil)
	_ OnlineManyer = (*CachedPresence)(nil)
)

// NewCachedPresence wraps inner; see CachedPresence.
func NewCachedPresence(inner Presence, cfg CacheConfig) *CachedPresence {
	c := &CachedPresence{inner: inner, counts: make(map[string]int)}
	c.init(cfg.withDefaults().RetryAfter)
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

// Top asks the store, answering its last Top when it fails (cut to n, or
// failing if that answer was for fewer rooms than n asks).
func (c *CachedPresence) Top(ctx context.Context, n int) ([]RoomCount, error) {
	err := error(ErrUnavailable)
	if c.br.allow(c.now()) {
		var top []RoomCount
		if top, err = c.inner.Top(ctx, n); err == nil {
			c.br.ok()
			c.mu.Lock()
			c.top, c.topN = top, n
			c.mu.Unlock()
			return top, nil
		}
		if !c.failed(ctx) {
			return nil, err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	covers := c.top != nil && (c.topN <= 0 || (n > 0 && n <= c.topN) || len(c.top) < c.topN)
	if !covers {
		c.stats.misses.Add(1)
		return nil, err
	}
	out := c.top
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	c.stats.fallbacks.Add(1)
	return append([]RoomCount(nil), out...), nil
}

// Close closes the wrapped store if it has a Close method.
func (c *CachedPresence) Close() error {
	if cl, ok := c.inner.(interface{ Close() error }); ok {
		return cl.Close()
	}
	return nil
}
