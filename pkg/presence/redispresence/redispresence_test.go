package redispresence_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strconv"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/presence/presencetest"
	"github.com/danmaku-live/danmaku/pkg/presence/redispresence"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// uniquePrefix returns a key prefix no other test uses.
func uniquePrefix() string {
	var b [6]byte
	rand.Read(b[:])
	return "danmaku-test:" + hex.EncodeToString(b[:]) + ":"
}

// newClient connects to the test Redis under a fresh prefix and deletes
// the prefix's keys when t ends.
func newClient(t testing.TB) *redispresence.Client {
	t.Helper()
	addr := testenv.Addr(t, testenv.Redis)
	cfg := redispresence.Config{Addr: addr, Prefix: uniquePrefix()}
	c, err := redispresence.New(context.Background(), cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		ctx := context.Background()
		rdb := c.Redis()
		iter := rdb.Scan(ctx, 0, cfg.Prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
		c.Close()
	})
	return c
}

func TestPresence(t *testing.T) {
	presencetest.RunPresence(t, func(t *testing.T) presence.Presence { return newClient(t) })
}

func TestSessions(t *testing.T) {
	presencetest.RunSessions(t, func(t *testing.T) presence.Sessions { return newClient(t) })
}

func TestBans(t *testing.T) {
	presencetest.RunBans(t, func(t *testing.T) presence.Bans { return newClient(t) })
}

func TestKV(t *testing.T) {
	presencetest.RunKV(t, func(t *testing.T) presence.KV { return newClient(t) })
}

func TestDedupe(t *testing.T) {
	presencetest.RunDedupe(t, func(t *testing.T) presence.Dedupe { return newClient(t) })
}

// A report larger than one HSET batch of the script (500 rooms) keeps
// every room.
func TestReportManyRooms(t *testing.T) {
	c := newClient(t)
	ctx := context.Background()
	counts := make(map[string]int, 1501)
	for i := range 1501 {
		counts["room-"+strconv.Itoa(i)] = i + 1
	}
	if err := c.Report(ctx, "gw", counts, time.Minute); err != nil {
		t.Fatal(err)
	}
	for _, i := range []int{0, 499, 500, 999, 1000, 1500} {
		room := "room-" + strconv.Itoa(i)
		if n, err := c.Online(ctx, room); err != nil || n != i+1 {
			t.Errorf("Online(%s) = %d, %v; want %d", room, n, err, i+1)
		}
	}
	top, err := c.Top(ctx, 0)
	if err != nil || len(top) != 1501 || top[0] != (presence.RoomCount{Room: "room-1500", Online: 1501}) {
		t.Errorf("Top(0) = %d rooms (first %v), %v; want 1501 led by room-1500", len(top), top[:min(1, len(top))], err)
	}
}

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		name string
		cfg  redispresence.Config
		ok   bool
	}{
		{"minimal", redispresence.Config{Addr: "127.0.0.1:6379"}, true},
		{"no address", redispresence.Config{}, false},
		{"negative timeout", redispresence.Config{Addr: "x:1", ReadTimeout: -1}, false},
		{"negative pool", redispresence.Config{Addr: "x:1", PoolSize: -1}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.cfg.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate = %v, want ok %v", err, tt.ok)
			}
		})
	}
}
