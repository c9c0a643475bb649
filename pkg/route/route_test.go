package route

import (
	"math"
	"slices"
	"strconv"
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

// TestRing: keys spread over the servers about evenly, adding a server
// moves about 1/n of them (all to the new one), and the hot slots of a
// room reach the distinct servers the scale model expects,
// n·(1−(1−1/n)^slots), as nginx's ring does.
func TestRing(t *testing.T) {
	servers := []string{"127.0.0.1:8091", "127.0.0.1:8092", "127.0.0.1:8093", "127.0.0.1:8094", "127.0.0.1:8095", "127.0.0.1:8096"}
	r := NewRing(servers)
	count := make([]int, len(servers))
	const keys = 60000
	for i := range keys {
		count[r.Get("k"+strconv.Itoa(i))]++
	}
	for s, c := range count {
		if c < keys/len(servers)*6/10 || c > keys/len(servers)*14/10 {
			t.Errorf("server %d got %d of %d keys, want about %d", s, c, keys, keys/len(servers))
		}
	}
	grown := NewRing(append(slices.Clone(servers), "127.0.0.1:8097"))
	moved := 0
	for i := range keys {
		k := "k" + strconv.Itoa(i)
		if a, b := r.Get(k), grown.Get(k); a != b {
			moved++
			if b != len(servers) {
				t.Fatalf("key %s moved from %d to %d, not to the new server", k, a, b)
			}
		}
	}
	if moved < keys/7/2 || moved > keys/7*2 {
		t.Errorf("adding a 7th server moved %d of %d keys, want about %d", moved, keys, keys/7)
	}
	for _, c := range []struct{ n, hot int }{{6, 6}, {6, 12}, {8, 8}, {12, 8}, {4, 4}} {
		var gws []string
		for i := range c.n {
			gws = append(gws, "gateway-"+strconv.Itoa(i+1)+":8090")
		}
		ring := NewRing(gws)
		sum := 0.0
		const rooms = 2000
		for room := range rooms {
			seen := map[int]bool{}
			for k := range uint32(c.hot) {
				seen[ring.Get(Key("room-"+strconv.Itoa(room), 8, 2, c.hot, k))] = true
			}
			sum += float64(len(seen))
		}
		got, want := sum/rooms, float64(c.n)*-math.Expm1(float64(c.hot)*math.Log1p(-1/float64(c.n)))
		if math.Abs(got-want)/want > 0.05 {
			t.Errorf("%d servers, %d slots: %.2f distinct servers on average, the model's %.2f", c.n, c.hot, got, want)
		}
	}
}

// TestRingHostPort: servers split into host and port as nginx hashes them
// (ngx_http_upstream_update_chash): a Unix socket by its path, a port only
// of digits after the last colon.
func TestRingHostPort(t *testing.T) {
	for _, c := range []struct{ srv, host, port string }{
		{"127.0.0.1:8090", "127.0.0.1", "8090"}, {"gateway-1:8090", "gateway-1", "8090"},
		{"gateway", "gateway", ""}, {"host:", "host", ""}, {"[::1]:8090", "[::1]", "8090"},
		{"[::1]", "[::1]", ""}, {"unix:/run/gw.sock", "/run/gw.sock", ""}, {"UNIX:/run/gw:1", "/run/gw:1", ""},
	} {
		if host, port := hostPort(c.srv); host != c.host || port != c.port {
			t.Errorf("hostPort(%q) = %q, %q; nginx hashes %q, %q", c.srv, host, port, c.host, c.port)
		}
	}
}
