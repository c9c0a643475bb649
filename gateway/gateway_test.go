package gateway

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

const testSecret = "gateway-test-secret"

type testGW struct {
	s    *Server
	bus  *bus.Memory
	addr string
}

// startGW runs a gateway on a free port with the in-memory bus and history.
func startGW(t *testing.T, mod func(*Config)) *testGW {
	t.Helper()
	signer, _ := auth.NewSigner(testSecret)
	b := bus.NewMemory(bus.MemoryConfig{})
	cfg := Config{
		Addr: "127.0.0.1:0", ID: "gw-test", Loops: 2, Bus: b, History: history.NewMemory(history.MemoryConfig{}),
		Signer: signer, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), DrainTimeout: 2 * time.Second,
	}
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run() }()
	select {
	case <-s.Ready():
	case err := <-done:
		t.Fatalf("gateway did not start: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		<-done
		b.Close()
	})
	return &testGW{s: s, bus: b, addr: s.Addr()}
}

// dialRaw opens a bare WebSocket test connection to addr.
func dialRaw(t *testing.T, addr string) *wstest.Conn { return wstest.Dial(t, addr) }

func token(t *testing.T, sub, role string, ttl time.Duration) string {
	s, _ := auth.NewSigner(testSecret)
	tok, err := s.Sign(sub, sub, role, nil, ttl)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestHandshake(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.AllowedOrigins = []string{"https://ok.example"} })
	expired, _ := auth.NewSigner(testSecret)
	old, _ := expired.SignClaims(auth.Claims{Role: "viewer"})
	tests := []struct {
		name    string
		request string // raw request; "" = a normal upgrade of path
		path    string
		extra   string
		status  int
		header  string
		absent  string // a header the response must not carry
	}{
		{name: "upgrade", path: "/ws", status: 101},
		{name: "upgrade with room", path: "/ws?room=r1", status: 101},
		{name: "wrong path", path: "/other", status: 404},
		{name: "bad room", path: "/ws?room=bad%20room", status: 400},
		{name: "bad resume", path: "/ws?room=r1&resume=x", status: 400},
		{name: "bad token", path: "/ws?token=not-a-jwt", status: 401},
		{name: "expired token", path: "/ws?token=" + old, status: 401},
		{name: "good token", path: "/ws?token=" + token(t, "u1", "viewer", time.Hour), status: 101},
		{name: "bearer header", path: "/ws", extra: "Authorization: Bearer " + token(t, "u1", "viewer", time.Hour) + "\r\n", status: 101},
		{name: "origin allowed", path: "/ws", extra: "Origin: https://ok.example\r\n", status: 101},
		{name: "origin refused", path: "/ws", extra: "Origin: https://evil.example\r\n", status: 403},
		{name: "subprotocol offered", path: "/ws", extra: "Sec-WebSocket-Protocol: mqtt, danmaku.v1\r\n", status: 101, header: "Sec-WebSocket-Protocol: danmaku.v1\r\n"},
		{name: "compact offered first", path: "/ws", extra: "Sec-WebSocket-Protocol: danmaku.v1.compact, danmaku.v1\r\n", status: 101, header: "Sec-WebSocket-Protocol: danmaku.v1.compact\r\n"},
		{name: "v1 preferred to compact", path: "/ws", extra: "Sec-WebSocket-Protocol: danmaku.v1, danmaku.v1.compact\r\n", status: 101, header: "Sec-WebSocket-Protocol: danmaku.v1\r\n"},
		{name: "unknown subprotocol", path: "/ws", extra: "Sec-WebSocket-Protocol: mqtt\r\n", status: 101, absent: "Sec-WebSocket-Protocol"},
		{name: "no subprotocol", path: "/ws", status: 101, absent: "Sec-WebSocket-Protocol"},
		{name: "plain GET", request: "GET /ws HTTP/1.1\r\nHost: x\r\n\r\n", status: 426, header: "Upgrade: websocket"},
		{name: "POST", request: "POST /ws HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", status: 405, header: "Allow: GET"},
		{name: "version 8", request: "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n", status: 426, header: "Sec-WebSocket-Version: 13"},
		{name: "bad key", request: "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n", status: 400},
		{name: "garbage", request: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n", status: 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, gw.addr)
			var status int
			if tt.request != "" {
				if _, err := r.NetConn().Write([]byte(tt.request)); err != nil {
					t.Fatal(err)
				}
				status = r.ReadStatus("x")
			} else {
				status = r.Upgrade(tt.path, tt.extra)
			}
			if status != tt.status {
				t.Fatalf("status %d, want %d; response:\n%s", status, tt.status, r.Response())
			}
			if tt.header != "" && !strings.Contains(r.Response(), tt.header) {
				t.Fatalf("response lacks %q:\n%s", tt.header, r.Response())
			}
			if tt.absent != "" && strings.Contains(strings.ToLower(r.Response()), strings.ToLower(tt.absent)) {
				t.Fatalf("response carries %q:\n%s", tt.absent, r.Response())
			}
		})
	}
}

