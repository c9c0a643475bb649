package presencetest

import (
	"slices"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/presence"
)

// RunBans runs the presence.Bans suite against the stores newB returns.
func RunBans(t *testing.T, newB func(t *testing.T) presence.Bans) {
	run(t, newB, []testCase[presence.Bans]{
		{"not banned", bansNotBanned},
		{"room ban fields", bansRoomBanFields},
		{"permanent and global", bansPermanentAndGlobal},
		{"room and global: the later wins", bansRoomAndGlobalTheLaterWins},
		{"timeout expires", bansTimeoutExpires},
		{"unban", bansUnban},
		{"list", bansList},
	})
}

// bansNotBanned is the subtest "not banned".
func bansNotBanned(t *testing.T, s presence.Bans) {
	if b, ok := banned(t, s, "r1", "u1"); ok {
		t.Errorf("Banned on an empty store = %+v", b)
	}
	if bs := list(t, s, "r1"); len(bs) != 0 {
		t.Errorf("List on an empty store = %v", bs)
	}
}

// bansRoomBanFields is the subtest "room ban fields".
func bansRoomBanFields(t *testing.T, s presence.Bans) {
	before := time.Now().Add(-time.Second)
	until := time.Now().Add(time.Hour).Truncate(time.Millisecond)
	ban(t, s, "r1", "u1", until, "spam")
	b, ok := banned(t, s, "r1", "u1")
	if !ok {
		t.Fatal("Banned after Ban = false")
	}
	if b.Room != "r1" || b.UID != "u1" || b.Reason != "spam" || b.By != "mod1" || !b.Until.Equal(until) {
		t.Errorf("Banned = %+v, want room r1 uid u1 reason spam by mod1 until %v", b, until)
	}
	if b.At.Before(before) || b.At.After(time.Now().Add(time.Second)) {
		t.Errorf("At = %v, want about now", b.At)
	}
	if _, ok := banned(t, s, "r2", "u1"); ok {
		t.Error("a ban in r1 applies in r2")
	}
	if _, ok := banned(t, s, "", "u1"); ok {
		t.Error("a ban in r1 reads as global")
	}
	if _, ok := banned(t, s, "r1", "u2"); ok {
		t.Error("a ban of u1 applies to u2")
	}
}

// bansPermanentAndGlobal is the subtest "permanent and global".
func bansPermanentAndGlobal(t *testing.T, s presence.Bans) {
	ban(t, s, "", "u1", time.Time{}, "global")
	for _, room := range []string{"r1", "r2", ""} {
		b, ok := banned(t, s, room, "u1")
		if !ok || b.Room != "" || !b.Until.IsZero() || b.Reason != "global" {
			t.Errorf("Banned(%q, u1) = %+v, %v; want the permanent global ban", room, b, ok)
		}
	}
}

// bansRoomAndGlobalTheLaterWins is the subtest "room and global: the later wins".
func bansRoomAndGlobalTheLaterWins(t *testing.T, s presence.Bans) {
	ban(t, s, "r1", "u1", time.Now().Add(time.Hour), "room")
	ban(t, s, "", "u1", time.Now().Add(10*time.Minute), "global")
	if b, _ := banned(t, s, "r1", "u1"); b.Reason != "room" {
		t.Errorf("Banned = %+v, want the room ban (ends later)", b)
	}
	if b, _ := banned(t, s, "r2", "u1"); b.Reason != "global" {
		t.Errorf("Banned in r2 = %+v, want the global ban", b)
	}
	ban(t, s, "", "u1", time.Time{}, "global forever")
	if b, _ := banned(t, s, "r1", "u1"); b.Reason != "global forever" {
		t.Errorf("Banned = %+v, want the permanent global ban", b)
	}
}

