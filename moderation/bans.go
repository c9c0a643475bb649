package moderation

import (
	"slices"
	"strings"
	"time"
)

// BanEntry is one ban or timeout.
type BanEntry struct {
	UID string `json:"uid"`
	// Until is when the ban ends; zero means permanent.
	Until time.Time `json:"until,omitzero"`
}

// Ban bans uid in the room until the given time (a timeout); a zero until
// bans permanently. Room "" bans in every room. Banning again replaces the
// previous end time.
func (e *Engine) Ban(roomID, uid string, until time.Time) {
	if roomID == "" {
		e.banMu.Lock()
		e.bans[uid] = until
		e.nbans.Store(int64(len(e.bans)))
		e.banMu.Unlock()
		e.log.Info("moderation: global ban", "uid", uid, "until", until)
		return
	}
	r := e.room(roomID, true)
	if r == nil {
		e.log.Warn("moderation: ban dropped, too many rooms", "room", roomID, "uid", uid)
		return
	}
	var ns int64
	if !until.IsZero() {
		ns = until.UnixNano()
	}
	r.mu.Lock()
	r.bans[uid] = ns
	r.mu.Unlock()
	e.log.Info("moderation: ban", "room", roomID, "uid", uid, "until", until)
}

// Unban lifts uid's ban in the room (room "" = the global ban).
func (e *Engine) Unban(roomID, uid string) {
	if roomID == "" {
		e.banMu.Lock()
		delete(e.bans, uid)
		e.nbans.Store(int64(len(e.bans)))
		e.banMu.Unlock()
		return
	}
	if r := e.room(roomID, false); r != nil {
		r.mu.Lock()
		delete(r.bans, uid)
		r.mu.Unlock()
	}
}

// Banned reports whether uid is banned in the room at now, by a room ban or
// a global one, and until when (zero = permanent). Room "" checks only
// global bans.
func (e *Engine) Banned(roomID, uid string, now time.Time) (until time.Time, ok bool) {
	ns := now.UnixNano()
	if u, ok := e.globalBan(uid, ns); ok {
		return nsTime(u), true
	}
	if roomID == "" {
		return time.Time{}, false
	}
	r := e.room(roomID, false)
	if r == nil {
		return time.Time{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if u, ok := r.banned(uid, ns); ok {
		return nsTime(u), true
	}
	return time.Time{}, false
}

// Bans lists the live bans of a room (room "" = global bans), by uid.
func (e *Engine) Bans(roomID string, now time.Time) []BanEntry {
	ns := now.UnixNano()
	var out []BanEntry
	if roomID == "" {
		e.banMu.RLock()
		for uid, until := range e.bans {
			if until.IsZero() || until.UnixNano() > ns {
				out = append(out, BanEntry{UID: uid, Until: until})
			}
		}
		e.banMu.RUnlock()
	} else if r := e.room(roomID, false); r != nil {
		r.mu.Lock()
		for uid, until := range r.bans {
			if until == 0 || until > ns {
				out = append(out, BanEntry{UID: uid, Until: nsTime(until)})
			}
		}
		r.mu.Unlock()
	}
	slices.SortFunc(out, func(a, b BanEntry) int { return strings.Compare(a.UID, b.UID) })
	return out
}

// globalBan reports a live global ban as unix ns (0 = permanent).
func (e *Engine) globalBan(uid string, now int64) (int64, bool) {
	if e.nbans.Load() == 0 {
		return 0, false
	}
	e.banMu.RLock()
	until, ok := e.bans[uid]
	e.banMu.RUnlock()
	if !ok {
		return 0, false
	}
	if until.IsZero() {
		return 0, true
	}
	if u := until.UnixNano(); u > now {
		return u, true
	}
	return 0, false
}

func nsTime(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