func TestJoinOnUpgradeAndPing(t *testing.T) {
	gw := startGW(t, nil)
	r := dialRaw(t, gw.addr)
	if st := r.Upgrade("/ws?room=lobby", ""); st != 101 {
		t.Fatalf("status %d", st)
	}
	j := r.NextOp(protocol.OpJoined, 2*time.Second)
	if j.Room != "lobby" {
		t.Fatalf("joined %+v", j)
	}
	h := r.NextOp(protocol.OpHistory, 2*time.Second)
	if h.Room != "lobby" || !h.Complete {
		t.Fatalf("history %+v", h)
	}
	r.Send(ws.OpText, []byte(`{"op":"ping"}`))
	r.NextOp(protocol.OpPong, 2*time.Second)
	// A WebSocket ping is answered with a pong carrying the same payload.
	r.Send(ws.OpPing, []byte("hb"))
	m, err := r.Next(2 * time.Second)
	if err != nil || m.Op != ws.OpPong || string(m.Payload) != "hb" {
		t.Fatalf("pong: %v %+v", err, m)
	}
	// Unknown ops and bad JSON get error frames, not a close.
	r.Send(ws.OpText, []byte(`{"op":"dance"}`))
	if e := r.NextOp(protocol.OpError, 2*time.Second); e.Code != protocol.CodeBadOp {
		t.Fatalf("error %+v", e)
	}
	r.Send(ws.OpText, []byte(`{"op":`))
	if e := r.NextOp(protocol.OpError, 2*time.Second); e.Code != protocol.CodeInvalid {
		t.Fatalf("error %+v", e)
	}
}

// TestByteByByte writes the upgrade and a join one byte at a time: the
// event-loop parser must keep partial input and finish when it completes.
func TestByteByByte(t *testing.T) {
	gw := startGW(t, nil)
	r := dialRaw(t, gw.addr)
	key := ws.NewKey()
	data := ws.AppendClientHandshake(nil, "test", "/ws", key, "")
	hs := len(data)
	data = ws.AppendClientFrame(data, ws.OpText, []byte(`{"op":"join","room":"slow"}`), ws.NewMask())
	for i, b := range data {
		if _, err := r.NetConn().Write([]byte{b}); err != nil {
			t.Fatal(err)
		}
		if i%16 == 0 {
			time.Sleep(time.Millisecond)
		}
		if i == hs-1 {
			if st := r.ReadStatus(key); st != 101 {
				t.Fatalf("status %d", st)
			}
		}
	}
	if j := r.NextOp(protocol.OpJoined, 2*time.Second); j.Room != "slow" {
		t.Fatalf("joined %+v", j)
	}
}

