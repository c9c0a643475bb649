package route

import (
	"strings"
	"testing"
)

func TestHotSlots(t *testing.T) {
	for _, c := range []struct{ online, per, want int }{
		{0, 3000, 0}, {3000, 3000, 0}, {3001, 3000, 2}, {18000, 3000, 6}, {18001, 3000, 7},
		{1 << 30, 3000, MaxSlots}, {50000, 0, 0}, {50000, -1, 0},
	} {
		if got := HotSlots(c.online, c.per); got != c.want {
			t.Errorf("HotSlots(%d, %d) = %d, want %d", c.online, c.per, got, c.want)
		}
	}
}

// TestKeySpreadsHotRooms: a room's viewers get at most slots distinct keys
// by its partition (shared with the partition's other rooms), and hot
// distinct keys of their own when hot.
func TestKeySpreadsHotRooms(t *testing.T) {
	keys := func(room string, hot int) map[string]bool {
		m := map[string]bool{}
		for draw := range uint32(1000) {
			m[Key(room, 8, 2, hot, draw*7919)] = true
		}
		return m
	}
	cold := keys("lobby", 0)
	if len(cold) != 2 {
		t.Errorf("cold room: %d keys %v, want 2", len(cold), cold)
	}
	for k := range cold {
		if strings.HasPrefix(k, "room:") {
			t.Errorf("cold room key %q names the room", k)
		}
	}
	hot := keys("lobby", 6)
	if len(hot) != 6 {
		t.Errorf("hot room: %d keys, want 6", len(hot))
	}
	for k := range hot {
		if !strings.HasPrefix(k, "room:lobby:") {
			t.Errorf("hot room key %q", k)
		}
	}
}
