package presence

import (
	"context"
	"sort"
	"sync"
	"time"
)

// Interface guards.
var (
	_ Presence     = (*Memory)(nil)
	_ OnlineManyer = (*Memory)(nil)
)

// Memory is the embedded presence store. It is safe for concurrent use; the
// zero value is not usable, call NewMemory.
type Memory struct {
	now func() time.Time
	mu  sync.Mutex // guards gws
	gws map[string]memReport
}

type memReport struct {
	counts  map[string]int
	expires time.Time
}

// NewMemory returns an in-memory presence store.
func NewMemory() *Memory {
	return &Memory{now: time.Now, gws: make(map[string]memReport)}
}

// Report replaces gateway's counts until ttl passes.
func (m *Memory) Report(ctx context.Context, gateway string, counts map[string]int, ttl time.Duration) error {
	cp := make(map[string]int, len(counts))
	for r, n := range counts {
		if n > 0 {
			cp[r] = n
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.gws[gateway] = memReport{counts: cp, expires: m.now().Add(ttl)}
	return nil
}

// Online sums room's viewers over live gateways.
func (m *Memory) Online(ctx context.Context, room string) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	total := 0
	for gw, rep := range m.gws {
		if now.After(rep.expires) {
			delete(m.gws, gw)
			continue
		}
		total += rep.counts[room]
	}
	return total, nil
}

// OnlineMany sums each room's viewers over live gateways.
func (m *Memory) OnlineMany(ctx context.Context, rooms []string) ([]int, error) {
	out := make([]int, len(rooms))
	m.mu.Lock()
	defer m.mu.Unlock()
	now := m.now()
	for gw, rep := range m.gws {
		if now.After(rep.expires) {
			delete(m.gws, gw)
			continue
		}
		for i, r := range rooms {
			out[i] += rep.counts[r]
		}
	}
	return out, nil
}

// Top returns the n rooms with the most viewers.
func (m *Memory) Top(ctx context.Context, n int) ([]RoomCount, error) {
	m.mu.Lock()
	now := m.now()
	sum := make(map[string]int)
	for gw, rep := range m.gws {
		if now.After(rep.expires) {
			delete(m.gws, gw)
			continue
		}
		for r, c := range rep.counts {
			sum[r] += c
		}
	}
	m.mu.Unlock()
	out := make([]RoomCount, 0, len(sum))
	for r, c := range sum {
		out = append(out, RoomCount{Room: r, Online: c})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Online != out[j].Online {
			return out[i].Online > out[j].Online
		}
		return out[i].Room < out[j].Room
	})
	if n > 0 && len(out) > n {
		out = out[:n]
	}
	return out, nil
}