func TestCloseCodes(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.MaxMessage = 1024 })
	big := bytes.Repeat([]byte("a"), 2000)
	tests := []struct {
		name  string
		frame func() []byte
		code  uint16
	}{
		{"unmasked frame", func() []byte { return ws.AppendFrame(nil, ws.OpText, []byte(`{"op":"ping"}`)) }, 1002},
		{"binary frame", func() []byte { return ws.AppendClientFrame(nil, ws.OpBinary, []byte{1, 2}, ws.NewMask()) }, 1003},
		{"too big", func() []byte { return ws.AppendClientFrame(nil, ws.OpText, big, ws.NewMask()) }, 1009},
		{"invalid UTF-8", func() []byte { return ws.AppendClientFrame(nil, ws.OpText, []byte{'"', 0xff, 0xfe}, ws.NewMask()) }, 1007},
		{"reserved opcode", func() []byte { return ws.AppendClientFrame(nil, ws.OpCode(3), nil, ws.NewMask()) }, 1002},
		{"bad close code", func() []byte {
			p := binary.BigEndian.AppendUint16(nil, 1005)
			return ws.AppendClientFrame(nil, ws.OpClose, p, ws.NewMask())
		}, 1002},
		{"normal close", func() []byte {
			return ws.AppendClientFrame(nil, ws.OpClose, ws.AppendClosePayload(nil, 1000, "bye"), ws.NewMask())
		}, 1000},
		{"continuation without start", func() []byte {
			return ws.AppendClientFrame(nil, ws.OpContinuation, []byte("x"), ws.NewMask())
		}, 1002},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, gw.addr)
			if st := r.Upgrade("/ws", ""); st != 101 {
				t.Fatalf("status %d", st)
			}
			if _, err := r.NetConn().Write(tt.frame()); err != nil {
				t.Fatal(err)
			}
			if code := r.CloseCode(3 * time.Second); code != tt.code {
				t.Fatalf("close code %d, want %d", code, tt.code)
			}
		})
	}
}

func TestHandshakeTimeout(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.HandshakeTimeout = 300 * time.Millisecond })
	r := dialRaw(t, gw.addr)
	if _, err := r.NetConn().Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\n")); err != nil {
		t.Fatal(err)
	}
	_ = r.NetConn().SetReadDeadline(time.Now().Add(5 * time.Second))
	start := time.Now()
	_, err := r.Reader().ReadByte()
	if err == nil || errors.Is(err, errTimeout(err)) {
		t.Fatalf("connection not closed: %v", err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Fatalf("closed after %v", d)
	}
}

func errTimeout(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return err
	}
	return errors.New("not a timeout")
}

func TestIdleTimeout(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.IdleTimeout = time.Second })
	r := dialRaw(t, gw.addr)
	if st := r.Upgrade("/ws", ""); st != 101 {
		t.Fatalf("status %d", st)
	}
	// The gateway pings a quiet connection, then closes it with 4002.
	sawPing := false
	deadline := time.Now().Add(5 * time.Second)
	for {
		m, err := r.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("no close: %v", err)
		}
		if m.Op == ws.OpPing {
			sawPing = true
		}
		if m.Op == ws.OpClose {
			code, _, _ := ws.ParseClose(m.Payload)
			if code != protocol.CloseIdleTimeout || !sawPing {
				t.Fatalf("close %d, ping seen %v", code, sawPing)
			}
			return
		}
	}
}

// sweepAfterSend holds loop l, runs send, gives its bytes time to reach
// the socket while the loop does not read them, sweeps as if after had
// passed, and returns what check (run on the loop) then says.
func sweepAfterSend(s *Server, l *loop, after time.Duration, send func(), check func() bool) bool {
	held, sent := make(chan struct{}), make(chan struct{})
	res := make(chan bool, 1)
	l.execute(func() {
		close(held)
		<-sent
		time.Sleep(100 * time.Millisecond) // the bytes reach the socket
		l.sweep(s, time.Now().Add(after))
		res <- check()
	})
	<-held
	send()
	close(sent)
	return <-res
}

