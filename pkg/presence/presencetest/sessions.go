package presencetest

import (
	"errors"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/presence"
)

// RunSessions runs the presence.Sessions suite against the registries
// newS returns.
func RunSessions(t *testing.T, newS func(t *testing.T) presence.Sessions) {
	run(t, newS, []testCase[presence.Sessions]{
		{"claim and previous holder", sessionsClaimAndPreviousHolder},
		{"devices and users independent", sessionsDevicesAndUsersIndependent},
		{"release only by holder", sessionsReleaseOnlyByHolder},
		{"refresh", sessionsRefresh},
		{"expiry", sessionsExpiry},
	})
}

// sessionsClaimAndPreviousHolder is the subtest "claim and previous holder".
func sessionsClaimAndPreviousHolder(t *testing.T, s presence.Sessions) {
	if prev := claim(t, s, "u1", "phone", "gw1/1", longTTL); prev != "" {
		t.Errorf("first Claim prev = %q, want empty", prev)
	}
	if prev := claim(t, s, "u1", "phone", "gw1/1", longTTL); prev != "" {
		t.Errorf("Claim by the holder itself prev = %q, want empty", prev)
	}
	if prev := claim(t, s, "u1", "phone", "gw2/7", longTTL); prev != "gw1/1" {
		t.Errorf("second login prev = %q, want gw1/1", prev)
	}
	if prev := claim(t, s, "u1", "phone", "gw3/9", longTTL); prev != "gw2/7" {
		t.Errorf("third login prev = %q, want gw2/7", prev)
	}
}

// sessionsDevicesAndUsersIndependent is the subtest "devices and users independent".
func sessionsDevicesAndUsersIndependent(t *testing.T, s presence.Sessions) {
	claim(t, s, "u1", "phone", "gw1/1", longTTL)
	if prev := claim(t, s, "u1", "web", "gw1/2", longTTL); prev != "" {
		t.Errorf("other device prev = %q, want empty", prev)
	}
	if prev := claim(t, s, "u2", "phone", "gw1/3", longTTL); prev != "" {
		t.Errorf("other user prev = %q, want empty", prev)
	}
	// Keys must not collide when ids contain separators.
	claim(t, s, "a:b", "c", "gw1/4", longTTL)
	if prev := claim(t, s, "a", "b:c", "gw1/5", longTTL); prev != "" {
		t.Errorf("uid/device with separators collided: prev = %q", prev)
	}
}

// sessionsReleaseOnlyByHolder is the subtest "release only by holder".
func sessionsReleaseOnlyByHolder(t *testing.T, s presence.Sessions) {
	claim(t, s, "u1", "phone", "gw1/1", longTTL)
	claim(t, s, "u1", "phone", "gw2/2", longTTL)
	release(t, s, "u1", "phone", "gw1/1") // the replaced connection closes
	if prev := claim(t, s, "u1", "phone", "gw3/3", longTTL); prev != "gw2/2" {
		t.Fatalf("after a release by the old holder prev = %q, want gw2/2", prev)
	}
	release(t, s, "u1", "phone", "gw3/3")
	if prev := claim(t, s, "u1", "phone", "gw4/4", longTTL); prev != "" {
		t.Errorf("after a release by the holder prev = %q, want empty", prev)
	}
	release(t, s, "u9", "none", "gw1/1") // releasing nothing is fine
}

// sessionsRefresh is the subtest "refresh".
func sessionsRefresh(t *testing.T, s presence.Sessions) {
	ctx := ctxFor(t)
	claim(t, s, "u1", "phone", "gw1/1", shortTTL)
	if err := s.Refresh(ctx, "u1", "phone", "gw1/1", longTTL); err != nil {
		t.Fatalf("Refresh by the holder: %v", err)
	}
	time.Sleep(shortTTL + 100*time.Millisecond)
	if prev := claim(t, s, "u1", "phone", "gw2/2", longTTL); prev != "gw1/1" {
		t.Fatalf("after Refresh outlived the first ttl prev = %q, want gw1/1", prev)
	}
	if err := s.Refresh(ctx, "u1", "phone", "gw1/1", longTTL); !errors.Is(err, presence.ErrNotHolder) {
		t.Errorf("Refresh by a replaced holder = %v, want ErrNotHolder", err)
	}
	if prev := claim(t, s, "u1", "phone", "gw3/3", longTTL); prev != "gw2/2" {
		t.Errorf("a failed Refresh changed the holder: prev = %q, want gw2/2", prev)
	}
	if err := s.Refresh(ctx, "u5", "phone", "gw5/5", longTTL); err != nil {
		t.Fatalf("Refresh of a missing session: %v", err)
	}
	if prev := claim(t, s, "u5", "phone", "gw6/6", longTTL); prev != "gw5/5" {
		t.Errorf("Refresh of a missing session did not claim it: prev = %q", prev)
	}
}

// sessionsExpiry is the subtest "expiry".
func sessionsExpiry(t *testing.T, s presence.Sessions) {
	ctx := ctxFor(t)
	claim(t, s, "u1", "phone", "gw1/1", shortTTL)
	if err := s.Refresh(ctx, "u1", "phone", "gw2/2", longTTL); !errors.Is(err, presence.ErrNotHolder) {
		t.Fatalf("Refresh by another before expiry = %v, want ErrNotHolder", err)
	}
	// Once expired, nobody holds it: another address's Refresh takes it.
	eventually(t, "session expires", func() bool {
		err := s.Refresh(ctx, "u1", "phone", "gw2/2", longTTL)
		if err != nil && !errors.Is(err, presence.ErrNotHolder) {
			t.Fatalf("Refresh: %v", err)
		}
		return err == nil
	})
	if prev := claim(t, s, "u1", "phone", "gw3/3", longTTL); prev != "gw2/2" {
		t.Errorf("after expiry prev = %q, want gw2/2", prev)
	}
	// An expired holder is not reported as previous.
	claim(t, s, "u2", "phone", "gw1/1", shortTTL)
	time.Sleep(shortTTL + 200*time.Millisecond)
	if prev := claim(t, s, "u2", "phone", "gw2/2", longTTL); prev != "" {
		t.Errorf("Claim after expiry prev = %q, want empty", prev)
	}
}

func claim(t *testing.T, s presence.Sessions, uid, dev, addr string, ttl time.Duration) string {
	t.Helper()
	prev, err := s.Claim(ctxFor(t), uid, dev, addr, ttl)
	if err != nil {
		t.Fatalf("Claim(%q, %q, %q): %v", uid, dev, addr, err)
	}
	return prev
}

func release(t *testing.T, s presence.Sessions, uid, dev, addr string) {
	t.Helper()
	if err := s.Release(ctxFor(t), uid, dev, addr); err != nil {
		t.Fatalf("Release(%q, %q, %q): %v", uid, dev, addr, err)
	}
}
