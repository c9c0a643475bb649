package bench

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
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
	o, err := parseOptions("idle", []string{"--server-env", "GOMAXPROCS=2 DANMAKU_LOOPS=1"}, Options{}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.ServerEnv != "GOMAXPROCS=2 DANMAKU_LOOPS=1" {
		t.Fatalf("ServerEnv %q", o.ServerEnv)
	}
	for _, bad := range []string{"GOMAXPROCS", "=2"} {
		if _, err := parseOptions("idle", []string{"--server-env", bad}, Options{}, io.Discard); err == nil || !strings.Contains(err.Error(), "KEY=VALUE") {
			t.Errorf("--server-env %q: err %v, want a KEY=VALUE error", bad, err)
		}
	}
}

func TestHandshakeTimeoutOption(t *testing.T) {
	o, err := parseOptions("idle", []string{"--handshake-timeout", "30s"}, Options{}, io.Discard)
	if err != nil || o.HandshakeTimeout.String() != "30s" {
		t.Fatalf("--handshake-timeout 30s: %v, %v", o, err)
	}
	if _, err := parseOptions("idle", []string{"--handshake-timeout", "-1s"}, Options{}, io.Discard); err == nil {
		t.Fatal("a negative --handshake-timeout was accepted")
	}
}

// TestDealSpreadsRemainders: a room's connections are split evenly over
// the workers, and the rooms' remainders go round the workers instead of
// all landing on the lowest-numbered ones (1,000 one-sender rooms used to
// give worker 0 almost every sender).
func TestDealSpreadsRemainders(t *testing.T) {
	per := make([]int, 1000)
	for i := range per {
		per[i] = 1
	}
	per[0], per[1] = 17, 5
	const workers = 6
	got := deal(per, workers)
	load := make([]int, workers)
	total := 0
	for i, counts := range got {
		sum, lo, hi := 0, counts[0], counts[0]
		for w, c := range counts {
			sum += c
			load[w] += c
			lo, hi = min(lo, c), max(hi, c)
		}
		if sum != per[i] {
			t.Fatalf("room %d: dealt %d of %d", i, sum, per[i])
		}
		if hi-lo > 1 {
			t.Fatalf("room %d: uneven split %v", i, counts)
		}
		total += per[i]
	}
	lo, hi := load[0], load[0]
	for _, l := range load {
		lo, hi = min(lo, l), max(hi, l)
	}
	if hi-lo > 1 {
		t.Fatalf("workers' totals %v for %d connections: want within one of each other", load, total)
	}
}

// TestPlaceByRoom: with ByRoom (--affinity) the connections of the rooms
// of one dispatch partition go to at most two gateways whatever the
// worker, and the partitions spread over the gateways; --affinity needs
// gateways with a port each.
func TestPlaceByRoom(t *testing.T) {
	gws := []string{"a", "b", "c", "d", "e", "f"}
	used := map[string]bool{}
	byPart := map[int]map[string]bool{}
	for _, id := range []int{0, 1, 2} {
		w := &worker{spec: WorkerSpec{ID: id, Gateways: gws, ByRoom: true, Partitions: 8}}
		for r := range 200 {
			room := "room-" + strconv.Itoa(r)
			p := bus.KeyPartition(room, 8)
			if byPart[p] == nil {
				byPart[p] = map[string]bool{}
			}
			for range 4 {
				addr, _ := w.place(room)
				byPart[p][addr] = true
				used[addr] = true
			}
		}
	}
	for p, g := range byPart {
		if len(g) > 2 {
			t.Fatalf("the rooms of partition %d went to %d gateways, want at most 2", p, len(g))
		}
	}
	if len(used) < 4 {
		t.Errorf("8 partitions used %d of %d gateways", len(used), len(gws))
	}
	for _, o := range []Options{{Scenario: "rooms", Rooms: 1, Affinity: true}, {Scenario: "rooms", Rooms: 1, Affinity: true, Gateways: 2, ReusePort: true}} {
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--affinity needs") {
			t.Errorf("Validate(%+v) = %v, want the --affinity error", o, err)
		}
	}
	// A hot room (HotSlots, --affinity-hot) spreads over more gateways
	// than its partition's two; its partition's other rooms stay on those.
	hot := map[string]bool{}
	w := &worker{spec: WorkerSpec{Gateways: gws, ByRoom: true, Partitions: 8, HotSlots: map[string]int{"room-0": 12}}}
	for range 600 {
		addr, _ := w.place("room-0")
		hot[addr] = true
	}
	if len(hot) < 4 {
		t.Errorf("a hot room of 12 slots reached %d of 6 gateways, want at least 4", len(hot))
	}
	for r := 1; r < 200; r++ {
		room := "room-" + strconv.Itoa(r)
		if bus.KeyPartition(room, 8) != bus.KeyPartition("room-0", 8) {
			continue
		}
		for range 4 {
			if addr, _ := w.place(room); !byPart[bus.KeyPartition(room, 8)][addr] {
				t.Errorf("room %s (not hot) went to %s, off its partition's gateways", room, addr)
			}
		}
	}
	if err := (&Options{Scenario: "rooms", Rooms: 1, AffinityHot: 3000}).Validate(); err == nil || !strings.Contains(err.Error(), "--affinity-hot needs") {
		t.Errorf("--affinity-hot without --affinity: %v", err)
	}
}

