package moderation

import (
	"hash/maphash"
	"sync"
	"time"
)

// dupSlots is how many recent texts per user duplicate detection remembers.
const dupSlots = 4

// room is the per-room state. All fields are guarded by mu.
type room struct {
	mu       sync.Mutex
	limits   *limits  // nil = engine defaults
	filters  *filters // nil = none
	explicit bool     // configured through the API; never swept
	users    map[string]*user
	flood    map[uint64]*floodEntry
	bans     map[string]int64 // uid -> until (unix ns); 0 = permanent
	swept    int64            // last sweep (unix ns)
}

// user is one sender's state in one room.
type user struct {
	tokens   float64
	refilled int64 // unix ns of the last bucket update
	lastSent int64 // unix ns of the last message that passed slow mode
	seen     int64 // unix ns of the last message
	dup      [dupSlots]struct {
		h  uint64
		at int64
	}
	dupNext uint8
}

type floodEntry struct {
	first int64
	users []uint64 // hashes of distinct senders, at most floodUsers
}

func newRoom() *room {
	return &room{users: make(map[string]*user), flood: make(map[uint64]*floodEntry), bans: make(map[string]int64)}
}

// banned reports a live room ban. r.mu must be held.
func (r *room) banned(uid string, now int64) (int64, bool) {
	if len(r.bans) == 0 {
		return 0, false
	}
	until, ok := r.bans[uid]
	if !ok {
		return 0, false
	}
	if until != 0 && until <= now {
		delete(r.bans, uid)
		return 0, false
	}
	return until, true
}

// user returns uid's state, creating it. r.mu must be held.
func (r *room) user(e *Engine, uid string, now int64, lim *limits) *user {
	u := r.users[uid]
	if u != nil {
		return u
	}
	if len(r.users) >= e.cfg.MaxUsersPerRoom {
		r.sweepUsers(now, lim)
		for k := range r.users { // still full: drop an arbitrary user
			if len(r.users) < e.cfg.MaxUsersPerRoom {
				break
			}
			delete(r.users, k)
		}
	}
	u = &user{tokens: lim.burst, refilled: now}
	r.users[uid] = u
	return u
}

// limit applies the token bucket and slow mode. r.mu must be held.
func (r *room) limit(e *Engine, uid string, now int64, lim *limits) (Verdict, bool) {
	if lim.rate == 0 && lim.slow == 0 && lim.dupWindow == 0 {
		return Verdict{}, true
	}
	u := r.user(e, uid, now, lim)
	u.seen = now
	if lim.rate > 0 {
		if dt := now - u.refilled; dt > 0 {
			u.tokens = min(lim.burst, u.tokens+float64(dt)/1e9*lim.rate)
			u.refilled = now
		}
		if u.tokens < 1 {
			wait := time.Duration((1 - u.tokens) / lim.rate * 1e9)
			return reject(CodeRateLimited, RuleRateLimit, max(wait, time.Millisecond)), false
		}
		u.tokens--
	}
	if lim.slow > 0 {
		if u.lastSent != 0 && now-u.lastSent < lim.slow {
			return reject(CodeSlowMode, RuleSlowMode, time.Duration(u.lastSent+lim.slow-now)), false
		}
		u.lastSent = now
	}
	return Verdict{}, true
}

// repeat applies duplicate and flood detection and remembers the text.
// r.mu must be held.
func (r *room) repeat(e *Engine, uid string, h uint64, now int64, lim *limits) (Verdict, bool) {
	if lim.dupWindow > 0 {
		u := r.user(e, uid, now, lim)
		for _, d := range u.dup {
			if d.at != 0 && d.h == h && now-d.at < lim.dupWindow {
				return reject(CodeBlocked, RuleDuplicate, 0), false
			}
		}
		u.dup[u.dupNext%dupSlots].h = h
		u.dup[u.dupNext%dupSlots].at = now
		u.dupNext++
	}
	if lim.floodUsers > 0 {
		f := r.flood[h]
		if f != nil && now-f.first >= lim.floodWindow {
			f.first, f.users = now, f.users[:0]
		}
		if f == nil {
			if len(r.flood) >= e.cfg.MaxFloodTexts {
				r.sweepFlood(now, lim)
			}
			if len(r.flood) >= e.cfg.MaxFloodTexts {
				return Verdict{}, true
			}
			f = &floodEntry{first: now, users: make([]uint64, 0, min(lim.floodUsers, 16))}
			r.flood[h] = f
		}
		uh := maphash.String(e.seed, uid)
		seen := false
		for _, x := range f.users {
			if x == uh {
				seen = true
				break
			}
		}
		if !seen && len(f.users) < lim.floodUsers {
			f.users = append(f.users, uh)
		}
		if len(f.users) >= lim.floodUsers {
			if lim.floodReject {
				return reject(CodeBlocked, RuleFlood, 0), false
			}
			return Verdict{Action: Hold, Rule: RuleFlood}, false
		}
	}
	return Verdict{}, true
}

// sweepUsers drops users whose state no longer matters. r.mu must be held.
func (r *room) sweepUsers(now int64, lim *limits) {
	for k, u := range r.users {
		if now-u.seen > lim.idle {
			delete(r.users, k)
		}
	}
}

// sweepFlood drops expired flood entries. r.mu must be held.
func (r *room) sweepFlood(now int64, lim *limits) {
	for k, f := range r.flood {
		if now-f.first >= lim.floodWindow {
			delete(r.flood, k)
		}
	}
}

// sweep drops expired state and reports whether the room is now empty and
// unconfigured. r.mu must be held.
func (r *room) sweep(now int64, def *limits) bool {
	lim := r.limits
	if lim == nil {
		lim = def
	}
	r.sweepUsers(now, lim)
	r.sweepFlood(now, lim)
	for k, until := range r.bans {
		if until != 0 && until <= now {
			delete(r.bans, k)
		}
	}
	r.swept = now
	return !r.explicit && len(r.users) == 0 && len(r.flood) == 0 && len(r.bans) == 0
}

// maybeSweep runs Sweep when SweepInterval has passed since the last one.
// It runs on the calling goroutine; at most one caller sweeps at a time.
func (e *Engine) maybeSweep(now int64) {
	last := e.lastSweep.Load()
	if last == 0 {
		e.lastSweep.CompareAndSwap(0, now)
		return
	}
	if now-last < int64(e.cfg.SweepInterval) || !e.lastSweep.CompareAndSwap(last, now) {
		return
	}
	e.Sweep(time.Unix(0, now))
}

// Sweep drops idle per-user state, expired flood entries and bans, and
// rooms left with no state and no configuration. Check calls it every
// Config.SweepInterval; calling it directly is optional.
func (e *Engine) Sweep(now time.Time) {
	ns := now.UnixNano()
	def := e.defaults.Load()
	for i := range e.shards {
		sh := &e.shards[i]
		sh.mu.Lock()
		for id, r := range sh.rooms {
			r.mu.Lock()
			empty := r.sweep(ns, def)
			r.mu.Unlock()
			if empty {
				delete(sh.rooms, id)
				e.nrooms.Add(-1)
			}
		}
		sh.mu.Unlock()
	}
	e.banMu.Lock()
	for k, until := range e.bans {
		if !until.IsZero() && until.UnixNano() <= ns {
			delete(e.bans, k)
		}
	}
	e.nbans.Store(int64(len(e.bans)))
	e.banMu.Unlock()
}
