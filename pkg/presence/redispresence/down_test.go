package redispresence_test

import (
	"context"
	"errors"
	"io"
	"net"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/presence/redispresence"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// calls returns one call of every method, by name.
func calls(c *redispresence.Client) map[string]func(ctx context.Context) error {
	return map[string]func(ctx context.Context) error{
		"Report":  func(ctx context.Context) error { return c.Report(ctx, "gw", map[string]int{"r": 1}, time.Second) },
		"Online":  func(ctx context.Context) error { _, err := c.Online(ctx, "r"); return err },
		"Top":     func(ctx context.Context) error { _, err := c.Top(ctx, 10); return err },
		"Claim":   func(ctx context.Context) error { _, err := c.Claim(ctx, "u", "d", "gw/1", time.Second); return err },
		"Refresh": func(ctx context.Context) error { return c.Refresh(ctx, "u", "d", "gw/1", time.Second) },
		"Release": func(ctx context.Context) error { return c.Release(ctx, "u", "d", "gw/1") },
		"Ban":     func(ctx context.Context) error { return c.Ban(ctx, "r", "u", time.Time{}, "", "") },
		"Unban":   func(ctx context.Context) error { return c.Unban(ctx, "r", "u") },
		"Banned":  func(ctx context.Context) error { _, _, err := c.Banned(ctx, "r", "u"); return err },
		"List":    func(ctx context.Context) error { _, err := c.List(ctx, "r"); return err },
		"Get":     func(ctx context.Context) error { _, _, err := c.Get(ctx, "k"); return err },
		"Put":     func(ctx context.Context) error { return c.Put(ctx, "k", []byte("v")) },
		"Remember": func(ctx context.Context) error {
			_, _, err := c.Remember(ctx, "k", []byte("v"), time.Second)
			return err
		},
	}
}

// checkFailFast makes every call against c, concurrently, twice (the
// second round meets whatever the first left in the pool), and requires
// each to fail within limit.
func checkFailFast(t *testing.T, c *redispresence.Client, limit time.Duration) {
	t.Helper()
	for round := range 2 {
		var wg sync.WaitGroup
		for name, call := range calls(c) {
			wg.Go(func() {
				start := time.Now()
				err := call(context.Background())
				if d := time.Since(start); err == nil || d > limit {
					t.Errorf("round %d: %s = %v after %v, want an error within %v", round, name, err, d, limit)
				}
			})
		}
		wg.Wait()
	}
}

func TestNewFailsWithoutRedis(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	start := time.Now()
	_, err := redispresence.New(context.Background(), redispresence.Config{Addr: addr})
	if err == nil {
		t.Fatal("New succeeded against a closed port")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("New took %v to fail, want under 1s", d)
	}
	if _, err := redispresence.New(context.Background(), redispresence.Config{}); !errors.Is(err, redispresence.ErrNoAddr) {
		t.Errorf("New without an address = %v, want ErrNoAddr", err)
	}
}

func TestClosedPortFailsFast(t *testing.T) {
	addr := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	c, err := redispresence.New(context.Background(), redispresence.Config{Addr: addr, NoPing: true})
	if err != nil {
		t.Fatalf("New with NoPing: %v", err)
	}
	defer c.Close()
	checkFailFast(t, c, time.Second)
}

// A server that accepts connections and never answers: only the read
// timeout ends each call.
func TestSilentServerFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			cn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, cn)
			mu.Unlock()
			go io.Copy(io.Discard, cn)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, cn := range conns {
			cn.Close()
		}
		mu.Unlock()
	})
	c, err := redispresence.New(context.Background(), redispresence.Config{Addr: ln.Addr().String(), NoPing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	checkFailFast(t, c, time.Second)
}

// proxy forwards TCP connections to a Redis and can be cut off and
// restored on the same address, to take Redis "down" under a live client.
type proxy struct {
	t      *testing.T
	target string
	addr   string

	mu    sync.Mutex
	ln    net.Listener
	conns map[net.Conn]struct{}
}

func newProxy(t *testing.T, target string) *proxy {
	p := &proxy{t: t, target: target, addr: "127.0.0.1:0", conns: make(map[net.Conn]struct{})}
	p.start()
	t.Cleanup(p.stop)
	return p
}

func (p *proxy) start() {
	ln, err := net.Listen("tcp", p.addr)
	if err != nil {
		p.t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	p.mu.Unlock()
	go func() {
		for {
			cn, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", p.target)
			if err != nil {
				cn.Close()
				continue
			}
			p.mu.Lock()
			p.conns[cn], p.conns[up] = struct{}{}, struct{}{}
			p.mu.Unlock()
			go func() { io.Copy(up, cn); up.Close() }()
			go func() { io.Copy(cn, up); cn.Close() }()
		}
	}()
}

// stop closes the listener and every forwarded connection.
func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln != nil {
		p.ln.Close()
		p.ln = nil
	}
	for cn := range p.conns {
		cn.Close()
		delete(p.conns, cn)
	}
}

// Redis goes down under live clients: calls fail fast, the cached
// wrappers answer from their copies, and everything recovers without a
// new client once Redis is back.
func TestRedisDownAndBack(t *testing.T) {
	target := testenv.Addr(t, testenv.Redis)
	p := newProxy(t, target)
	ctx := context.Background()
	direct := newClient(t) // unaffected by the proxy, for setting up state
	prefix := "danmaku-test:down:" + strconv.FormatInt(time.Now().UnixNano(), 36) + ":"
	c, err := redispresence.New(ctx, redispresence.Config{Addr: p.addr, Prefix: prefix})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	t.Cleanup(func() {
		rdb := direct.Redis()
		iter := rdb.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			rdb.Del(ctx, iter.Val())
		}
	})
	bans := presence.NewCachedBans(c, presence.CacheConfig{RetryAfter: 200 * time.Millisecond})
	kv := presence.NewCachedKV(c, presence.CacheConfig{RetryAfter: 200 * time.Millisecond})

	if err := bans.Ban(ctx, "r1", "troll", time.Time{}, "spam", "mod"); err != nil {
		t.Fatal(err)
	}
	if err := kv.Put(ctx, "room:r1:settings", []byte(`{"slow":3}`)); err != nil {
		t.Fatal(err)
	}
	for _, room := range []string{"r1", ""} {
		if _, err := bans.List(ctx, room); err != nil {
			t.Fatal(err)
		}
	}

	p.stop()
	checkFailFast(t, c, time.Second)
	start := time.Now()
	for range 20 {
		if _, ok, err := bans.Banned(ctx, "r1", "troll"); err != nil || !ok {
			t.Fatalf("cached Banned(troll) while down = %v, %v; want banned from the copy", ok, err)
		}
		if _, ok, err := bans.Banned(ctx, "r1", "viewer"); err != nil || ok {
			t.Fatalf("cached Banned(viewer) while down = %v, %v; want not banned", ok, err)
		}
		if v, ok, err := kv.Get(ctx, "room:r1:settings"); err != nil || !ok || string(v) != `{"slow":3}` {
			t.Fatalf("cached Get while down = %q, %v, %v", v, ok, err)
		}
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("60 cached calls while down took %v: the breaker should skip the dead store", d)
	}
	if st := bans.Stats(); st.Errors == 0 || st.Fallbacks == 0 || !st.Down {
		t.Errorf("ban cache stats while down = %+v", st)
	}

	p.start() // same address
	waitUp := time.Now().Add(5 * time.Second)
	for {
		_, err := c.Online(ctx, "r1")
		if err == nil {
			break
		}
		if time.Now().After(waitUp) {
			t.Fatalf("client did not recover after Redis came back: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := bans.Unban(ctx, "r1", "troll"); err != nil {
		t.Fatalf("Unban after recovery: %v", err)
	}
	if _, ok, err := bans.Banned(ctx, "r1", "troll"); err != nil || ok {
		t.Errorf("Banned after recovery and Unban = %v, %v", ok, err)
	}
}