// A loop behind on its reads does not close a viewer as idle while the
// viewer's bytes wait in the socket: the loop is held, the viewer sends a
// pong, and a sweep past the idle deadline runs before the loop reads it.
func TestIdleSparesUnreadViewer(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.IdleTimeout = time.Second; c.Loops = 1 })
	r := dialRaw(t, gw.addr)
	if st := r.Upgrade("/ws", ""); st != 101 {
		t.Fatalf("status %d", st)
	}
	loops := gw.s.loopList()
	if len(loops) != 1 {
		t.Fatalf("%d loops, want 1", len(loops))
	}
	l := loops[0]
	open := sweepAfterSend(gw.s, l, 5*time.Second, func() {
		if err := r.Send(ws.OpPong, nil); err != nil {
			t.Error(err)
		}
	}, func() bool { return len(l.conns) == 1 && l.conns[0].state == stateOpen })
	if !open {
		t.Fatal("the viewer was closed as idle with its pong unread in the socket")
	}
}

// TestHandshakeSparesUnreadRequest: a loop that sweeps past the handshake
// timeout before reading a request that arrived in time keeps the
// connection (the upgrade then completes), but not past four timeouts.
func TestHandshakeSparesUnreadRequest(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.Loops = 1 })
	if st := dialRaw(t, gw.addr).Upgrade("/ws", ""); st != 101 { // the loop exists once it has a connection
		t.Fatalf("status %d", st)
	}
	l := gw.s.loopList()[0]
	for _, tc := range []struct {
		after time.Duration
		kept  bool
	}{{6 * time.Second, true}, {21 * time.Second, false}} {
		open := gw.s.nconns.Load()
		r := dialRaw(t, gw.addr)
		for deadline := time.Now().Add(2 * time.Second); gw.s.nconns.Load() == open; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the gateway did not open the connection")
			}
		}
		st := make(chan int, 1)
		kept := sweepAfterSend(gw.s, l, tc.after, func() {
			go func() { st <- r.Upgrade("/ws", "") }()
			time.Sleep(50 * time.Millisecond)
		}, func() bool {
			n := 0
			for _, c := range l.conns {
				if c.state == stateHandshake {
					n++
				}
			}
			return n == 1
		})
		if kept != tc.kept {
			t.Fatalf("sweep %v after open with the request unread: kept %v, want %v", tc.after, kept, tc.kept)
		}
		if got := <-st; tc.kept && got != 101 {
			t.Fatalf("spared connection: upgrade status %d, want 101", got)
		}
	}
}

// TestAcceptWaitsForTheLoop holds the only event loop and dials: the
// connections must wait in the kernel's queue, not be accepted ahead of
// OnOpen (which is what let a starved gateway run out of descriptors and
// stop), and past MaxConns they must be refused once the loop runs.
func TestAcceptWaitsForTheLoop(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.Loops = 1; c.MaxConns = 5; c.MaxConnsPerIP = -1 })
	if st := dialRaw(t, gw.addr).Upgrade("/ws", ""); st != 101 { // the loop exists once it has a connection
		t.Fatalf("status %d", st)
	}
	l := gw.s.loopList()[0]
	held, release := make(chan struct{}), make(chan struct{})
	l.execute(func() {
		close(held)
		<-release
	})
	<-held
	fds := func() int {
		ents, err := os.ReadDir("/proc/self/fd")
		if err != nil {
			t.Fatal(err)
		}
		return len(ents)
	}
	before := fds()
	const n = 40
	conns := make([]net.Conn, n)
	for i := range conns {
		c, err := net.Dial("tcp", gw.addr)
		if err != nil {
			close(release)
			t.Fatal(err)
		}
		defer c.Close()
		conns[i] = c
	}
	time.Sleep(300 * time.Millisecond)
	grown := fds() - before
	close(release)
	if grown > n+2 {
		t.Fatalf("%d descriptors more for %d dials with the loop held: the gateway accepted %d connections it had not opened", grown, n, grown-n)
	}
	refused := 0 // answered 503 at once; the others wait for their handshake
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(time.Second))
		if line, _ := bufio.NewReader(c).ReadString('\n'); strings.Contains(line, "503") {
			refused++
		}
	}
	if refused < n-5 {
		t.Fatalf("%d of %d connections refused past MaxConns 5 (one open before), want at least %d", refused, n, n-5)
	}
}

