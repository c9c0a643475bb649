package bench

import (
	"net/netip"
	"testing"
)

func TestSourceIP(t *testing.T) {
	seen := map[string]bool{}
	for i := range 1000 {
		s := sourceIP(i)
		a, err := netip.ParseAddr(s)
		if err != nil || !a.IsLoopback() || s == "127.0.0.1" || a.As4()[3] < 2 || a.As4()[3] == 255 {
			t.Fatalf("sourceIP(%d) = %q: not a usable loopback address", i, s)
		}
		if seen[s] {
			t.Fatalf("sourceIP(%d) = %q twice", i, s)
		}
		seen[s] = true
	}
	if got := sourceIP(0); got != "127.0.0.2" {
		t.Errorf("sourceIP(0) = %q, want 127.0.0.2", got)
	}
	if got := sourceIP(250); got != "127.0.1.2" {
		t.Errorf("sourceIP(250) = %q, want 127.0.1.2", got)
	}
}
