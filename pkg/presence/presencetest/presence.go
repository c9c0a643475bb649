package presencetest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/presence"
)

// RunPresence runs the presence.Presence suite against the stores newP
// returns.
func RunPresence(t *testing.T, newP func(t *testing.T) presence.Presence) {
	run(t, newP, []testCase[presence.Presence]{
		{"empty", presenceEmpty},
		{"two gateways summed", presenceTwoGatewaysSummed},
		{"report replaces", presenceReportReplaces},
		{"zero counts not listed", presenceZeroCountsNotListed},
		{"gateway expires after ttl", presenceGatewayExpiresAfterTtl},
		{"online many", presenceOnlineMany},
		{"top order and n", presenceTopOrderAndN},
	})
}

// presenceEmpty is the subtest "empty".
func presenceEmpty(t *testing.T, p presence.Presence) {
	if n := online(t, p, "r1"); n != 0 {
		t.Errorf("Online of an empty store = %d, want 0", n)
	}
	if got := top(t, p, 10); len(got) != 0 {
		t.Errorf("Top of an empty store = %v, want none", got)
	}
}

// presenceTwoGatewaysSummed is the subtest "two gateways summed".
func presenceTwoGatewaysSummed(t *testing.T, p presence.Presence) {
	report(t, p, "gw-a", map[string]int{"r1": 3, "r2": 1}, longTTL)
	report(t, p, "gw-b", map[string]int{"r1": 2, "r3": 7}, longTTL)
	for room, want := range map[string]int{"r1": 5, "r2": 1, "r3": 7, "r4": 0} {
		if n := online(t, p, room); n != want {
			t.Errorf("Online(%q) = %d, want %d", room, n, want)
		}
	}
}

// presenceReportReplaces is the subtest "report replaces".
func presenceReportReplaces(t *testing.T, p presence.Presence) {
	report(t, p, "gw-a", map[string]int{"r1": 3, "r2": 4}, longTTL)
	report(t, p, "gw-b", map[string]int{"r2": 1}, longTTL)
	report(t, p, "gw-a", map[string]int{"r1": 1}, longTTL)
	if n := online(t, p, "r1"); n != 1 {
		t.Errorf("Online(r1) after replace = %d, want 1", n)
	}
	if n := online(t, p, "r2"); n != 1 {
		t.Errorf("Online(r2) after gw-a dropped it = %d, want 1 (gw-b's)", n)
	}
	report(t, p, "gw-a", nil, longTTL)
	if n := online(t, p, "r1"); n != 0 {
		t.Errorf("Online(r1) after an empty report = %d, want 0", n)
	}
	want := []presence.RoomCount{{Room: "r2", Online: 1}}
	if got := top(t, p, 10); !slices.Equal(got, want) {
		t.Errorf("Top = %v, want %v", got, want)
	}
}

// presenceZeroCountsNotListed is the subtest "zero counts not listed".
func presenceZeroCountsNotListed(t *testing.T, p presence.Presence) {
	report(t, p, "gw-a", map[string]int{"r1": 0, "r2": 2}, longTTL)
	want := []presence.RoomCount{{Room: "r2", Online: 2}}
	if got := top(t, p, 10); !slices.Equal(got, want) {
		t.Errorf("Top = %v, want %v", got, want)
	}
}

// presenceGatewayExpiresAfterTtl is the subtest "gateway expires after ttl".
func presenceGatewayExpiresAfterTtl(t *testing.T, p presence.Presence) {
	report(t, p, "gw-short", map[string]int{"r1": 3, "r9": 4}, shortTTL)
	report(t, p, "gw-long", map[string]int{"r1": 2}, longTTL)
	if n := online(t, p, "r1"); n != 5 {
		t.Fatalf("Online(r1) before expiry = %d, want 5", n)
	}
	eventually(t, "gw-short's counts expire", func() bool { return online(t, p, "r1") == 2 })
	want := []presence.RoomCount{{Room: "r1", Online: 2}}
	if got := top(t, p, 10); !slices.Equal(got, want) {
		t.Errorf("Top after expiry = %v, want %v", got, want)
	}
	report(t, p, "gw-short", map[string]int{"r1": 1}, longTTL)
	if n := online(t, p, "r1"); n != 3 {
		t.Errorf("Online(r1) after gw-short reports again = %d, want 3", n)
	}
}