// TestAddressInUse: without ReusePort a gateway must not start on a port
// another gateway listens on (its own listeners use SO_REUSEPORT).
func TestAddressInUse(t *testing.T) {
	gw := startGW(t, nil)
	signer, _ := auth.NewSigner(testSecret)
	b := bus.NewMemory(bus.MemoryConfig{})
	defer b.Close()
	s, err := New(Config{Addr: gw.addr, ID: "gw-2", Bus: b, History: history.NewMemory(history.MemoryConfig{}),
		Signer: signer, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Run() }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("second gateway on %s: %v, want address already in use", gw.addr, err)
		}
	case <-time.After(5 * time.Second):
		_ = s.Shutdown(context.Background())
		t.Fatal("a second gateway started on a port in use")
	}
}

func TestPerIPCap(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.MaxConnsPerIP = 2 })
	for i := 0; i < 2; i++ {
		if st := dialRaw(t, gw.addr).Upgrade("/ws", ""); st != 101 {
			t.Fatalf("conn %d: status %d", i, st)
		}
	}
	r := dialRaw(t, gw.addr)
	_ = r.NetConn().SetReadDeadline(time.Now().Add(3 * time.Second))
	line, _ := r.Reader().ReadString('\n')
	if !strings.Contains(line, "429") {
		t.Fatalf("third connection got %q, want 429", line)
	}
}

// slowAndFast joins two viewers to room "hot": slow never reads (and has a
// 4 KiB receive buffer), fast has read its history.
func slowAndFast(t *testing.T, gw *testGW) (slow, fast *wstest.Conn) {
	t.Helper()
	slow = dialRaw(t, gw.addr)
	if st := slow.Upgrade("/ws?room=hot", ""); st != 101 {
		t.Fatal(st)
	}
	if tcp, ok := slow.NetConn().(*net.TCPConn); ok {
		_ = tcp.SetReadBuffer(4096)
	}
	fast = dialRaw(t, gw.addr)
	if st := fast.Upgrade("/ws?room=hot", ""); st != 101 {
		t.Fatal(st)
	}
	fast.NextOp(protocol.OpHistory, 2*time.Second)
	time.Sleep(100 * time.Millisecond)
	return slow, fast
}

