package gateway

import (
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// TestObserverNotCounted checks that a moderator watching with observe=1
// (the dashboard) is not counted in the room's online count, while the
// same flag from a viewer, or a mod of another room, is ignored.
func TestObserverNotCounted(t *testing.T) {
	gw := startGW(t, nil)
	signer, _ := auth.NewSigner(testSecret)
	mod, err := signer.Sign("mod-1", "Mod", auth.RoleMod, []string{"watched"}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	joinedOnline := func(path string) int {
		t.Helper()
		r := dialRaw(t, gw.addr)
		if st := r.Upgrade(path, ""); st != 101 {
			t.Fatalf("%s: status %d", path, st)
		}
		return r.NextOp(protocol.OpJoined, 2*time.Second).Online
	}
	if n := joinedOnline("/ws?room=watched&observe=1&token=" + mod); n != 0 {
		t.Fatalf("observing mod alone: online %d, want 0", n)
	}
	if n := joinedOnline("/ws?room=watched&observe=1&token=" + token(t, "v1", auth.RoleViewer, time.Hour)); n != 1 {
		t.Fatalf("a viewer asking observe=1 is counted: online %d, want 1", n)
	}
	if n := joinedOnline("/ws?room=watched&observe=1"); n != 2 {
		t.Fatalf("an anonymous viewer asking observe=1 is counted: online %d, want 2", n)
	}
	if n := joinedOnline("/ws?room=watched&token=" + mod); n != 3 {
		t.Fatalf("a mod without observe=1 is counted: online %d, want 3", n)
	}
	if n := joinedOnline("/ws?room=other&observe=1&token=" + mod); n != 1 {
		t.Fatalf("a mod observing a room it does not moderate is counted: online %d, want 1", n)
	}
}