// TestOptionsFromEnv: the package reads no environment itself; what the
// command line read from it (Main's env) serves where neither a flag nor
// the scenario file sets the field, and -h does not print the secret.
func TestOptionsFromEnv(t *testing.T) {
	t.Setenv("DANMAKU_BROKERS", "ambient:9092")
	t.Setenv("DANMAKU_JWT_SECRET", "ambient-secret")
	o := Options{Scenario: "fanout"}
	o.Defaults()
	if o.Brokers != "" || o.Secret != "" {
		t.Fatalf("Defaults read the environment: brokers %q secret %q", o.Brokers, o.Secret)
	}
	env := Options{Brokers: "env:9092", Secret: "env-s3cret-5521", Quiet: true}
	got, err := parseOptions("fanout", nil, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got.Brokers != "env:9092" || got.Secret != "env-s3cret-5521" || !got.Quiet {
		t.Errorf("env not applied: brokers %q secret %q quiet %v", got.Brokers, got.Secret, got.Quiet)
	}
	got, err = parseOptions("fanout", []string{"--brokers", "flag:9092", "--jwt-secret", "flag-secret"}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if got.Brokers != "flag:9092" || got.Secret != "flag-secret" {
		t.Errorf("flags do not win over env: brokers %q secret %q", got.Brokers, got.Secret)
	}
	path := t.TempDir() + "/s.yaml"
	if err := os.WriteFile(path, []byte("brokers: file:9092\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got, err = parseOptions("fanout", []string{"--config", path}, env, io.Discard); err != nil || got.Brokers != "file:9092" {
		t.Errorf("scenario file does not win over env: brokers %q, err %v", got.Brokers, err)
	}
	var help strings.Builder
	if _, err := parseOptions("fanout", []string{"-h"}, env, &help); !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h: %v, want flag.ErrHelp", err)
	}
	if strings.Contains(help.String(), env.Secret) || !strings.Contains(help.String(), "-jwt-secret") {
		t.Errorf("-h prints the secret from env, or no flags:\n%s", help.String())
	}
}

// TestServerNice: a started server with nice runs at that niceness (every
// thread: nice(1) sets it before the exec), and --gateway-nice is checked.
func TestServerNice(t *testing.T) {
	s := &server{role: "sleep", args: []string{"30"}, log: filepath.Join(t.TempDir(), "log"), nice: 7}
	if err := s.start("sleep"); err != nil {
		t.Fatal(err)
	}
	defer s.stop(time.Second)
	niceOf := func(pid string) string {
		stat, err := os.ReadFile("/proc/" + pid + "/stat")
		if err != nil {
			t.Fatal(err)
		}
		// Fields after the command's ")": state is the 1st, nice the 17th.
		return strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+1:]))[16]
	}
	own, _ := strconv.Atoi(niceOf("self"))
	want := strconv.Itoa(min(19, own+7)) // nice(1) adds to the harness's own
	var nice string
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		comm, _ := os.ReadFile("/proc/" + strconv.Itoa(s.pid()) + "/comm")
		if nice = niceOf(strconv.Itoa(s.pid())); string(comm) == "sleep\n" { // past nice's exec
			break
		}
	}
	if nice != want {
		t.Errorf("started with nice 7 by a harness at %d: the process runs at %s, want %s", own, nice, want)
	}
	for _, o := range []Options{{Scenario: "rooms", Rooms: 1, GatewayNice: 3}, {Scenario: "rooms", Rooms: 1, Gateways: 2, GatewayNice: 20}} {
		if err := o.Validate(); err == nil || !strings.Contains(err.Error(), "--gateway-nice") {
			t.Errorf("Validate(%+v) = %v, want the --gateway-nice error", o, err)
		}
	}
}
