package presence

import (
	"context"
	"sync"
	"time"
)

var _ Bans = (*MemoryBans)(nil)

// MemoryBans is the embedded ban store. It is safe for concurrent use; the
// zero value is not usable, call NewMemoryBans. Expired bans are dropped
// when a read comes across them.
type MemoryBans struct {
	now func() time.Time
	mu  sync.RWMutex              // guards m
	m   map[string]map[string]Ban // room → uid → ban
}

// NewMemoryBans returns an empty in-memory ban store.
func NewMemoryBans() *MemoryBans {
	return &MemoryBans{now: time.Now, m: make(map[string]map[string]Ban)}
}

// Ban records a ban of uid in room.
func (s *MemoryBans) Ban(ctx context.Context, room, uid string, until time.Time, reason, by string) error {
	b := Ban{Room: room, UID: uid, Until: until, Reason: reason, By: by, At: s.now()}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.m[room]
	if r == nil {
		r = make(map[string]Ban)
		s.m[room] = r
	}
	r[uid] = b
	return nil
}

// Unban lifts uid's ban in room.
func (s *MemoryBans) Unban(ctx context.Context, room, uid string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if r := s.m[room]; r != nil {
		delete(r, uid)
		if len(r) == 0 {
			delete(s.m, room)
		}
	}
	return nil
}

// Banned reports uid's ban in room or globally, whichever ends later.
func (s *MemoryBans) Banned(ctx context.Context, room, uid string) (Ban, bool, error) {
	now := s.now()
	var best Ban
	found, expired := false, false
	s.mu.RLock()
	for i, rm := range [2]string{room, ""} {
		if i == 1 && room == "" {
			break
		}
		b, ok := s.m[rm][uid]
		if !ok {
			continue
		}
		if !b.Active(now) {
			expired = true
			continue
		}
		if !found || b.Outlasts(best) {
			best, found = b, true
		}
	}
	s.mu.RUnlock()
	if expired {
		s.prune(room, now)
		s.prune("", now)
	}
	return best, found, nil
}

// List returns room's bans in force, most recent first.
func (s *MemoryBans) List(ctx context.Context, room string) ([]Ban, error) {
	now := s.now()
	s.prune(room, now)
	s.mu.RLock()
	out := make([]Ban, 0, len(s.m[room]))
	for _, b := range s.m[room] {
		out = append(out, b)
	}
	s.mu.RUnlock()
	SortBans(out)
	return out, nil
}

// prune drops room's expired bans.
func (s *MemoryBans) prune(room string, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := s.m[room]
	for uid, b := range r {
		if !b.Active(now) {
			delete(r, uid)
		}
	}
	if r != nil && len(r) == 0 {
		delete(s.m, room)
	}
}
