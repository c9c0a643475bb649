package redispresence_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

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