// presenceOnlineMany is the subtest "online many".
func presenceOnlineMany(t *testing.T, p presence.Presence) {
	report(t, p, "gw-a", map[string]int{"r1": 3, "r2": 1}, longTTL)
	report(t, p, "gw-b", map[string]int{"r1": 2, "r3": 7}, longTTL)
	report(t, p, "gw-dead", map[string]int{"r1": 100}, shortTTL)
	eventually(t, "gw-dead expires", func() bool { return online(t, p, "r1") == 5 })
	rooms := []string{"r3", "none", "r1", "r2", "r1"}
	want := []int{7, 0, 5, 1, 5}
	got, err := presence.OnlineMany(ctxFor(t), p, rooms)
	if err != nil {
		t.Fatalf("OnlineMany: %v", err)
	}
	if !slices.Equal(got, want) {
		t.Errorf("OnlineMany(%v) = %v, want %v", rooms, got, want)
	}
	if got, err := presence.OnlineMany(ctxFor(t), p, nil); err != nil || len(got) != 0 {
		t.Errorf("OnlineMany(nil) = %v, %v; want none", got, err)
	}
	many := make([]string, 1203)
	for i := range many {
		many[i] = fmt.Sprintf("m%d", i)
	}
	report(t, p, "gw-c", map[string]int{"m0": 1, "m600": 2, "m1202": 3}, longTTL)
	got, err = presence.OnlineMany(ctxFor(t), p, many)
	if err != nil || len(got) != len(many) {
		t.Fatalf("OnlineMany(1203 rooms) = %d counts, %v", len(got), err)
	}
	if got[0] != 1 || got[600] != 2 || got[1202] != 3 || got[1] != 0 {
		t.Errorf("OnlineMany(1203 rooms): m0=%d m600=%d m1202=%d m1=%d, want 1 2 3 0", got[0], got[600], got[1202], got[1])
	}
}

// presenceTopOrderAndN is the subtest "top order and n".
func presenceTopOrderAndN(t *testing.T, p presence.Presence) {
	report(t, p, "gw-a", map[string]int{"a": 5, "b": 1, "c": 9, "d": 2}, longTTL)
	report(t, p, "gw-b", map[string]int{"b": 4, "e": 5, "d": 1}, longTTL)
	all := []presence.RoomCount{
		{Room: "c", Online: 9},
		{Room: "a", Online: 5}, // ties by room name
		{Room: "b", Online: 5},
		{Room: "e", Online: 5},
		{Room: "d", Online: 3},
	}
	for _, tc := range []struct {
		n    int
		want []presence.RoomCount
	}{
		{1, all[:1]},
		{3, all[:3]},
		{5, all},
		{100, all},
		{0, all},
	} {
		if got := top(t, p, tc.n); !slices.Equal(got, tc.want) {
			t.Errorf("Top(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
}

func online(t *testing.T, p presence.Presence, room string) int {
	t.Helper()
	n, err := p.Online(ctxFor(t), room)
	if err != nil {
		t.Fatalf("Online(%q): %v", room, err)
	}
	return n
}

func report(t *testing.T, p presence.Presence, gw string, counts map[string]int, ttl time.Duration) {
	t.Helper()
	if err := p.Report(ctxFor(t), gw, counts, ttl); err != nil {
		t.Fatalf("Report(%q): %v", gw, err)
	}
}

func top(t *testing.T, p presence.Presence, n int) []presence.RoomCount {
	t.Helper()
	got, err := p.Top(ctxFor(t), n)
	if err != nil {
		t.Fatalf("Top(%d): %v", n, err)
	}
	return got
}