// TestSlowConsumer fills a viewer that never reads: it must be cut off
// while a reading viewer of the same room keeps receiving.
func TestSlowConsumer(t *testing.T) {
	gw := startGW(t, func(c *Config) {
		c.SoftOutbound = 16 << 10
		c.HardOutbound = 64 << 10
		c.SlowTimeout = 500 * time.Millisecond
	})
	_, fast := slowAndFast(t, gw)

	pub := gw.bus.Publisher(bus.StreamDispatch)
	text := strings.Repeat("x", 900)
	var seq uint64
	ctx := context.Background()
	got := 0
	for round := 0; round < 400 && gw.s.m.slowConsumers != nil; round++ {
		var recs []bus.Record
		for i := 0; i < 20; i++ {
			seq++
			recs = append(recs, bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", []protocol.Message{{Seq: seq, UID: "u", Name: "n", Text: text}})})
		}
		if err := pub.Publish(ctx, recs...); err != nil {
			t.Fatal(err)
		}
		// The fast viewer keeps up.
		for got < int(seq) {
			f := fast.NextOp(protocol.OpBatch, 5*time.Second)
			if f.To != 0 {
				got = int(f.To) // thinned (a loaded machine sheds): may carry no message
			} else {
				got = int(f.Msgs[len(f.Msgs)-1].Seq)
			}
		}
		if counterValue(gw.s.m.slowConsumers) > 0 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if counterValue(gw.s.m.slowConsumers) == 0 {
		t.Fatalf("slow viewer never cut off after %d messages", seq)
	}
	if counterValue(gw.s.m.dropped) == 0 {
		t.Errorf("no batch was dropped at the soft cap before the hard cap")
	}
}

// TestWaitConnsGone: the drain's wait after closing every connection
// returns when the last one closes, not at its bound, and at its bound
// while one stays open (also with a token left from an earlier fall to
// zero).
func TestWaitConnsGone(t *testing.T) {
	s := &Server{connsGone: make(chan struct{}, 1)}
	s.nconns.Store(2)
	done := make(chan struct{})
	go func() { s.waitConnsGone(time.Minute); close(done) }()
	s.connClosed()
	select {
	case <-done:
		t.Fatal("returned with a connection open")
	case <-time.After(50 * time.Millisecond):
	}
	s.connClosed()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("still waiting after the last connection closed")
	}
	select { // a stale token: the count rose again after it
	case s.connsGone <- struct{}{}:
	default: // the last close's token is still there
	}
	s.nconns.Store(1)
	start := time.Now()
	s.waitConnsGone(100 * time.Millisecond)
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Fatalf("returned after %v with a connection open, want the 100ms bound", d)
	}
}

func TestDrain(t *testing.T) {
	gw := startGW(t, nil)
	r := dialRaw(t, gw.addr)
	if st := r.Upgrade("/ws?room=d", ""); st != 101 {
		t.Fatal(st)
	}
	r.NextOp(protocol.OpHistory, 2*time.Second)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = gw.s.Shutdown(ctx)
	}()
	rc := r.NextOp(protocol.OpReconnect, 2*time.Second)
	if rc.AfterMs < 0 || rc.AfterMs > 1000 {
		t.Fatalf("after_ms %d outside the drain spread", rc.AfterMs)
	}
	if code := r.CloseCode(4 * time.Second); code != ws.CloseGoingAway {
		t.Fatalf("close %d, want %d", code, ws.CloseGoingAway)
	}
	// New connections are refused while draining or after.
	if c, err := net.DialTimeout("tcp", gw.addr, time.Second); err == nil {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		key := ws.NewKey()
		_, _ = c.Write(ws.AppendClientHandshake(nil, "x", "/ws", key, ""))
		buf := make([]byte, 64)
		n, _ := c.Read(buf)
		if strings.Contains(string(buf[:n]), " 101 ") {
			t.Fatalf("upgrade accepted during drain")
		}
		c.Close()
	}
}

func TestMultipleRoomsAndLeave(t *testing.T) {
	gw := startGW(t, nil)
	r := dialRaw(t, gw.addr)
	if st := r.Upgrade("/ws", ""); st != 101 {
		t.Fatal(st)
	}
	for _, room := range []string{"m1", "m2"} {
		r.Send(ws.OpText, []byte(fmt.Sprintf(`{"op":"join","room":%q}`, room)))
		r.NextOp(protocol.OpHistory, 2*time.Second)
	}
	pub := gw.bus.Publisher(bus.StreamDispatch)
	publish := func(room string, seq uint64) {
		err := pub.Publish(context.Background(), bus.Record{Key: room, Value: protocol.EncodeBatch(room, []protocol.Message{{Seq: seq, Text: room}})})
		if err != nil {
			t.Fatal(err)
		}
	}
	publish("m1", 1)
	publish("m2", 1)
	seen := map[string]bool{}
	for len(seen) < 2 {
		f := r.NextOp(protocol.OpBatch, 2*time.Second)
		seen[f.Room] = true
	}
	r.Send(ws.OpText, []byte(`{"op":"leave","room":"m1"}`))
	time.Sleep(100 * time.Millisecond)
	publish("m1", 2)
	publish("m2", 2)
	f := r.NextOp(protocol.OpBatch, 2*time.Second)
	if f.Room != "m2" {
		t.Fatalf("batch of %s after leaving it", f.Room)
	}
}

