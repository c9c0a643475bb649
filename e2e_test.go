package main

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/app"
	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/client"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

const testSecret = "e2e-test-secret"

// freeAddr returns a free loopback address (see testenv.FreePort).
func freeAddr(t testing.TB) string {
	t.Helper()
	return testenv.FreeAddr(t)
}

// startAll runs `danmaku all` in-process on free ports and returns its
// HTTP and WebSocket addresses; it stops when the test ends.
func startAll(t *testing.T, extra ...string) (httpAddr, wsAddr string) {
	t.Helper()
	httpAddr, wsAddr, _ = startApp(t, extra...)
	return httpAddr, wsAddr
}

// startApp is startAll that also returns a function stopping the app
// early (it is stopped at the end of the test otherwise).
func startApp(t *testing.T, extra ...string) (httpAddr, wsAddr string, stop func()) {
	t.Helper()
	httpAddr, wsAddr = freeAddr(t), freeAddr(t)
	args := append([]string{"--http", httpAddr, "--ws", wsAddr, "--jwt-secret", testSecret, "--demo=false",
		"--log-level", "warn", "--drain-timeout", "2s"}, extra...)
	cfg, err := parseConfig("all", args, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	a, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("app.Run: %v", err)
				}
			case <-time.After(15 * time.Second):
				t.Errorf("app did not stop")
			}
		})
	}
	t.Cleanup(stop)
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + httpAddr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return httpAddr, wsAddr, stop
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("app not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func token(t testing.TB, sub, role string, rooms ...string) string {
	t.Helper()
	s, _ := auth.NewSigner(testSecret)
	tok, err := s.Sign(sub, "name-"+sub, role, rooms, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// recorder collects the messages a client delivers per room.
type recorder struct {
	mu   sync.Mutex
	msgs map[string][]protocol.Message
}

func (r *recorder) add(room string, m protocol.Message) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.msgs == nil {
		r.msgs = make(map[string][]protocol.Message)
	}
	r.msgs[room] = append(r.msgs[room], m)
}

func (r *recorder) get(room string) []protocol.Message {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]protocol.Message(nil), r.msgs[room]...)
}

func TestSmoke(t *testing.T) {
	_, wsAddr := startAll(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var rec recorder
	dialJoined(t, ctx, wsAddr, "", "r1", &rec)
	sender := dialJoined(t, ctx, wsAddr, token(t, "u1", "viewer"), "r1", nil)
	f, err := sender.Send(ctx, "r1", "hello world")
	if err != nil || f.Op != protocol.OpAck || f.Seq != 1 {
		t.Fatalf("send: %+v %v", f, err)
	}
	for ctx.Err() == nil && len(rec.get("r1")) < 1 {
		time.Sleep(10 * time.Millisecond)
	}
	got := rec.get("r1")
	if len(got) != 1 || got[0].Text != "hello world" || got[0].Seq != 1 {
		t.Fatalf("viewer got %+v", got)
	}
}

// dialJoined connects a client to the gateway at wsAddr (tok "" for an
// anonymous viewer), joins room, and closes it when the test ends. With rec
// set, the client records the messages it delivers there.
func dialJoined(t *testing.T, ctx context.Context, wsAddr, tok, room string, rec *recorder) *client.Client {
	t.Helper()
	cfg := client.Config{URL: "ws://" + wsAddr + "/ws", Token: tok}
	if rec != nil {
		cfg.OnMessage = rec.add
	}
	c, err := client.Dial(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if err := c.Join(ctx, room, 0); err != nil {
		t.Fatal(err)
	}
	return c
}
