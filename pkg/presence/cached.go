package presence

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"
)

// ErrUnavailable is returned by the cached wrappers when the inner store
// is failing and the local copy cannot answer.
var ErrUnavailable = errors.New("presence: store unavailable")

// CacheConfig configures NewCachedBans and NewCachedKV.
//
// The shared stores live in Redis. When Redis goes down the system keeps
// serving: messages keep flowing, online counts go stale (gateways' Report
// calls fail, and NewCachedPresence answers Online and Top with the last
// counts it saw), a second
// login is not detected across gateways, Dedupe calls fail (callers treat
// a send as new), and bans and room settings come from the local copies that
// CachedBans and CachedKV keep. Nothing needs a restart when Redis
// returns: go-redis reconnects by itself and the wrappers go back to the
// store on their next probe. The Redis adapter's short timeouts (300 ms by
// default) bound how long any call can wait on a Redis that stopped
// answering, and the wrappers' circuit breaker means only one call per
// CacheConfig.RetryAfter pays even that.
type CacheConfig struct {
	// Refresh is how old a room's ban list may grow before a Banned call
	// for that room reloads it (with List, in the background). Zero means
	// 10 * time.Second.
	Refresh time.Duration
	// RetryAfter is how long after a failure of the inner store calls skip
	// it and answer from the local copy; after that one call probes the
	// store again. Zero means time.Second.
	RetryAfter time.Duration
	// Timeout bounds each background reload. Zero means 2 * time.Second.
	Timeout time.Duration
	// TopFresh is how long a Top answer serves the Top calls it covers
	// without asking the store, one store call at a time (Top sums every
	// room over the live gateways: in Redis a script that blocks it
	// meanwhile, and GET /api/rooms is public and polled by the room
	// router). Zero means 2 * time.Second; negative asks every time.
	TopFresh time.Duration
}

func (c CacheConfig) withDefaults() CacheConfig {
	if c.Refresh <= 0 {
		c.Refresh = 10 * time.Second
	}
	if c.RetryAfter <= 0 {
		c.RetryAfter = time.Second
	}
	if c.Timeout <= 0 {
		c.Timeout = 2 * time.Second
	}
	if c.TopFresh == 0 {
		c.TopFresh = 2 * time.Second
	}
	return c
}

// CacheStats counts how a cached wrapper has answered.
type CacheStats struct {
	// Errors is the number of failed calls to the inner store.
	Errors uint64
	// Fallbacks is the number of answers served from the local copy
	// because the inner store failed or was being skipped as down.
	Fallbacks uint64
	// Misses is the number of calls that failed because the local copy
	// could not answer either.
	Misses uint64
	// Down reports whether the inner store is currently being skipped.
	Down bool
}

// cacheCounters are a wrapper's CacheStats, updated atomically.
type cacheCounters struct {
	errors, fallbacks, misses atomic.Uint64
}

// cacheHealth is what every cached wrapper keeps about its store: the
// breaker in front of it and the counters. Embedded, it gives the wrapper
// its Stats and failed; init sets it up.
type cacheHealth struct {
	now   func() time.Time
	br    breaker
	stats cacheCounters
}

// init sets the clock and the breaker's retry period.
func (h *cacheHealth) init(retry time.Duration) {
	h.now = time.Now
	h.br.retry = retry
}

// failed records a failure of the inner store and reports whether the
// caller should fall back to the copy. A failure caused by the caller's
// own context ending is not the store's fault and gets no fallback.
func (h *cacheHealth) failed(ctx context.Context) bool {
	if ctx.Err() != nil {
		return false
	}
	h.stats.errors.Add(1)
	h.br.fail(h.now())
	return true
}

// Stats returns the wrapper's counters.
func (h *cacheHealth) Stats() CacheStats {
	return CacheStats{Errors: h.stats.errors.Load(), Fallbacks: h.stats.fallbacks.Load(), Misses: h.stats.misses.Load(), Down: h.br.down()}
}

// breaker skips the inner store for RetryAfter after a failure, then lets
// one call through to probe it. The zero value is closed (store up).
type breaker struct {
	retry     time.Duration
	downUntil atomic.Int64 // unix ns until which calls skip the store; 0 = up
}

// allow reports whether a call should go to the inner store.
func (b *breaker) allow(now time.Time) bool {
	d := b.downUntil.Load()
	if d == 0 {
		return true
	}
	n := now.UnixNano()
	if n < d {
		return false
	}
	// Retry time: this caller probes; others keep skipping meanwhile.
	return b.downUntil.CompareAndSwap(d, n+int64(b.retry))
}

