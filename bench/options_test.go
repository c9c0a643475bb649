package bench

import (
	"io"
	"net/netip"
	"strings"
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

func TestServerEnv(t *testing.T) {
	o, err := parseOptions("idle", []string{"--server-env", "GOMAXPROCS=2 DANMAKU_LOOPS=1"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.ServerEnv != "GOMAXPROCS=2 DANMAKU_LOOPS=1" {
		t.Fatalf("ServerEnv %q", o.ServerEnv)
	}
	for _, bad := range []string{"GOMAXPROCS", "=2"} {
		if _, err := parseOptions("idle", []string{"--server-env", bad}, io.Discard); err == nil || !strings.Contains(err.Error(), "KEY=VALUE") {
			t.Errorf("--server-env %q: err %v, want a KEY=VALUE error", bad, err)
		}
	}
}

func TestHandshakeTimeoutOption(t *testing.T) {
	o, err := parseOptions("idle", []string{"--handshake-timeout", "30s"}, io.Discard)
	if err != nil || o.HandshakeTimeout.String() != "30s" {
		t.Fatalf("--handshake-timeout 30s: %v, %v", o, err)
	}
	if _, err := parseOptions("idle", []string{"--handshake-timeout", "-1s"}, io.Discard); err == nil {
		t.Fatal("a negative --handshake-timeout was accepted")
	}
}
