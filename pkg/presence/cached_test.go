package presence_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/presence/presencetest"
)

var errDown = errors.New("test: store down")

// flaky wraps the memory stores and fails every call while down is set.
type flaky struct {
	down  atomic.Bool
	calls atomic.Int64
	bans  *presence.MemoryBans
	kv    *presence.MemoryKV
}

func newFlaky() *flaky {
	return &flaky{bans: presence.NewMemoryBans(), kv: presence.NewMemoryKV()}
}

func (f *flaky) check() error {
	f.calls.Add(1)
	if f.down.Load() {
		return errDown
	}
	return nil
}

func (f *flaky) Ban(ctx context.Context, room, uid string, until time.Time, reason, by string) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.bans.Ban(ctx, room, uid, until, reason, by)
}

func (f *flaky) Unban(ctx context.Context, room, uid string) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.bans.Unban(ctx, room, uid)
}

func (f *flaky) Banned(ctx context.Context, room, uid string) (presence.Ban, bool, error) {
	if err := f.check(); err != nil {
		return presence.Ban{}, false, err
	}
	return f.bans.Banned(ctx, room, uid)
}

func (f *flaky) List(ctx context.Context, room string) ([]presence.Ban, error) {
	if err := f.check(); err != nil {
		return nil, err
	}
	return f.bans.List(ctx, room)
}

func (f *flaky) Get(ctx context.Context, key string) ([]byte, bool, error) {
	if err := f.check(); err != nil {
		return nil, false, err
	}
	return f.kv.Get(ctx, key)
}

func (f *flaky) Put(ctx context.Context, key string, val []byte) error {
	if err := f.check(); err != nil {
		return err
	}
	return f.kv.Put(ctx, key, val)
}

// The wrappers are full implementations while the store is up.
func TestCachedSuites(t *testing.T) {
	presencetest.RunBans(t, func(t *testing.T) presence.Bans {
		return presence.NewCachedBans(presence.NewMemoryBans(), presence.CacheConfig{})
	})
	presencetest.RunKV(t, func(t *testing.T) presence.KV {
		return presence.NewCachedKV(presence.NewMemoryKV(), presence.CacheConfig{})
	})
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(2 * time.Second); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func TestCachedBansFallback(t *testing.T) {
	ctx := context.Background()
	f := newFlaky()
	// Bans issued elsewhere before the wrapper starts: only a List reload
	// can teach them.
	f.bans.Ban(ctx, "r1", "listed", time.Time{}, "pre", "mod")
	f.bans.Ban(ctx, "", "global", time.Time{}, "pre", "mod")
	f.bans.Ban(ctx, "r1", "short", time.Now().Add(150*time.Millisecond), "timeout", "mod")
	c := presence.NewCachedBans(f, presence.CacheConfig{RetryAfter: 100 * time.Millisecond})

	if err := c.Ban(ctx, "r1", "seen", time.Time{}, "spam", "mod"); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Banned(ctx, "r1", "someone"); err != nil || ok {
		t.Fatalf("Banned(someone) = %v, %v while up", ok, err)
	}
	// Load the lists deterministically; TestCachedBansReload covers the
	// background reload that Banned starts.
	for _, room := range []string{"r1", ""} {
		if _, err := c.List(ctx, room); err != nil {
			t.Fatal(err)
		}
	}

	f.down.Store(true)
	tests := []struct {
		name, room, uid string
		want            bool
		wantReason      string
	}{
		{"ban issued through the wrapper", "r1", "seen", true, "spam"},
		{"ban learnt from the room list", "r1", "listed", true, "pre"},
		{"global ban learnt from the global list", "r1", "global", true, "pre"},
		{"user not in a loaded list", "r1", "clean", false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, ok, err := c.Banned(ctx, tt.room, tt.uid)
			if err != nil {
				t.Fatalf("Banned while down: %v", err)
			}
			if ok != tt.want || b.Reason != tt.wantReason {
				t.Errorf("Banned = %+v, %v; want %v reason %q", b, ok, tt.want, tt.wantReason)
			}
		})
	}
	t.Run("timeout ends while down", func(t *testing.T) {
		waitFor(t, "cached timeout to end", func() bool {
			_, ok, err := c.Banned(ctx, "r1", "short")
			return err == nil && !ok
		})
	})
	t.Run("room never loaded", func(t *testing.T) {
		_, _, err := c.Banned(ctx, "r-unknown", "u")
		if err == nil {
			t.Fatal("Banned in a room never loaded answered while down")
		}
	})
	t.Run("write fails while down", func(t *testing.T) {
		if err := c.Ban(ctx, "r1", "x", time.Time{}, "", ""); !errors.Is(err, errDown) {
			t.Errorf("Ban while down = %v, want the store's error", err)
		}
	})
	t.Run("breaker skips the store", func(t *testing.T) {
		c.Banned(ctx, "r1", "seen") // ensure the breaker is open
		before := f.calls.Load()
		for range 50 {
			c.Banned(ctx, "r1", "seen")
		}
		if n := f.calls.Load() - before; n > 2 {
			t.Errorf("%d calls reached a down store in 50 quick Banned calls, want at most 2", n)
		}
	})
	st := c.Stats()
	if st.Errors == 0 || st.Fallbacks < 4 || st.Misses == 0 || !st.Down {
		t.Errorf("Stats = %+v, want errors, fallbacks, misses and down", st)
	}

	// Recovery: a ban lifted elsewhere while down shows once the store is back.
	f.bans.Unban(ctx, "r1", "seen")
	f.down.Store(false)
	waitFor(t, "recovery", func() bool {
		_, ok, err := c.Banned(ctx, "r1", "seen")
		return err == nil && !ok && !c.Stats().Down
	})
	// And the copy learnt it: down again, the lifted ban stays lifted.
	f.down.Store(true)
	if _, ok, err := c.Banned(ctx, "r1", "seen"); err != nil || ok {
		t.Errorf("after recovery then down: Banned = %v, %v; want false, nil", ok, err)
	}
}

