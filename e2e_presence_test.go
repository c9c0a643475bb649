package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/client"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// deviceToken signs a viewer token for uid on device dev.
func deviceToken(t testing.TB, uid, dev string) string {
	t.Helper()
	s, _ := auth.NewSigner(testSecret)
	tok, err := s.SignClaims(auth.Claims{Name: "name-" + uid, Role: auth.RoleViewer, Device: dev,
		RegisteredClaims: jwt.RegisteredClaims{Subject: uid, ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// rawFrame is one server frame seen by a rawConn: a text payload, or the
// close code when the server closed (Close true).
type rawFrame struct {
	Op    string
	Text  string
	Close bool
	Code  uint16
}

// rawConn is a bare WebSocket connection that records every frame, for
// checks the reconnecting client hides (kicked, then the close code).
type rawConn struct {
	conn   net.Conn
	frames chan rawFrame
}

func dialRaw(t *testing.T, wsAddr, room, tok string) *rawConn {
	t.Helper()
	conn, err := net.DialTimeout("tcp", wsAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	key := ws.NewKey()
	q := url.Values{"room": {room}, "token": {tok}}
	if _, err := conn.Write(ws.AppendClientHandshake(nil, wsAddr, "/ws?"+q.Encode(), key, "")); err != nil {
		t.Fatal(err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(conn)
	var buf []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			t.Fatalf("handshake: %v", err)
		}
		buf = append(buf, b)
		n, status, err := ws.ParseHandshakeResponse(buf, key)
		if err == ws.ErrNeedMore {
			continue
		}
		if err != nil || status != 101 || n != len(buf) {
			t.Fatalf("handshake: status %d, %v", status, err)
		}
		break
	}
	_ = conn.SetReadDeadline(time.Time{})
	rc := &rawConn{conn: conn, frames: make(chan rawFrame, 256)}
	go func() {
		defer close(rc.frames)
		rd := ws.Reader{Client: true, MaxMessage: 16 << 20}
		var in []byte
		tmp := make([]byte, 16<<10)
		for {
			n, err := br.Read(tmp)
			if err != nil {
				return
			}
			in = append(in, tmp[:n]...)
			for {
				msg, used, ok, err := rd.Next(in)
				if err != nil {
					break
				}
				in = in[used:]
				if !ok {
					continue
				}
				switch msg.Op {
				case ws.OpText:
					var f struct {
						Op string `json:"op"`
					}
					_ = json.Unmarshal(msg.Payload, &f)
					rc.frames <- rawFrame{Op: f.Op, Text: string(msg.Payload)}
				case ws.OpClose:
					code, _, _ := ws.ParseClose(msg.Payload)
					rc.frames <- rawFrame{Close: true, Code: code}
					return
				}
			}
		}
	}()
	return rc
}

// waitOp returns the first frame with op (or the close, when op is ""),
// failing after d.
func (rc *rawConn) waitOp(t *testing.T, op string, d time.Duration) rawFrame {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case f, ok := <-rc.frames:
			if !ok {
				t.Fatalf("connection ended before %q", op)
			}
			if (op == "" && f.Close) || (op != "" && f.Op == op) {
				return f
			}
			if f.Close {
				t.Fatalf("closed with %d while waiting for %q", f.Code, op)
			}
		case <-timer.C:
			t.Fatalf("no %q within %v", op, d)
		}
	}
}

// quiet fails if a kicked frame or a close arrives within d.
func (rc *rawConn) quiet(t *testing.T, who string, d time.Duration) {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case f, ok := <-rc.frames:
			if !ok || f.Close || f.Op == protocol.OpKicked {
				t.Fatalf("%s: unexpected end %+v (open %v)", who, f, ok)
			}
		case <-timer.C:
			return
		}
	}
}

// expectKicked checks the kicked frame, then close 4001.
func (rc *rawConn) expectKicked(t *testing.T, who string) {
	t.Helper()
	f := rc.waitOp(t, protocol.OpKicked, 5*time.Second)
	if !strings.Contains(f.Text, "logged in elsewhere") {
		t.Errorf("%s: kicked frame %s, want reason \"logged in elsewhere\"", who, f.Text)
	}
	if c := rc.waitOp(t, "", 3*time.Second); c.Code != protocol.CloseKicked {
		t.Errorf("%s: close code %d, want %d", who, c.Code, protocol.CloseKicked)
	}
}

// TestSessionKickOneGateway: a second login of a user on the same device
// kicks the first connection; other devices of the user stay.
func TestSessionKickOneGateway(t *testing.T) {
	_, wsAddr := startAll(t)
	first := dialRaw(t, wsAddr, "sess", deviceToken(t, "u-sess", "phone"))
	first.waitOp(t, protocol.OpJoined, 5*time.Second)
	other := dialRaw(t, wsAddr, "sess", deviceToken(t, "u-sess", "laptop"))
	other.waitOp(t, protocol.OpJoined, 5*time.Second)
	noDevice := dialRaw(t, wsAddr, "sess", token(t, "u-sess", "viewer"))
	noDevice.waitOp(t, protocol.OpJoined, 5*time.Second)
	time.Sleep(200 * time.Millisecond) // let the claims land

	second := dialRaw(t, wsAddr, "sess", deviceToken(t, "u-sess", "phone"))
	second.waitOp(t, protocol.OpJoined, 5*time.Second)
	first.expectKicked(t, "first phone login")
	second.quiet(t, "second phone login", 500*time.Millisecond)
	other.quiet(t, "laptop", 10*time.Millisecond)
	noDevice.quiet(t, "connection without a device", 10*time.Millisecond)
}

// TestSessionKickAcrossGateways runs two `danmaku all` processes' worth of
// stages in this process on the Kafka-protocol broker and Redis: a login
// on the second gateway kicks the same user and device on the first.
func TestSessionKickAcrossGateways(t *testing.T) {
	brokers := testenv.Addr(t, testenv.Kafka)
	redis := testenv.Addr(t, testenv.Redis)
	prefix := fmt.Sprintf("sess%d.", time.Now().UnixNano())
	flags := []string{"--bus", "kafka", "--brokers", brokers, "--topic-prefix", prefix, "--presence", "redis", "--redis", redis}
	// Two apps in one process: give each its own gateway id (the default
	// is made of the host name and pid).
	_, wsA := startAll(t, append([]string{"--id", prefix + "a"}, flags...)...)
	_, wsB := startAll(t, append([]string{"--id", prefix + "b"}, flags...)...)
	uid := fmt.Sprintf("u-%d", time.Now().UnixNano())

	first := dialRaw(t, wsA, "sess", deviceToken(t, uid, "phone"))
	first.waitOp(t, protocol.OpJoined, 5*time.Second)
	time.Sleep(300 * time.Millisecond)
	second := dialRaw(t, wsB, "sess", deviceToken(t, uid, "phone"))
	second.waitOp(t, protocol.OpJoined, 5*time.Second)
	first.expectKicked(t, "login on gateway A")
	second.quiet(t, "login on gateway B", time.Second)
}

// onlineOf reads GET /api/rooms/{room}/online.
func onlineOf(httpAddr, room string) (int, error) {
	c := http.Client{Timeout: 2 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/api/rooms/" + room + "/online")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return 0, fmt.Errorf("status %d", resp.StatusCode)
	}
	var body struct {
		Online int `json:"online"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		return 0, err
	}
	return body.Online, nil
}

// waitOnline polls the online count until it is want, and returns how
// long that took.
func waitOnline(t *testing.T, httpAddr, room string, want int, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	var n int
	var err error
	for time.Since(start) < within {
		if n, err = onlineOf(httpAddr, room); err == nil && n == want {
			return time.Since(start)
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("online(%s) = %d (%v), want %d within %v", room, n, err, want, within)
	return 0
}

// TestPresenceTwoGateways: viewers on two gateway processes sharing Redis
// and the broker are counted together (API and online frames), and when
// one gateway is SIGKILLed its viewers leave the count within the
// heartbeat window (3 × the presence interval).
func TestPresenceTwoGateways(t *testing.T) {
	brokers := testenv.Addr(t, testenv.Kafka)
	redis := testenv.Addr(t, testenv.Redis)
	const interval = 300 * time.Millisecond
	t.Setenv("DANMAKU_PRESENCE_INTERVAL", interval.String())
	prefix := fmt.Sprintf("pres%d.", time.Now().UnixNano())
	room := fmt.Sprintf("pres-%d", time.Now().UnixNano())
	flags := []string{"--bus", "kafka", "--brokers", brokers, "--topic-prefix", prefix, "--presence", "redis", "--redis", redis}

	httpA, wsA := startAll(t, flags...)
	httpB, wsB := freeAddr(t), freeAddr(t)
	procB := testenv.Spawn(t, testenv.Binary(t), "gateway-b", httpB, []string{"DANMAKU_JWT_SECRET=" + testSecret},
		append([]string{"gateway", "--http", httpB, "--ws", wsB, "--id", "gw-killed-" + prefix, "--log-level", "warn"}, flags...)...)
	procB.WaitReady(t, 20*time.Second)

	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	var lastOnline atomic.Int64
	lastOnline.Store(-1)
	dial := func(wsAddr string, onFrame func(protocol.ServerFrame)) *client.Client {
		c, err := client.Dial(ctx, client.Config{URL: "ws://" + wsAddr + "/ws", OnFrame: onFrame, MaxBackoff: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Join(ctx, room, 0); err != nil {
			t.Fatal(err)
		}
		return c
	}
	dial(wsA, func(f protocol.ServerFrame) {
		if f.Op == protocol.OpOnline && f.Room == room {
			lastOnline.Store(int64(f.Count))
		}
	})
	dial(wsA, nil)
	for range 3 {
		dial(wsB, nil)
	}
	waitOnline(t, httpA, room, 5, 5*time.Second)
	waitOnline(t, httpB, room, 5, 5*time.Second)
	deadline := time.Now().Add(5 * time.Second)
	for lastOnline.Load() != 5 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := lastOnline.Load(); n != 5 {
		t.Fatalf("online frame on gateway A says %d, want 5", n)
	}

	if err := procB.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	took := waitOnline(t, httpA, room, 2, 3*interval+2*time.Second)
	t.Logf("count dropped from 5 to 2 %v after SIGKILL (heartbeat window %v)", took.Round(time.Millisecond), 3*interval)
	if took > 3*interval+interval {
		t.Errorf("count took %v to drop, want within about %v", took, 3*interval)
	}
	deadline = time.Now().Add(2 * time.Second)
	for lastOnline.Load() != 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := lastOnline.Load(); n != 2 {
		t.Errorf("online frame on gateway A says %d after the kill, want 2", n)
	}
}

// runDev runs deploy/dev/<script> with args and extra environment.
func runDev(t *testing.T, env []string, script string, args ...string) {
	t.Helper()
	cmd := exec.Command("bash", append([]string{filepath.Join("deploy", "dev", script)}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %v: %v\n%s", script, args, err, out)
	}
}

// readAddr reads an address file a dev script wrote.
func readAddr(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// sendAll sends n messages from c to room, each acknowledged, and returns
// the acked seqs with the longest wait for an ack.
func sendAll(t *testing.T, ctx context.Context, c *client.Client, room, tag string, n int, gap time.Duration) (map[uint64]string, time.Duration) {
	t.Helper()
	acked := make(map[uint64]string, n)
	var slowest time.Duration
	for i := range n {
		text := fmt.Sprintf("%s-%d", tag, i)
		start := time.Now()
		f, err := c.Send(ctx, room, text)
		if err != nil || f.Op != protocol.OpAck || f.Seq == 0 {
			t.Fatalf("send %s: %+v, %v", text, f, err)
		}
		slowest = max(slowest, time.Since(start))
		acked[f.Seq] = text
		time.Sleep(gap)
	}
	return acked, slowest
}

// waitDelivered waits until rec holds every acked seq of room.
func waitDelivered(t *testing.T, rec *recorder, room string, acked map[uint64]string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		got := make(map[uint64]string)
		for _, m := range rec.get(room) {
			got[m.Seq] = m.Text
		}
		missing := 0
		for seq, text := range acked {
			if got[seq] != text {
				missing++
			}
		}
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("viewer is missing %d of %d acked messages", missing, len(acked))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRedisDownMessagesFlow stops the Redis that `danmaku all` keeps
// presence and sessions in, mid-stream: sends are still acknowledged
// promptly and viewers receive them; when Redis comes back on the same
// port, counts and the single-session rule recover without a restart.
func TestRedisDownMessagesFlow(t *testing.T) {
	testenv.Addr(t, testenv.Redis) // the dev environment that installs redis-server
	dir := t.TempDir()
	runDev(t, nil, "redis.sh", "start", dir)
	t.Cleanup(func() { runDev(t, nil, "redis.sh", "stop", dir) })
	addr := readAddr(t, filepath.Join(dir, "redis.addr"))
	_, port, _ := net.SplitHostPort(addr)
	t.Setenv("DANMAKU_PRESENCE_INTERVAL", "300ms")
	httpAddr, wsAddr := startAll(t, "--presence", "redis", "--redis", addr)
	room := "redis-down"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	var rec recorder
	dialJoined(t, ctx, wsAddr, "", room, &rec)
	sender := dialJoined(t, ctx, wsAddr, token(t, "redis-sender", "mod", "*"), room, nil)
	waitOnline(t, httpAddr, room, 2, 5*time.Second)
	acked, _ := sendAll(t, ctx, sender, room, "before", 10, 20*time.Millisecond)

	runDev(t, nil, "redis.sh", "stop", dir)
	// A viewer with a device joins while Redis is down: its session
	// claim fails off the loop; it is served anyway.
	during := dialRaw(t, wsAddr, room, deviceToken(t, "redis-late", "tv"))
	during.waitOp(t, protocol.OpJoined, 3*time.Second)
	more, slowest := sendAll(t, ctx, sender, room, "down", 30, 50*time.Millisecond)
	for k, v := range more {
		acked[k] = v
	}
	t.Logf("with Redis down: 30 sends acked, slowest ack %v", slowest.Round(time.Millisecond))
	if slowest > time.Second {
		t.Errorf("slowest ack with Redis down took %v, want under 1s", slowest)
	}
	waitDelivered(t, &rec, room, acked, 5*time.Second)
	// Counts go stale, not away: the API answers the last count.
	if n, err := onlineOf(httpAddr, room); err != nil || n != 2 {
		t.Errorf("online with Redis down = %d, %v; want the last count, 2", n, err)
	}

	runDev(t, []string{"REDIS_PORT=" + port}, "redis.sh", "start", dir)
	took := waitOnline(t, httpAddr, room, 3, 5*time.Second)
	t.Logf("online count back at 3 %v after Redis restarted", took.Round(time.Millisecond))
	more, _ = sendAll(t, ctx, sender, room, "after", 5, 20*time.Millisecond)
	for k, v := range more {
		acked[k] = v
	}
	waitDelivered(t, &rec, room, acked, 5*time.Second)
	// The single-session rule works again: the refresher claimed the
	// session of the viewer that joined during the outage, and a second
	// login on its device kicks it.
	time.Sleep(1500 * time.Millisecond)
	again := dialRaw(t, wsAddr, room, deviceToken(t, "redis-late", "tv"))
	again.waitOp(t, protocol.OpJoined, 3*time.Second)
	during.expectKicked(t, "viewer that joined during the outage")
	if len(rec.get(room)) != len(acked) {
		t.Errorf("viewer got %d messages, want %d (no duplicates)", len(rec.get(room)), len(acked))
	}
}
