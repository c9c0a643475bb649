package gateway

import (
	"context"
	"errors"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/protocol"
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