// bansTimeoutExpires is the subtest "timeout expires".
func bansTimeoutExpires(t *testing.T, s presence.Bans) {
	ban(t, s, "r1", "u1", time.Now().Add(shortTTL), "timeout")
	ban(t, s, "r1", "u2", time.Now().Add(longTTL), "longer")
	ban(t, s, "r1", "u3", time.Now().Add(-time.Second), "already over")
	if _, ok := banned(t, s, "r1", "u1"); !ok {
		t.Fatal("a timeout is not in force before it ends")
	}
	if _, ok := banned(t, s, "r1", "u3"); ok {
		t.Error("a ban that ended in the past is in force")
	}
	eventually(t, "timeout ends", func() bool { _, ok := banned(t, s, "r1", "u1"); return !ok })
	if got := uids(list(t, s, "r1")); len(got) != 1 || got[0] != "u2" {
		t.Errorf("List after the timeout ended = %v, want [u2]", got)
	}
}

// bansUnban is the subtest "unban".
func bansUnban(t *testing.T, s presence.Bans) {
	ctx := ctxFor(t)
	ban(t, s, "r1", "u1", time.Time{}, "room")
	ban(t, s, "", "u2", time.Time{}, "global")
	if err := s.Unban(ctx, "", "u1"); err != nil {
		t.Fatal(err)
	}
	if _, ok := banned(t, s, "r1", "u1"); !ok {
		t.Error("a global Unban lifted a room ban")
	}
	if err := s.Unban(ctx, "r1", "u2"); err != nil {
		t.Fatal(err)
	}
	if _, ok := banned(t, s, "r1", "u2"); !ok {
		t.Error("a room Unban lifted a global ban")
	}
	for _, u := range [][2]string{{"r1", "u1"}, {"", "u2"}, {"r7", "nobody"}} {
		if err := s.Unban(ctx, u[0], u[1]); err != nil {
			t.Fatalf("Unban(%q, %q): %v", u[0], u[1], err)
		}
	}
	if _, ok := banned(t, s, "r1", "u1"); ok {
		t.Error("room ban still in force after Unban")
	}
	if _, ok := banned(t, s, "r1", "u2"); ok {
		t.Error("global ban still in force after Unban")
	}
}

// bansList is the subtest "list".
func bansList(t *testing.T, s presence.Bans) {
	for _, u := range []string{"u1", "u2", "u3"} {
		ban(t, s, "r1", u, time.Now().Add(time.Hour), "r")
		time.Sleep(2 * time.Millisecond) // distinct At
	}
	ban(t, s, "r1", "u1", time.Time{}, "again") // replaces, now most recent
	ban(t, s, "r2", "u4", time.Time{}, "other room")
	ban(t, s, "", "u5", time.Time{}, "global")
	got := list(t, s, "r1")
	if g, want := uids(got), []string{"u1", "u3", "u2"}; !slices.Equal(g, want) {
		t.Errorf("List(r1) = %v, want %v (most recent first)", g, want)
	}
	if len(got) > 0 && got[0].Reason != "again" {
		t.Errorf("List(r1)[0] = %+v, want the replacing ban", got[0])
	}
	if g := uids(list(t, s, "")); !slices.Equal(g, []string{"u5"}) {
		t.Errorf("List(\"\") = %v, want [u5]", g)
	}
}

func ban(t *testing.T, s presence.Bans, room, uid string, until time.Time, reason string) {
	t.Helper()
	if err := s.Ban(ctxFor(t), room, uid, until, reason, "mod1"); err != nil {
		t.Fatalf("Ban(%q, %q): %v", room, uid, err)
	}
}

func banned(t *testing.T, s presence.Bans, room, uid string) (presence.Ban, bool) {
	t.Helper()
	b, ok, err := s.Banned(ctxFor(t), room, uid)
	if err != nil {
		t.Fatalf("Banned(%q, %q): %v", room, uid, err)
	}
	return b, ok
}

func list(t *testing.T, s presence.Bans, room string) []presence.Ban {
	t.Helper()
	bs, err := s.List(ctxFor(t), room)
	if err != nil {
		t.Fatalf("List(%q): %v", room, err)
	}
	return bs
}

func uids(bs []presence.Ban) []string {
	out := make([]string, len(bs))
	for i, b := range bs {
		out[i] = b.UID
	}
	return out
}