func (b *breaker) fail(now time.Time) { b.downUntil.Store(now.UnixNano() + int64(b.retry)) }
func (b *breaker) ok()                { b.downUntil.Store(0) }
func (b *breaker) down() bool         { return b.downUntil.Load() != 0 }

// CachedBans wraps a Bans store with a local copy of the bans it has seen,
// from which Banned and List answer while the store fails.
//
// Banned asks the store and records the answer; it also reloads the
// room's and the global ban lists in the background whenever they are
// older than CacheConfig.Refresh, so the copy knows bans of users it has
// not asked about yet. When the store fails, Banned answers from the copy:
// a ban found there (still in force) is reported; a user absent from a
// room whose list has been loaded is not banned; otherwise the call fails
// with the store's error (or ErrUnavailable while the store is skipped).
// Ban and Unban always go to the store and update the copy when it
// succeeds. Bans issued elsewhere while the store is down are not seen
// until it returns.
//
// CachedBans is safe for concurrent use; create it with NewCachedBans.
type CachedBans struct {
	inner Bans
	cfg   CacheConfig
	cacheHealth

	mu    sync.Mutex           // guards rooms
	rooms map[string]*banCache // room ("" global) → local copy
}

// banCache is the local copy of one room's bans.
type banCache struct {
	bans    map[string]Ban // uid → ban
	loaded  time.Time      // last complete List; zero: never
	loading bool           // a reload is running
}

var _ Bans = (*CachedBans)(nil)

// NewCachedBans wraps inner; see CachedBans.
func NewCachedBans(inner Bans, cfg CacheConfig) *CachedBans {
	cfg = cfg.withDefaults()
	c := &CachedBans{inner: inner, cfg: cfg, rooms: make(map[string]*banCache)}
	c.init(cfg.RetryAfter)
	return c
}

// Ban bans uid in the store and, on success, in the local copy.
func (c *CachedBans) Ban(ctx context.Context, room, uid string, until time.Time, reason, by string) error {
	if err := c.inner.Ban(ctx, room, uid, until, reason, by); err != nil {
		c.failed(ctx)
		return err
	}
	c.br.ok()
	c.mu.Lock()
	c.roomLocked(room).bans[uid] = Ban{Room: room, UID: uid, Until: until, Reason: reason, By: by, At: c.now()}
	c.mu.Unlock()
	return nil
}

// Unban lifts the ban in the store and, on success, in the local copy.
func (c *CachedBans) Unban(ctx context.Context, room, uid string) error {
	if err := c.inner.Unban(ctx, room, uid); err != nil {
		c.failed(ctx)
		return err
	}
	c.br.ok()
	c.mu.Lock()
	delete(c.roomLocked(room).bans, uid)
	c.mu.Unlock()
	return nil
}

// Banned asks the store, falling back to the local copy when it fails.
func (c *CachedBans) Banned(ctx context.Context, room, uid string) (Ban, bool, error) {
	now := c.now()
	c.maybeReload(room, now)
	if room != "" {
		c.maybeReload("", now)
	}
	err := ErrUnavailable
	if c.br.allow(now) {
		var b Ban
		var ok bool
		if b, ok, err = c.inner.Banned(ctx, room, uid); err == nil {
			c.br.ok()
			c.mu.Lock()
			if ok {
				c.roomLocked(b.Room).bans[uid] = b
			} else {
				delete(c.roomLocked(room).bans, uid)
				delete(c.roomLocked("").bans, uid)
			}
			c.mu.Unlock()
			return b, ok, nil
		}
		if !c.failed(ctx) {
			return Ban{}, false, err
		}
	}
	b, ok, known := c.cached(room, uid, now)
	if !known {
		c.stats.misses.Add(1)
		return Ban{}, false, err
	}
	c.stats.fallbacks.Add(1)
	return b, ok, nil
}

// List asks the store and refreshes the local copy of room with the
// answer; when the store fails it lists the copy, if room was loaded.
func (c *CachedBans) List(ctx context.Context, room string) ([]Ban, error) {
	now := c.now()
	err := ErrUnavailable
	if c.br.allow(now) {
		var bs []Ban
		if bs, err = c.inner.List(ctx, room); err == nil {
			c.br.ok()
			c.store(room, bs, now)
			return bs, nil
		}
		if !c.failed(ctx) {
			return nil, err
		}
	}
	c.mu.Lock()
	rc := c.rooms[room]
	if rc == nil || rc.loaded.IsZero() {
		c.mu.Unlock()
		c.stats.misses.Add(1)
		return nil, err
	}
	out := make([]Ban, 0, len(rc.bans))
	for _, b := range rc.bans {
		if b.Active(now) {
			out = append(out, b)
		}
	}
	c.mu.Unlock()
	SortBans(out)
	c.stats.fallbacks.Add(1)
	return out, nil
}