func TestCachedBansReload(t *testing.T) {
	ctx := context.Background()
	f := newFlaky()
	f.bans.Ban(ctx, "r1", "listed", time.Time{}, "pre", "mod")
	f.bans.Ban(ctx, "", "global", time.Time{}, "pre", "mod")
	c := presence.NewCachedBans(f, presence.CacheConfig{})
	if _, ok, err := c.Banned(ctx, "r1", "someone"); err != nil || ok {
		t.Fatalf("Banned = %v, %v", ok, err)
	}
	// One Banned plus a List of r1 and of the global room.
	waitFor(t, "background reloads", func() bool { return f.calls.Load() >= 3 })
	time.Sleep(100 * time.Millisecond) // let the reloads store their lists
	if n := f.calls.Load(); n != 3 {
		t.Errorf("%d calls to the store, want 3 (Banned, List r1, List global)", n)
	}
	c.Banned(ctx, "r1", "someone") // lists are fresh: no reload
	if n := f.calls.Load(); n != 4 {
		t.Errorf("%d calls after a second Banned, want 4 (no reload within Refresh)", n)
	}
	f.down.Store(true)
	for _, uid := range []string{"listed", "global"} {
		if _, ok, err := c.Banned(ctx, "r1", uid); err != nil || !ok {
			t.Errorf("Banned(%s) while down = %v, %v; want the reloaded ban", uid, ok, err)
		}
	}
}

func TestCachedKVFallback(t *testing.T) {
	ctx := context.Background()
	f := newFlaky()
	c := presence.NewCachedKV(f, presence.CacheConfig{RetryAfter: 50 * time.Millisecond})
	f.kv.Put(ctx, "read", []byte("v1"))
	if _, _, err := c.Get(ctx, "read"); err != nil {
		t.Fatal(err)
	}
	if err := c.Put(ctx, "written", []byte("w1")); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := c.Get(ctx, "absent"); ok {
		t.Fatal("absent key found")
	}
	f.down.Store(true)
	tests := []struct {
		key     string
		want    string
		wantOK  bool
		wantErr bool
	}{
		{"read", "v1", true, false},
		{"written", "w1", true, false},
		{"absent", "", false, false},
		{"never-read", "", false, true},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			v, ok, err := c.Get(ctx, tt.key)
			if (err != nil) != tt.wantErr || ok != tt.wantOK || string(v) != tt.want {
				t.Errorf("Get = %q, %v, %v; want %q, %v, err %v", v, ok, err, tt.want, tt.wantOK, tt.wantErr)
			}
		})
	}
	if err := c.Put(ctx, "read", []byte("v2")); err == nil {
		t.Error("Put while down succeeded")
	}
	if v, _, _ := c.Get(ctx, "read"); string(v) != "v1" {
		t.Errorf("a failed Put changed the copy: %q", v)
	}
	if st := c.Stats(); st.Errors == 0 || st.Fallbacks < 3 || st.Misses != 1 {
		t.Errorf("Stats = %+v", st)
	}
	f.kv.Put(ctx, "read", []byte("v3"))
	f.down.Store(false)
	waitFor(t, "recovery", func() bool {
		v, _, err := c.Get(ctx, "read")
		return err == nil && string(v) == "v3"
	})
}