// TestOutboundBudget: a viewer that never reads piles up its backlog; with
// a process-wide budget the gateway starts dropping its batches once the
// sum passes the budget (when its backlog with them would pass a sixteenth
// of the soft cap), without the budget only at the soft cap. A reading
// viewer of the room gets every message either way.
func TestOutboundBudget(t *testing.T) {
	const soft, limit = 1 << 20, 512 << 10
	for _, tc := range []struct {
		name   string
		budget int64
	}{{"on", 128 << 10}, {"off", -1}} {
		t.Run(tc.name, func(t *testing.T) {
			gw := startGW(t, func(c *Config) {
				c.SoftOutbound = soft
				c.HardOutbound = 4 * soft
				c.SlowTimeout = time.Minute
				c.OutboundBudget = tc.budget
			})
			_, fast := slowAndFast(t, gw)

			pub := gw.bus.Publisher(bus.StreamDispatch)
			text := strings.Repeat("x", 900)
			var seq uint64
			var peak int64
			for round := 0; round < 300 && peak < limit+soft/4; round++ {
				var recs []bus.Record
				for range 20 {
					seq++
					recs = append(recs, bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", []protocol.Message{{Seq: seq, UID: "u", Name: "n", Text: text}})})
				}
				if err := pub.Publish(context.Background(), recs...); err != nil {
					t.Fatal(err)
				}
				for got := uint64(0); got < seq; {
					// A batch may carry only a shedding mark (From/To), no
					// messages, when the gateway sheds under this load.
					f := fast.NextOp(protocol.OpBatch, 5*time.Second)
					if n := len(f.Msgs); n > 0 {
						got = f.Msgs[n-1].Seq
					}
					got = max(got, f.To)
				}
				peak = max(peak, gw.s.outbound.Load())
			}
			dropped := counterValue(gw.s.m.dropped)
			t.Logf("peak %d bytes after %d messages, %v batches dropped", peak, seq, dropped)
			if tc.budget > 0 {
				if peak >= limit || dropped == 0 {
					t.Fatalf("with a %d-byte budget: backlog peaked at %d bytes, %v batches dropped; want under %d and some dropped", tc.budget, peak, dropped, limit)
				}
			} else if peak < limit {
				t.Fatalf("without a budget the backlog peaked at %d bytes after %d messages, want past %d", peak, seq, limit)
			}
		})
	}
}

// TestConnIDsDoNotRepeatAcrossRestarts: replies are addressed by gateway id
// and connection id, and the gateway id survives a restart; a send's answer
// that comes after the restart (logic decided a redelivery) must not find a
// new connection with the same number (the fault-schedule checker saw
// acks of one sender reach another).
func TestConnIDsDoNotRepeatAcrossRestarts(t *testing.T) {
	signer, _ := auth.NewSigner(testSecret)
	cfg := Config{Addr: "127.0.0.1:0", ID: "gw-same", Bus: bus.NewMemory(bus.MemoryConfig{}), History: history.NewMemory(history.MemoryConfig{}),
		Signer: signer}
	first, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	for range 100000 { // the first incarnation served many connections
		last = first.nextID.Add(1)
	}
	second, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if id := second.nextID.Add(1); id <= last {
		t.Fatalf("the restarted gateway's first connection id %d repeats the range of the previous one (up to %d)", id, last)
	}
}

// waitLast waits until the gateway has room's seq last.
func waitLast(t *testing.T, gw *testGW, room string, last uint64) {
	t.Helper()
	r := gw.s.rooms.get(room)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(2 * time.Millisecond) {
		r.mu.Lock()
		got := r.last
		r.mu.Unlock()
		if got == last {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the gateway got up to seq %d of %d", got, last)
		}
	}
}
