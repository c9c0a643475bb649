package presence_test

import (
	"context"
	"errors"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/presence/presencetest"
)

// downPresence fails every call while down is set.
type downPresence struct {
	presence.Presence
	down  atomic.Bool
	calls atomic.Int64
}

var errPresenceDown = errors.New("store down")

func (d *downPresence) Report(ctx context.Context, gw string, counts map[string]int, ttl time.Duration) error {
	d.calls.Add(1)
	if d.down.Load() {
		return errPresenceDown
	}
	return d.Presence.Report(ctx, gw, counts, ttl)
}

func (d *downPresence) Online(ctx context.Context, room string) (int, error) {
	d.calls.Add(1)
	if d.down.Load() {
		return 0, errPresenceDown
	}
	return d.Presence.Online(ctx, room)
}

func (d *downPresence) Top(ctx context.Context, n int) ([]presence.RoomCount, error) {
	d.calls.Add(1)
	if d.down.Load() {
		return nil, errPresenceDown
	}
	return d.Presence.Top(ctx, n)
}

func TestCachedPresenceSuite(t *testing.T) {
	presencetest.RunPresence(t, func(t *testing.T) presence.Presence {
		return presence.NewCachedPresence(presence.NewMemory(), presence.CacheConfig{})
	})
}

func TestCachedPresenceStale(t *testing.T) {
	ctx := context.Background()
	inner := &downPresence{Presence: presence.NewMemory()}
	c := presence.NewCachedPresence(inner, presence.CacheConfig{RetryAfter: 200 * time.Millisecond})
	if err := c.Report(ctx, "gw", map[string]int{"a": 3, "b": 5}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if n, err := c.Online(ctx, "a"); err != nil || n != 3 {
		t.Fatalf("Online(a) = %d, %v; want 3", n, err)
	}
	if ns, err := c.OnlineMany(ctx, []string{"a", "b"}); err != nil || !slices.Equal(ns, []int{3, 5}) {
		t.Fatalf("OnlineMany = %v, %v", ns, err)
	}
	top, err := c.Top(ctx, 10)
	if err != nil || len(top) != 2 {
		t.Fatalf("Top = %v, %v", top, err)
	}

	inner.down.Store(true)
	for _, tc := range []struct {
		name string
		f    func() error
	}{
		{"Online answers the last count", func() error {
			n, err := c.Online(ctx, "a")
			if err != nil || n != 3 {
				return errors.New("want 3 from the copy")
			}
			return nil
		}},
		{"Online of an unknown room fails", func() error {
			if _, err := c.Online(ctx, "never"); err == nil {
				return errors.New("want an error")
			}
			return nil
		}},
		{"Top answers the last list, cut to n", func() error {
			got, err := c.Top(ctx, 1)
			if err != nil || len(got) != 1 || got[0].Room != "b" {
				return errors.New("want [b] from the copy")
			}
			return nil
		}},
		{"Report fails", func() error {
			if err := c.Report(ctx, "gw", map[string]int{"a": 1}, time.Minute); err == nil {
				return errors.New("want an error")
			}
			return nil
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.f(); err != nil {
				t.Error(err)
			}
		})
	}
	if st := c.Stats(); !st.Down || st.Fallbacks == 0 || st.Misses == 0 {
		t.Errorf("stats %+v: want down, fallbacks and misses", st)
	}
	// While skipped, calls do not reach the store.
	before := inner.calls.Load()
	for range 10 {
		_, _ = c.Online(ctx, "a")
	}
	if inner.calls.Load() != before {
		t.Errorf("%d calls reached a store being skipped", inner.calls.Load()-before)
	}

	inner.down.Store(false)
	time.Sleep(250 * time.Millisecond)
	if err := c.Report(ctx, "gw", map[string]int{"a": 7}, time.Minute); err != nil {
		t.Fatalf("Report after the store returned: %v", err)
	}
	if n, err := c.Online(ctx, "a"); err != nil || n != 7 {
		t.Errorf("Online(a) after recovery = %d, %v; want 7", n, err)
	}
	if c.Stats().Down {
		t.Error("still down after a successful call")
	}
}

// gatedPresence counts Top calls and holds each until gate is closed.
type gatedPresence struct {
	presence.Presence
	gate  chan struct{}
	calls atomic.Int64
	asked atomic.Int64 // the last call's n
}

func (g *gatedPresence) Top(ctx context.Context, n int) ([]presence.RoomCount, error) {
	g.calls.Add(1)
	g.asked.Store(int64(n))
	<-g.gate
	return g.Presence.Top(ctx, n)
}

// TestCachedPresenceTopFresh: callers that arrive while a Top store call
// is under way take its answer (one call for many); within TopFresh a
// covered Top asks nothing; a call for fewer rooms after one for more is
// covered, and the store is then asked for as many as before; a negative
// TopFresh asks every time.
func TestCachedPresenceTopFresh(t *testing.T) {
	ctx := context.Background()
	mem := presence.NewMemory()
	if err := mem.Report(ctx, "gw", map[string]int{"a": 3, "b": 5, "c": 1}, time.Minute); err != nil {
		t.Fatal(err)
	}
	inner := &gatedPresence{Presence: mem, gate: make(chan struct{})}
	c := presence.NewCachedPresence(inner, presence.CacheConfig{TopFresh: time.Hour})
	const callers = 20
	errs := make(chan error, callers)
	for range callers {
		go func() {
			top, err := c.Top(ctx, 2)
			if err == nil && (len(top) != 2 || top[0].Room != "b") {
				err = errors.New("wrong answer")
			}
			errs <- err
		}()
	}
	for inner.calls.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	close(inner.gate)
	for range callers {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if n := inner.calls.Load(); n != 1 {
		t.Errorf("%d callers at once: %d store calls, want 1", callers, n)
	}
	if top, err := c.Top(ctx, 1); err != nil || len(top) != 1 || inner.calls.Load() != 1 {
		t.Errorf("Top(1) within TopFresh: %v, %v, %d store calls, want the copy", top, err, inner.calls.Load())
	}
	if _, err := c.Top(ctx, 10); err != nil || inner.calls.Load() != 2 {
		t.Errorf("Top(10) after Top(2): %v, %d store calls, want a new one", err, inner.calls.Load())
	}
	if top, err := c.Top(ctx, 2); err != nil || len(top) != 2 || inner.calls.Load() != 2 {
		t.Errorf("Top(2) after Top(10): %v, %v, %d store calls, want the copy", top, err, inner.calls.Load())
	}

	every := presence.NewCachedPresence(inner, presence.CacheConfig{TopFresh: -1})
	for range 3 {
		if _, err := every.Top(ctx, 10); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := every.Top(ctx, 2); err != nil {
		t.Fatal(err)
	}
	if n := inner.calls.Load(); n != 6 || inner.asked.Load() != 10 {
		t.Errorf("TopFresh -1: %d store calls (want 6), the last for %d rooms (want 10: what the copy covered)", n, inner.asked.Load())
	}
}
