package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// flakySessions is a session registry that can be made to hang and fail,
// like a Redis that stopped answering.
type flakySessions struct {
	*presence.MemorySessions
	down atomic.Bool
}

var errRegistryDown = errors.New("registry down")

func (f *flakySessions) Claim(ctx context.Context, uid, device, addr string, ttl time.Duration) (string, error) {
	if f.down.Load() {
		select {
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
		}
		return "", errRegistryDown
	}
	return f.MemorySessions.Claim(ctx, uid, device, addr, ttl)
}

func (f *flakySessions) Refresh(ctx context.Context, uid, device, addr string, ttl time.Duration) error {
	if f.down.Load() {
		return errRegistryDown
	}
	return f.MemorySessions.Refresh(ctx, uid, device, addr, ttl)
}

func deviceTok(t *testing.T, uid, dev string) string {
	t.Helper()
	s, _ := auth.NewSigner(testSecret)
	tok, err := s.SignClaims(auth.Claims{Role: auth.RoleViewer, Device: dev,
		RegisteredClaims: jwt.RegisteredClaims{Subject: uid, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// login connects with uid's token on dev and waits for joined.
func login(t *testing.T, gw *testGW, uid, dev string) *wstest.Conn {
	t.Helper()
	r := dialRaw(t, gw.addr)
	if st := r.Upgrade("/ws?room=s&token="+url.QueryEscape(deviceTok(t, uid, dev)), ""); st != 101 {
		t.Fatalf("upgrade: %d", st)
	}
	r.NextOp(protocol.OpJoined, 2*time.Second)
	return r
}

func expectKick(t *testing.T, r *wstest.Conn) {
	t.Helper()
	if f := r.NextOp(protocol.OpKicked, 3*time.Second); f.Reason != kickReasonElsewhere {
		t.Errorf("kicked reason %q, want %q", f.Reason, kickReasonElsewhere)
	}
	if code := r.CloseCode(2 * time.Second); code != protocol.CloseKicked {
		t.Errorf("close code %d, want %d", code, protocol.CloseKicked)
	}
}

func TestSessions(t *testing.T) {
	t.Run("second login kicks the first", func(t *testing.T) {
		gw := startGW(t, func(c *Config) { c.Sessions = presence.NewMemorySessions() })
		first := login(t, gw, "u1", "phone")
		time.Sleep(100 * time.Millisecond)
		login(t, gw, "u1", "phone")
		expectKick(t, first)
	})
	t.Run("registry down: served at once, claimed when it returns", func(t *testing.T) {
		reg := &flakySessions{MemorySessions: presence.NewMemorySessions()}
		reg.down.Store(true)
		gw := startGW(t, func(c *Config) { c.Sessions = reg })
		start := time.Now()
		first := login(t, gw, "u2", "phone")
		if d := time.Since(start); d > 400*time.Millisecond {
			t.Errorf("join took %v with the registry hanging; the claim must not delay it", d)
		}
		reg.down.Store(false)
		time.Sleep(2 * claimRetry) // the refresher claims for first
		login(t, gw, "u2", "phone")
		expectKick(t, first)
	})
	t.Run("refresh finds a newer holder", func(t *testing.T) {
		reg := presence.NewMemorySessions()
		gw := startGW(t, func(c *Config) { c.Sessions = reg; c.SessionTTL = 300 * time.Millisecond })
		first := login(t, gw, "u3", "phone")
		time.Sleep(50 * time.Millisecond)
		// A login elsewhere whose kick this gateway never saw.
		if _, err := reg.Claim(context.Background(), "u3", "phone", "gw-other/1", time.Minute); err != nil {
			t.Fatal(err)
		}
		expectKick(t, first)
	})
	t.Run("close releases", func(t *testing.T) {
		reg := presence.NewMemorySessions()
		gw := startGW(t, func(c *Config) { c.Sessions = reg })
		first := login(t, gw, "u4", "phone")
		time.Sleep(100 * time.Millisecond)
		first.NetConn().Close()
		deadline := time.Now().Add(2 * time.Second)
		for {
			// Refresh succeeds for a new address only once the session
			// is released.
			if err := reg.Refresh(context.Background(), "u4", "phone", "probe/1", time.Minute); err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("session still held 2s after its connection closed")
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
}

// TestSendRateCapPerConnection: one connection cannot push more sends into
// the pipeline than Config.SendRate allows (each send logic rejects is
// remembered for 10 minutes, so a flood from one connection costs the
// whole pipeline): the sends past its budget are answered unavailable
// with the time until it may send again, and are not forwarded; after that
// time it sends again.
func TestSendRateCapPerConnection(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.SendRate = 5 })
	ingest, err := gw.bus.Consumer(bus.StreamIngest, bus.ConsumerOptions{Group: "logic"})
	if err != nil {
		t.Fatal(err)
	}
	defer ingest.Close()
	forwarded := func() map[string]bool {
		ids := map[string]bool{}
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			recs, err := ingest.Fetch(ctx)
			cancel()
			if err != nil {
				return ids
			}
			for _, r := range recs {
				var in bus.Ingest
				if bus.Unmarshal(r.Value, &in) == nil {
					ids[in.ID] = true
				}
			}
			_ = ingest.Commit(context.Background(), recs...)
		}
	}

	v := dialRaw(t, gw.addr)
	if st := v.Upgrade("/ws?room=sr&token="+token(t, "flooder", "viewer", time.Hour), ""); st != 101 {
		t.Fatal(st)
	}
	v.NextOp(protocol.OpHistory, 5*time.Second)
	const n = 40
	for i := range n {
		if err := v.Send(ws.OpText, fmt.Appendf(nil, `{"op":"send","room":"sr","id":"s%d","text":"hi %d"}`, i, i)); err != nil {
			t.Fatal(err)
		}
	}
	rejected := map[string]bool{}
	var wait int64
	for {
		f, err := v.NextFrame(time.Second)
		if err != nil {
			break
		}
		if f.Op != protocol.OpReject {
			continue
		}
		if f.Code != protocol.CodeUnavailable || f.RetryAfterMs <= 0 || f.RetryAfterMs > 1000 {
			t.Fatalf("a send past the cap answered %+v, want unavailable with retry_after_ms in (0, 1000]", f)
		}
		rejected[f.ID] = true
		wait = max(wait, f.RetryAfterMs)
	}
	fw := forwarded()
	// 5 at once, and one more for each 200 ms the sends took to arrive.
	if len(fw) < 5 || len(fw) > 15 || len(fw)+len(rejected) != n {
		t.Fatalf("%d sends: %d forwarded, %d rejected; want 5 (a few more as the budget refills) forwarded and the rest rejected", n, len(fw), len(rejected))
	}
	for id := range rejected {
		if fw[id] {
			t.Fatalf("send %s both forwarded and rejected", id)
		}
	}
	time.Sleep(time.Duration(wait) * time.Millisecond)
	if err := v.Send(ws.OpText, []byte(`{"op":"send","room":"sr","id":"later","text":"hi","retry":true}`)); err != nil {
		t.Fatal(err)
	}
	if fw := forwarded(); !fw["later"] {
		t.Fatalf("a send after retry_after_ms was not forwarded (%v)", fw)
	}
}
