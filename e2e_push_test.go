package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestPushAcrossGateways runs a logic worker and two gateway processes on
// the Kafka-protocol broker: a service's notice to every room reaches the
// viewers of rooms on both gateways, each in its room; a notice to one
// user reaches that user's connections on both gateways (with a device and
// without) and nobody else.
func TestPushAcrossGateways(t *testing.T) {
	brokers := testenv.Addr(t, testenv.Kafka)
	chAddr := testenv.Addr(t, testenv.ClickHouse)
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	bin := testenv.Binary(t)
	run := fmt.Sprintf("push%d", time.Now().UnixNano()%1e9)
	common := []string{"--bus", "kafka", "--brokers", brokers, "--topic-prefix", run + ".",
		"--jwt-secret", testSecret, "--log-level", "info", "--drain-timeout", "1s"}
	start := func(name, role string, extra ...string) (*testenv.Process, string) {
		h := freeAddr(t)
		args := append(append([]string{role, "--http", h}, common...), extra...)
		return testenv.Spawn(t, bin, name, h, mpEnv, args...), h
	}
	lg, _ := start("logic", "logic", "--history", "clickhouse", "--clickhouse", chAddr)
	lg.WaitReady(t, 30*time.Second) // creates the topics
	ws1, ws2 := freeAddr(t), freeAddr(t)
	gw1, http1 := start("gateway-1", "gateway", "--ws", ws1, "--id", run+"-gw1")
	gw2, http2 := start("gateway-2", "gateway", "--ws", ws2, "--id", run+"-gw2")
	gw1.WaitReady(t, 30*time.Second)
	gw2.WaitReady(t, 30*time.Second)

	roomA, roomB, roomC := run+"-a", run+"-b", run+"-c"
	user, other := run+"-user", run+"-other"
	viewerA := dialRaw(t, ws1, roomA, "")                              // anonymous, gateway 1
	viewerB := dialRaw(t, ws2, roomB, "")                              // anonymous, gateway 2
	userOn1 := dialRaw(t, ws1, roomA, deviceToken(t, user, "phone"))   // the user, gateway 1
	userOn2 := dialRaw(t, ws2, roomC, token(t, user, "viewer"))        // the user again, gateway 2, no device
	otherOn2 := dialRaw(t, ws2, roomC, deviceToken(t, other, "phone")) // someone else next to them
	for _, c := range []*rawConn{viewerA, viewerB, userOn1, userOn2, otherOn2} {
		c.waitOp(t, protocol.OpJoined, 10*time.Second)
	}

	post := func(httpAddr, path, tok, body string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("POST", "http://"+httpAddr+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+tok)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	svc := token(t, run+"-bot", "service")
	// The gateways read the control stream from its end: wait until both
	// apply room notices (a mod's settings change) before pushing.
	mod := token(t, run+"-mod", "mod", roomA, roomB)
	for _, w := range []struct {
		room string
		c    *rawConn
	}{{roomA, viewerA}, {roomB, viewerB}} {
		req, _ := http.NewRequest("PUT", "http://"+http1+"/api/rooms/"+w.room+"/settings", strings.NewReader(`{"slow_mode_sec":5}`))
		req.Header.Set("Authorization", "Bearer "+mod)
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 200 {
			t.Fatalf("settings: %s", res.Status)
		}
		w.c.waitOp(t, protocol.OpNotice, 15*time.Second)
	}
	// notice returns c's next notice, past the settings notices of the
	// warm-up.
	notice := func(c *rawConn, who string) protocol.ServerFrame {
		t.Helper()
		for {
			f := c.waitOp(t, protocol.OpNotice, 10*time.Second)
			var sf protocol.ServerFrame
			if err := json.Unmarshal([]byte(f.Text), &sf); err != nil {
				t.Fatalf("%s: %s: %v", who, f.Text, err)
			}
			if !strings.HasPrefix(sf.Text, "slow mode") {
				return sf
			}
		}
	}

	// A notice to every room, posted on gateway 2's API.
	if st, body := post(http2, "/api/notices", svc, `{"text":"maintenance at 02:00 UTC"}`); st != http.StatusAccepted {
		t.Fatalf("notice to every room: %d %s", st, body)
	}
	for _, w := range []struct {
		c          *rawConn
		room, name string
	}{{viewerA, roomA, "viewer of A on gateway 1"}, {viewerB, roomB, "viewer of B on gateway 2"},
		{userOn1, roomA, "the user on gateway 1"}, {userOn2, roomC, "the user on gateway 2"}, {otherOn2, roomC, "the other user"}} {
		if f := notice(w.c, w.name); f.Room != w.room || f.Text != "maintenance at 02:00 UTC" || f.UID != "" {
			t.Errorf("%s: notice %+v, want room %s", w.name, f, w.room)
		}
	}

	// A notice to one user, posted on gateway 1's API.
	if st, body := post(http1, "/api/users/"+user+"/notice", svc, `{"text":"your gift was received"}`); st != http.StatusAccepted {
		t.Fatalf("notice to a user: %d %s", st, body)
	}
	for _, w := range []struct {
		c          *rawConn
		room, name string
	}{{userOn1, roomA, "the user on gateway 1"}, {userOn2, roomC, "the user on gateway 2"}} {
		if f := notice(w.c, w.name); f.Room != w.room || f.UID != user || f.Text != "your gift was received" {
			t.Errorf("%s: notice %+v, want uid %s in room %s", w.name, f, user, w.room)
		}
	}
	for _, w := range []struct {
		c    *rawConn
		name string
	}{{otherOn2, "the other user"}, {viewerA, "viewer of A"}, {viewerB, "viewer of B"}} {
		timer := time.NewTimer(time.Second)
	drain:
		for {
			select {
			case f := <-w.c.frames:
				if f.Op == protocol.OpNotice {
					t.Errorf("%s got %s", w.name, f.Text)
				}
			case <-timer.C:
				break drain
			}
		}
	}
	// Too many notices to every room: 429 (the burst is 3 per account).
	for i := 0; ; i++ {
		st, _ := post(http2, "/api/notices", svc, `{"text":"again"}`)
		if st == http.StatusTooManyRequests {
			break
		}
		if st != http.StatusAccepted || i > 3 {
			t.Fatalf("notice %d: status %d, want 202 then 429", i+2, st)
		}
	}
}