// cached looks uid up in the copies of room and the global room. known is
// false when a miss proves nothing because a list was never loaded.
func (c *CachedBans) cached(room, uid string, now time.Time) (best Ban, ok, known bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	known = true
	for i, r := range [2]string{room, ""} {
		if i == 1 && room == "" {
			break
		}
		rc := c.rooms[r]
		if rc == nil {
			known = false
			continue
		}
		if rc.loaded.IsZero() {
			known = false
		}
		if b, hit := rc.bans[uid]; hit && b.Active(now) && (!ok || b.Outlasts(best)) {
			best, ok = b, true
		}
	}
	return best, ok, known || ok
}

// maybeReload starts a background List of room if its copy is older than
// cfg.Refresh and the store is not being skipped.
func (c *CachedBans) maybeReload(room string, now time.Time) {
	if c.br.down() {
		return
	}
	c.mu.Lock()
	rc := c.roomLocked(room)
	if rc.loading || now.Sub(rc.loaded) < c.cfg.Refresh {
		c.mu.Unlock()
		return
	}
	rc.loading = true
	c.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), c.cfg.Timeout)
		defer cancel()
		bs, err := c.inner.List(ctx, room)
		if err != nil {
			c.failed(context.Background())
			c.mu.Lock()
			rc.loading = false
			c.mu.Unlock()
			return
		}
		c.store(room, bs, c.now())
	}()
}

// store replaces the copy of room with bs, a complete list as of now.
func (c *CachedBans) store(room string, bs []Ban, now time.Time) {
	m := make(map[string]Ban, len(bs))
	for _, b := range bs {
		m[b.UID] = b
	}
	c.mu.Lock()
	rc := c.roomLocked(room)
	rc.bans, rc.loaded, rc.loading = m, now, false
	c.mu.Unlock()
}

// roomLocked returns room's copy, creating it. c.mu must be held.
func (c *CachedBans) roomLocked(room string) *banCache {
	rc := c.rooms[room]
	if rc == nil {
		rc = &banCache{bans: make(map[string]Ban)}
		c.rooms[room] = rc
	}
	return rc
}

// CachedKV wraps a KV store with the last value read or written for each
// key. When the store fails, Get answers with that last good value (or
// its absence); a key never read fails with the store's error, or
// ErrUnavailable while the store is skipped. Put always goes to the store
// and updates the copy when it succeeds. The copy holds every key read,
// so it suits a bounded key set such as per-room settings.
//
// CachedKV is safe for concurrent use; create it with NewCachedKV.
type CachedKV struct {
	inner KV
	cacheHealth

	mu sync.RWMutex // guards m
	m  map[string]kvCache
}

type kvCache struct {
	val []byte
	ok  bool
}

var _ KV = (*CachedKV)(nil)

// NewCachedKV wraps inner; see CachedKV. Only cfg.RetryAfter applies.
func NewCachedKV(inner KV, cfg CacheConfig) *CachedKV {
	c := &CachedKV{inner: inner, m: make(map[string]kvCache)}
	c.init(cfg.withDefaults().RetryAfter)
	return c
}

// Get asks the store, falling back to the last good value when it fails.
func (c *CachedKV) Get(ctx context.Context, key string) ([]byte, bool, error) {
	now := c.now()
	err := ErrUnavailable
	if c.br.allow(now) {
		var v []byte
		var ok bool
		if v, ok, err = c.inner.Get(ctx, key); err == nil {
			c.br.ok()
			c.mu.Lock()
			c.m[key] = kvCache{val: bytes.Clone(v), ok: ok}
			c.mu.Unlock()
			return v, ok, nil
		}
		if !c.failed(ctx) {
			return nil, false, err
		}
	}
	c.mu.RLock()
	e, hit := c.m[key]
	c.mu.RUnlock()
	if !hit {
		c.stats.misses.Add(1)
		return nil, false, err
	}
	c.stats.fallbacks.Add(1)
	if !e.ok {
		return nil, false, nil
	}
	return append([]byte{}, e.val...), true, nil
}

// Put stores val in the store and, on success, in the copy.
func (c *CachedKV) Put(ctx context.Context, key string, val []byte) error {
	if err := c.inner.Put(ctx, key, val); err != nil {
		c.failed(ctx)
		return err
	}
	c.br.ok()
	c.mu.Lock()
	c.m[key] = kvCache{val: append([]byte{}, val...), ok: true}
	c.mu.Unlock()
	return nil
}
