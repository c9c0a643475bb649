package presence

import (
	"context"
	"sync"
	"time"
)

var _ Sessions = (*MemorySessions)(nil)

// MemorySessions is the embedded session registry. It is safe for
// concurrent use; the zero value is not usable, call NewMemorySessions.
// Expired sessions are swept in amortized constant time per call.
type MemorySessions struct {
	now func() time.Time
	mu  sync.Mutex // guards m, ops
	m   map[sessionKey]memSession
	ops int // calls since the last sweep
}

type sessionKey struct{ uid, device string }

type memSession struct {
	addr    string
	expires time.Time
}

// NewMemorySessions returns an in-memory session registry.
func NewMemorySessions() *MemorySessions {
	return &MemorySessions{now: time.Now, m: make(map[sessionKey]memSession)}
}

// Claim records addr as the holder of (uid, device) and returns the
// previous live holder ("" if none or addr itself).
func (s *MemorySessions) Claim(ctx context.Context, uid, device, addr string, ttl time.Duration) (string, error) {
	k := sessionKey{uid, device}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)
	prev := ""
	if cur, ok := s.m[k]; ok && now.Before(cur.expires) && cur.addr != addr {
		prev = cur.addr
	}
	s.m[k] = memSession{addr: addr, expires: now.Add(ttl)}
	return prev, nil
}

// Refresh extends addr's hold on (uid, device), or returns ErrNotHolder.
func (s *MemorySessions) Refresh(ctx context.Context, uid, device, addr string, ttl time.Duration) error {
	k := sessionKey{uid, device}
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	s.sweepLocked(now)
	if cur, ok := s.m[k]; ok && now.Before(cur.expires) && cur.addr != addr {
		return ErrNotHolder
	}
	s.m[k] = memSession{addr: addr, expires: now.Add(ttl)}
	return nil
}

// Release removes (uid, device) if addr holds it.
func (s *MemorySessions) Release(ctx context.Context, uid, device, addr string) error {
	k := sessionKey{uid, device}
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur, ok := s.m[k]; ok && cur.addr == addr {
		delete(s.m, k)
	}
	return nil
}

// sweepLocked drops expired sessions once every len(m) calls, which keeps
// the cost per call constant on average. s.mu must be held.
func (s *MemorySessions) sweepLocked(now time.Time) {
	s.ops++
	if s.ops < len(s.m) || s.ops < 64 {
		return
	}
	s.ops = 0
	for k, v := range s.m {
		if !now.Before(v.expires) {
			delete(s.m, k)
		}
	}
}
