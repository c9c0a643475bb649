package presence_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/presence/presencetest"
)

func TestMemoryPresence(t *testing.T) {
	presencetest.RunPresence(t, func(t *testing.T) presence.Presence { return presence.NewMemory() })
}

func TestMemorySessions(t *testing.T) {
	presencetest.RunSessions(t, func(t *testing.T) presence.Sessions { return presence.NewMemorySessions() })
}

func TestMemoryBans(t *testing.T) {
	presencetest.RunBans(t, func(t *testing.T) presence.Bans { return presence.NewMemoryBans() })
}

func TestMemoryKV(t *testing.T) {
	presencetest.RunKV(t, func(t *testing.T) presence.KV { return presence.NewMemoryKV() })
}

func TestMemoryDedupe(t *testing.T) {
	presencetest.RunDedupe(t, func(t *testing.T) presence.Dedupe { return presence.NewMemoryDedupe(0) })
}

func TestMemoryDedupeCap(t *testing.T) {
	ctx := context.Background()
	d := presence.NewMemoryDedupe(100)
	for i := range 1000 {
		if _, dup, err := d.Remember(ctx, string(rune('a'+i%26))+string(rune(i)), []byte("x"), time.Hour); err != nil || dup {
			t.Fatalf("Remember %d = dup %v, err %v", i, dup, err)
		}
		if n := d.Len(); n > 100 {
			t.Fatalf("Len = %d after %d keys, want at most the cap 100", n, i+1)
		}
	}
	// The newest keys are kept, the oldest forgotten.
	last := string(rune('a'+999%26)) + string(rune(999))
	if _, dup, _ := d.Remember(ctx, last, nil, time.Hour); !dup {
		t.Error("the newest key was evicted")
	}
	first := "a" + string(rune(0))
	if _, dup, _ := d.Remember(ctx, first, nil, time.Hour); dup {
		t.Error("the oldest key survived past the cap")
	}
}

func TestMemoryDedupeExpiredDropped(t *testing.T) {
	ctx := context.Background()
	d := presence.NewMemoryDedupe(0)
	for i := range 50 {
		d.Remember(ctx, string(rune('A'+i)), nil, time.Millisecond)
	}
	time.Sleep(5 * time.Millisecond)
	d.Remember(ctx, "fresh", nil, time.Hour)
	if n := d.Len(); n != 1 {
		t.Errorf("Len = %d after the others expired, want 1", n)
	}
}

// TestMemoryDedupeSplit: keys of the minor class live in their own space:
// a flood of them forgets only older ones of their class, never the other
// keys, and the suite holds for a split store too.
func TestMemoryDedupeSplit(t *testing.T) {
	minor := func(key string) bool { return strings.HasSuffix(key, "/minor") }
	presencetest.RunDedupe(t, func(t *testing.T) presence.Dedupe { return presence.NewMemoryDedupe(0).Split(minor, 10) })
	ctx := context.Background()
	d := presence.NewMemoryDedupe(100).Split(minor, 10)
	for i := range 50 {
		d.Remember(ctx, fmt.Sprintf("major%d", i), []byte("x"), time.Hour)
	}
	for i := range 1000 {
		d.Remember(ctx, fmt.Sprintf("k%d/minor", i), []byte("y"), time.Hour)
		if n := d.LenMinor(); n > 10 {
			t.Fatalf("LenMinor = %d after %d minor keys, want at most its cap 10", n, i+1)
		}
	}
	keys := []string{"major0", "major49", "k999/minor", "k0/minor"}
	vals, err := d.Lookup(ctx, keys...)
	if err != nil {
		t.Fatal(err)
	}
	if vals[0] == nil || vals[1] == nil || vals[2] == nil || vals[3] != nil {
		t.Fatalf("after a flood of minor keys: %q = %q", keys, vals)
	}
	if n := d.Len(); n != 60 {
		t.Fatalf("Len = %d, want 50 + 10", n)
	}
}
