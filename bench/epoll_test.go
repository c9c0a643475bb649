package bench

import (
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// choppyGateway upgrades one connection, then writes joined, history, a
// ping, seqs 1..n (seq 3 with a text longer than an event loop's read
// buffer) in chunks of chunk bytes, and reports whether the client
// answered the ping with a pong carrying its payload.
func choppyGateway(t *testing.T, n uint64, chunk int) (string, <-chan bool) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	pong := make(chan bool, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		h, _, err := readUpgrade(c, buf)
		if err != nil {
			return
		}
		out := ws.AppendAccept(nil, h.Key, "")
		out = ws.AppendFrame(out, ws.OpText, protocol.Encode(protocol.Joined{Op: protocol.OpJoined, Room: "r", Seq: 0, Online: 1}))
		out = ws.AppendFrame(out, ws.OpText, protocol.EncodeHistory("r", nil, true))
		out = ws.AppendFrame(out, ws.OpPing, []byte("hb"))
		var bigFrom, bigTo int
		for s := uint64(1); s <= n; s++ {
			if s == 3 {
				bigFrom = len(out)
			}
			text := benchText(time.Now().UnixNano(), s)
			if s == 3 {
				text += strings.Repeat("x", loopBuf+1000)
			}
			msg := protocol.Message{Seq: s, UID: "u", Name: "n", Text: text}
			out = ws.AppendFrame(out, ws.OpText, protocol.EncodeBatch("r", []protocol.Message{msg}))
			if s == 3 {
				bigTo = len(out)
			}
		}
		for pos := 0; pos < len(out); {
			k := chunk
			if pos >= bigFrom && pos < bigTo-chunk {
				k = min(bigTo-chunk-pos, loopBuf/2+7) // the long frame in a few reads
			}
			k = min(k, len(out)-pos)
			if _, err := c.Write(out[pos : pos+k]); err != nil {
				return
			}
			pos += k
			time.Sleep(100 * time.Microsecond)
		}
		// The client's pong: a masked frame with "hb".
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		got := make([]byte, 0, 64)
		for len(got) < 8 {
			r, err := c.Read(buf)
			if err != nil {
				break
			}
			got = append(got, buf[:r]...)
		}
		ok := len(got) >= 8 && ws.OpCode(got[0]&0x0f) == ws.OpPong && got[1] == 0x80|2
		if ok {
			p := []byte{got[6] ^ got[2], got[7] ^ got[3]}
			ok = bytes.Equal(p, []byte("hb"))
		}
		pong <- ok
		_ = c.SetReadDeadline(time.Time{})
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	return ln.Addr().String(), pong
}

// TestViewerSplitFramesAndPing feeds frames split over many reads (and one
// longer than an event loop's buffer) and a ping to both implementations.
func TestViewerSplitFramesAndPing(t *testing.T) {
	for _, impl := range []string{ImplEpoll, ImplGoroutine} {
		t.Run(impl, func(t *testing.T) {
			const n = 8
			addr, pong := choppyGateway(t, n, 3)
			cmds := make(chan Command, 1)
			var final Report
			done := make(chan error, 1)
			go func() {
				done <- RunWorker(context.Background(), WorkerSpec{Gateways: []string{addr}, Viewers: []RoomCount{{Room: "r", Count: 1}},
					Tick: 50 * time.Millisecond, ViewerImpl: impl}, cmds, func(r Report) {
					if r.Type == "final" {
						final = r
					}
				})
			}()
			select {
			case ok := <-pong:
				if !ok {
					t.Fatal("no pong with the ping's payload")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("server did not finish")
			}
			cmds <- Command{Cmd: "finish", Final: map[string]uint64{"r": n}, Grace: 3 * time.Second}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if final.Deliveries != n || final.Lost != 0 || final.Dups != 0 || final.Frames != n+3 {
				t.Fatalf("deliveries %d lost %d dups %d frames %d, want %d 0 0 %d", final.Deliveries, final.Lost, final.Dups, final.Frames, n, n+3)
			}
		})
	}
}

// handshakeGateway accepts connections on 127.0.0.1 and calls serve with each
// one and its parsed upgrade request (serve owns the connection). It
// returns the address and the number of connections accepted.
func handshakeGateway(t *testing.T, serve func(c net.Conn, h ws.Handshake)) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var mu sync.Mutex
	var open []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			go func() {
				h, _, err := readUpgrade(c, make([]byte, 4096))
				if err != nil {
					c.Close()
					return
				}
				serve(c, h)
			}()
		}
	}()
	return ln.Addr().String(), &accepted
}

// readUpgrade reads an upgrade request from c into buf and returns it and
// how many bytes of buf it took.
func readUpgrade(c net.Conn, buf []byte) (ws.Handshake, int, error) {
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			return ws.Handshake{}, 0, err
		}
		n += m
		h, _, err := ws.ParseUpgrade(buf[:n], len(buf))
		if !errors.Is(err, ws.ErrNeedMore) {
			return h, n, err
		}
	}
}

// hold keeps c open, reading, until the peer or the test closes it.
func hold(c net.Conn) {
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			c.Close()
			return
		}
	}
}

// joinedFrame is what a gateway sends first after the upgrade.
func joinedFrame(dst []byte) []byte {
	return ws.AppendFrame(dst, ws.OpText, protocol.Encode(protocol.Joined{Op: protocol.OpJoined, Room: "r", Seq: 0, Online: 1}))
}

// goodGateway upgrades every connection, sends joined and keeps it open.
func goodGateway(t *testing.T) string {
	addr, _ := handshakeGateway(t, func(c net.Conn, h ws.Handshake) {
		if _, err := c.Write(joinedFrame(ws.AppendAccept(nil, h.Key, ""))); err != nil {
			c.Close()
			return
		}
		hold(c)
	})
	return addr
}

// startGroup runs an epoll group with one viewer per address (room "r")
// and a handshake timeout of 300 ms; the group stops at the end of the test.
func startGroup(t *testing.T, reconnect bool, srcs []*net.TCPAddr, addrs ...string) (*epollGroup, *stats) {
	t.Helper()
	st := &stats{}
	g, err := newEpollGroup(st, reconnect, 0, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	g.timeout = 300 * time.Millisecond
	for i, a := range addrs {
		var src *net.TCPAddr
		if i < len(srcs) {
			src = srcs[i]
		}
		g.add(i, "r", a, src, "tok"+strconv.Itoa(i), true)
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	g.start(stop, &wg)
	t.Cleanup(func() {
		close(stop)
		g.close()
		wg.Wait()
		for _, l := range g.loops {
			if l.epfd != -1 {
				t.Errorf("loop %d did not end", l.idx)
			}
		}
	})
	return g, st
}

// groupTotals sums the group's shared and per-loop counters.
func groupTotals(g *epollGroup, st *stats) *stats {
	sum := &stats{}
	st.addTo(sum)
	g.addTo(sum)
	return sum
}

// waitFor polls cond every 10 ms for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

// TestEpollHandshakeFailures runs one viewer against a gateway that fails
// its handshake, next to one against a good gateway on the same loops:
// each failure is counted and retried with backoff (once only when
// reconnecting is off), and the good viewer joins all the same.
func TestEpollHandshakeFailures(t *testing.T) {
	refused := func(t *testing.T) (string, *atomic.Int64) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		return addr, nil
	}
	serving := func(serve func(c net.Conn, h ws.Handshake)) func(t *testing.T) (string, *atomic.Int64) {
		return func(t *testing.T) (string, *atomic.Int64) { return handshakeGateway(t, serve) }
	}
	cases := []struct {
		name    string
		gateway func(t *testing.T) (string, *atomic.Int64)
		minWait time.Duration // the first failure comes no sooner
		kind    string        // failKind of every failure
	}{
		{"status 403", serving(func(c net.Conn, h ws.Handshake) {
			_, _ = c.Write(ws.AppendHTTPError(nil, 403, "forbidden", ""))
			hold(c)
		}), 0, "http_403"},
		{"wrong accept", serving(func(c net.Conn, h ws.Handshake) {
			_, _ = c.Write(joinedFrame(ws.AppendAccept(nil, ws.NewKey(), "")))
			hold(c)
		}), 0, "error"},
		{"closed mid-response", serving(func(c net.Conn, h ws.Handshake) {
			_, _ = c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: webso"))
			time.Sleep(20 * time.Millisecond)
			c.Close()
		}), 0, "closed"},
		{"never answers", serving(func(c net.Conn, h ws.Handshake) { hold(c) }), 250 * time.Millisecond, "timeout"},
		{"refused", refused, 0, "refused"},
	}
	for _, tc := range cases {
		for _, reconnect := range []bool{true, false} {
			name := tc.name + "/reconnect"
			if !reconnect {
				name = tc.name + "/once"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				bad, accepted := tc.gateway(t)
				good := goodGateway(t)
				begin := time.Now()
				g, st := startGroup(t, reconnect, nil, bad, good)
				if !waitFor(3*time.Second, func() bool { return st.failed.Load() >= 1 }) {
					t.Fatal("no failure counted")
				}
				if took := time.Since(begin); took < tc.minWait || took > tc.minWait+time.Second {
					t.Errorf("first failure after %v, want %v to %v", took, tc.minWait, tc.minWait+time.Second)
				}
				if !waitFor(3*time.Second, func() bool { return groupTotals(g, st).established.Load() == 1 }) {
					t.Fatal("the viewer of the good gateway did not join")
				}
				if reconnect {
					// Backoff (client.Backoff): 50–150 ms, then 50–250 ms.
					if !waitFor(4*time.Second, func() bool { return st.failed.Load() >= 3 }) {
						t.Fatalf("%d failures, want retries", st.failed.Load())
					}
					if accepted != nil && accepted.Load() < 3 {
						t.Errorf("%d connections accepted, want >= 3", accepted.Load())
					}
				} else {
					time.Sleep(600 * time.Millisecond) // past the first backoff
					if n := st.failed.Load(); n != 1 {
						t.Errorf("%d failures, want 1 (no retry)", n)
					}
					if accepted != nil && accepted.Load() != 1 {
						t.Errorf("%d connections accepted, want 1", accepted.Load())
					}
				}
				s := groupTotals(g, st)
				if s.open.Load() != 1 || s.reconnects.Load() != 0 {
					t.Errorf("open %d reconnects %d, want 1 0", s.open.Load(), s.reconnects.Load())
				}
				// With reconnect the failing viewer goes on failing while
				// this looks: a failure counts in failed, then in failedBy
				// (stats.fail), so the kinds read between two loads of
				// failed hold all of the first load's but one in flight.
				n0 := st.failed.Load()
				by := st.failedBy.snapshot()
				n1 := st.failed.Load()
				if len(by) != 1 || by[tc.kind] < n0-1 || by[tc.kind] > n1 {
					t.Errorf("failures by kind %v, want all %d–%d of kind %s", by, n0, n1, tc.kind)
				}
				g.qmu.Lock()
				inflight := g.inflight
				g.qmu.Unlock()
				if inflight > 1 {
					t.Errorf("%d slots held, want at most the failing viewer's", inflight)
				}
			})
		}
	}
}

// TestEpollHandshakeSplit answers the upgrade a few bytes per read, with
// the end of the response and the first frames in one write, to a viewer
// bound to 127.0.0.2 that sends a token; a second viewer dials a host
// name (the blocking fallback).
func TestEpollHandshakeSplit(t *testing.T) {
	const n = 5
	type req struct {
		remote, query, auth string
	}
	reqs := make(chan req, 4)
	addr, _ := handshakeGateway(t, func(c net.Conn, h ws.Handshake) {
		reqs <- req{c.RemoteAddr().(*net.TCPAddr).IP.String(), h.RawQuery, h.Authorization}
		resp := ws.AppendAccept(nil, h.Key, "")
		tail := resp[len(resp)-3:]
		for i := 0; i < len(resp)-3; i += 7 {
			if _, err := c.Write(resp[i:min(i+7, len(resp)-3)]); err != nil {
				c.Close()
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
		out := joinedFrame(append([]byte(nil), tail...))
		out = ws.AppendFrame(out, ws.OpText, protocol.EncodeHistory("r", nil, true))
		for s := uint64(1); s <= n; s++ {
			msg := protocol.Message{Seq: s, UID: "u", Name: "n", Text: benchText(time.Now().UnixNano(), s)}
			out = ws.AppendFrame(out, ws.OpText, protocol.EncodeBatch("r", []protocol.Message{msg}))
		}
		if _, err := c.Write(out); err != nil {
			c.Close()
			return
		}
		hold(c)
	})
	_, port, _ := net.SplitHostPort(addr)
	g, st := startGroup(t, true, []*net.TCPAddr{{IP: net.IPv4(127, 0, 0, 2)}}, addr, net.JoinHostPort("localhost", port))
	if g.conns[0].t.raw != true || g.conns[1].t.raw != false {
		t.Fatalf("raw %v %v, want the IPv4 address on the loop, the host name dialed", g.conns[0].t.raw, g.conns[1].t.raw)
	}
	if !waitFor(3*time.Second, func() bool { return groupTotals(g, st).deliveries.Load() == 2*n }) {
		s := groupTotals(g, st)
		t.Fatalf("deliveries %d established %d failed %d, want %d 2 0", s.deliveries.Load(), s.established.Load(), s.failed.Load(), 2*n)
	}
	s := groupTotals(g, st)
	if s.established.Load() != 2 || s.failed.Load() != 0 || s.open.Load() != 2 || s.frames.Load() != 2*(n+2) || s.dups.Load() != 0 {
		t.Errorf("established %d failed %d open %d frames %d dups %d, want 2 0 2 %d 0",
			s.established.Load(), s.failed.Load(), s.open.Load(), s.frames.Load(), s.dups.Load(), 2*(n+2))
	}
	var conn Hist
	g.take(&Hist{}, &conn)
	if conn.Count() != 2 {
		t.Errorf("%d connection times, want 2", conn.Count())
	}
	got := map[string]req{}
	for range 2 {
		r := <-reqs
		got[r.auth] = r
	}
	if r := got["Bearer tok0"]; r.remote != "127.0.0.2" || r.query != "room=r" {
		t.Errorf("viewer 0: request from %q for %q, want 127.0.0.2 and room=r (%v)", r.remote, r.query, got)
	}
	if _, ok := got["Bearer tok1"]; !ok {
		t.Errorf("viewer 1: no request with its token (%v)", got)
	}
}

// TestEpollReconnectResumes drops the open connections: they connect on
// the loops again with resume from the last seq seen.
func TestEpollReconnectResumes(t *testing.T) {
	queries := make(chan string, 8)
	addr, _ := handshakeGateway(t, func(c net.Conn, h ws.Handshake) {
		queries <- h.RawQuery
		out := joinedFrame(ws.AppendAccept(nil, h.Key, ""))
		msg := protocol.Message{Seq: 7, UID: "u", Name: "n", Text: "x"}
		out = ws.AppendFrame(out, ws.OpText, protocol.EncodeBatch("r", []protocol.Message{msg}))
		if _, err := c.Write(out); err != nil {
			c.Close()
			return
		}
		hold(c)
	})
	g, st := startGroup(t, true, nil, addr)
	if q := <-queries; q != "room=r" {
		t.Fatalf("first query %q", q)
	}
	if !waitFor(3*time.Second, func() bool { return groupTotals(g, st).deliveries.Load() == 1 }) {
		t.Fatal("no delivery")
	}
	g.drop()
	select {
	case q := <-queries:
		if q != "room=r&resume=7" {
			t.Errorf("query after the drop %q, want room=r&resume=7", q)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("no reconnect after the drop")
	}
	if !waitFor(3*time.Second, func() bool { return st.reconnects.Load() == 1 && groupTotals(g, st).open.Load() == 1 }) {
		t.Errorf("reconnects %d open %d, want 1 1", st.reconnects.Load(), groupTotals(g, st).open.Load())
	}
}

// BenchmarkEpollConnect connects batches of viewers to an in-process
// gateway that upgrades them and sends joined, on the event loops ("loop")
// and through the blocking dialer the loops fall back to ("dialer"). It
// reports the process's CPU per connection: both sides of each connection,
// so the difference between the two is the viewers' saving.
func BenchmarkEpollConnect(b *testing.B) {
	for _, raw := range []bool{true, false} {
		name := "loop"
		if !raw {
			name = "dialer"
		}
		b.Run(name, func(b *testing.B) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					c, err := ln.Accept()
					if err != nil {
						return
					}
					go func() {
						defer c.Close()
						buf := make([]byte, 1024)
						h, n, err := readUpgrade(c, buf)
						if err != nil {
							return
						}
						if _, err := c.Write(joinedFrame(ws.AppendAccept(buf[n:n], h.Key, ""))); err != nil {
							return
						}
						_, _ = c.Read(buf) // until the viewer closes
					}()
				}
			}()
			var cpu time.Duration
			for done := 0; done < b.N; {
				batch := min(b.N-done, 2000)
				st := &stats{}
				g, err := newEpollGroup(st, false, 0, 0, 256)
				if err != nil {
					b.Fatal(err)
				}
				for i := range batch {
					g.add(i, "r", ln.Addr().String(), nil, "", false)
				}
				g.conns[0].t.raw = raw
				before := processCPU()
				stop := make(chan struct{})
				var wg sync.WaitGroup
				g.start(stop, &wg)
				if !waitFor(30*time.Second, func() bool { return groupTotals(g, st).established.Load() == int64(batch) }) {
					b.Fatalf("%d of %d joined, %d failed", groupTotals(g, st).established.Load(), batch, st.failed.Load())
				}
				cpu += processCPU() - before
				close(stop)
				g.close()
				wg.Wait()
				done += batch
			}
			b.ReportMetric(float64(cpu.Microseconds())/float64(b.N), "cpu-µs/conn")
		})
	}
}

// processCPU is the process's user and system CPU time so far.
func processCPU() time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestDialFailKinds checks failKind on the errors of the goroutine
// viewers' dial (dialWS) for the same failures as above.
func TestDialFailKinds(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	forbidden, _ := handshakeGateway(t, func(c net.Conn, h ws.Handshake) {
		_, _ = c.Write(ws.AppendHTTPError(nil, 403, "forbidden", ""))
		hold(c)
	})
	silent, _ := handshakeGateway(t, func(c net.Conn, h ws.Handshake) { hold(c) })
	closing, _ := handshakeGateway(t, func(c net.Conn, h ws.Handshake) { c.Close() })
	for addr, want := range map[string]string{refused: "refused", forbidden: "http_403", silent: "timeout", closing: "closed"} {
		_, _, err := dialWS(addr, nil, "/ws?room=r", "", 300*time.Millisecond)
		if got := failKind(err); err == nil || got != want {
			t.Errorf("dial %s: err %v, kind %q, want %q", addr, err, got, want)
		}
	}
}

// TestEpollRetryAfter: a gateway that answers 503 with Retry-After: 1 is
// retried after the second it asked for (plus jitter), not on the growing
// backoff that starts at 50 ms.
func TestEpollRetryAfter(t *testing.T) {
	var mu sync.Mutex
	var at []time.Time
	addr, _ := handshakeGateway(t, func(c net.Conn, h ws.Handshake) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		_, _ = c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"))
		c.Close()
	})
	_, st := startGroup(t, true, nil, addr)
	if !waitFor(7*time.Second, func() bool { return st.failed.Load() >= 3 }) {
		t.Fatalf("%d failures, want 3", st.failed.Load())
	}
	mu.Lock()
	defer mu.Unlock()
	for i := 1; i < len(at); i++ {
		if gap := at[i].Sub(at[i-1]); gap < time.Second || gap > 2500*time.Millisecond {
			t.Errorf("attempt %d came %v after a 503 with Retry-After: 1, want 1s to 2s", i, gap)
		}
	}
	if by := st.failedBy.snapshot(); by["http_503"] != st.failed.Load() {
		t.Errorf("failures by kind %v, want all http_503", by)
	}
}

// TestSpillOverOn503: with --affinity a viewer refused with 503 by its
// room's gateway (at its connection cap) tries the next gateway, round the
// list, as the nginx router's next-upstream does; any other failure
// retries the same gateway, and without spillOver a 503 does too.
func TestSpillOverOn503(t *testing.T) {
	gws := []string{"127.0.0.1:1001", "127.0.0.1:1002", "127.0.0.1:1003"}
	g, err := newEpollGroup(&stats{}, false, 0, 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}
	g.add(0, "r", gws[0], nil, "", false)
	g.add(1, "r", gws[2], src, "", false)
	g.add(2, "r", gws[1], nil, "", false)
	full := &ws.HandshakeError{Status: http.StatusServiceUnavailable}
	c := g.conns[0]
	g.fail(c, full)
	if c.t.addr != gws[0] {
		t.Fatalf("without spillOver a 503 moved the viewer to %s", c.t.addr)
	}
	g.spillOver(gws)
	for _, want := range []string{gws[1], gws[2], gws[0]} {
		g.fail(c, full)
		if c.t.addr != want {
			t.Fatalf("after a 503 the viewer tries %s, want %s", c.t.addr, want)
		}
	}
	c1 := g.conns[1]
	g.fail(c1, full)
	if c1.t.addr != gws[0] || c1.t.src != src {
		t.Fatalf("from %v at %s after a 503: now %s from %v; want %s from the same source", src, gws[2], c1.t.addr, c1.t.src, gws[0])
	}
	c2 := g.conns[2]
	for _, e := range []error{&ws.HandshakeError{Status: http.StatusBadRequest}, errTimedOut, syscall.ECONNREFUSED} {
		g.fail(c2, e)
		if c2.t.addr != gws[1] {
			t.Fatalf("%v moved the viewer to %s", e, c2.t.addr)
		}
	}
}

// TestEpollReadKeepsSplitFrames reads frames split anywhere from a socket
// through eloop.read: a read with nothing behind a split frame (EAGAIN)
// keeps it, a read after it brings its end and the next frames at once,
// and a frame longer than half the loop's buffer is read into its own.
func TestEpollReadKeepsSplitFrames(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[1])
	for _, fd := range fds {
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUF, 4<<20)
		_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, 4<<20)
	}
	l, conns := benchLoop(1, true)
	c := conns[0]
	c.fd = int32(fds[0])
	l.conns[c.fd] = c
	defer func() {
		if c.fd >= 0 {
			unix.Close(int(c.fd))
		}
	}()
	frame := func(first, n uint64, pad int) []byte {
		var m []protocol.Message
		for s := first; s < first+n; s++ {
			m = append(m, protocol.Message{Seq: s, UID: "u", Name: "n", Text: benchText(time.Now().UnixNano(), s) + strings.Repeat("x", pad)})
		}
		return ws.AppendFrame(nil, ws.OpText, protocol.EncodeBatch("r", m))
	}
	send := func(b []byte) {
		t.Helper()
		if n, err := unix.Write(fds[1], b); err != nil || n != len(b) {
			t.Fatalf("write %d of %d: %v", n, len(b), err)
		}
	}
	check := func(step string, last, delivered uint64, split bool) {
		t.Helper()
		if c.state != stOpen || c.s.tr.Last() != last || c.s.tr.Delivered != delivered || c.s.tr.Gaps() != 0 || (c.rest != nil) != split {
			t.Fatalf("%s: open %v last %d delivered %d gaps %d split %v; want last %d delivered %d split %v",
				step, c.state == stOpen, c.s.tr.Last(), c.s.tr.Delivered, c.s.tr.Gaps(), c.rest != nil, last, delivered, split)
		}
	}
	a, b, d := frame(1, 10, 0), frame(11, 5, 0), frame(16, 3, 0)
	send(a[:7])
	l.read(c)
	check("a's header split", 0, 0, true)
	l.read(c) // EAGAIN
	check("nothing more", 0, 0, true)
	send(a[7 : len(a)-3])
	l.read(c)
	check("a's end missing", 0, 0, true)
	send(append(append(append([]byte{}, a[len(a)-3:]...), b...), d[:len(d)/2]...))
	l.read(c)
	check("a's end, b, half of d", 15, 15, true)
	send(d[len(d)/2:])
	l.read(c)
	check("d's end", 18, 18, false)
	big := frame(19, 4, loopBuf/6) // over half the loop's buffer
	send(big[:loopBuf/4])
	l.read(c)
	check("big frame begun", 18, 18, true)
	if cap(c.rest) != len(big) {
		t.Fatalf("split big frame kept in %d bytes; want its %d", cap(c.rest), len(big))
	}
	send(big[loopBuf/4:])
	for range 4 {
		l.read(c)
	}
	check("big frame", 22, 22, false)
	send(d)
	l.read(c)
	check("d again", 22, 22, false)
	if c.s.tr.Dups != 3 || l.st.frames.Load() != 5 {
		t.Fatalf("dups %d frames %d; want 3 and 5", c.s.tr.Dups, l.st.frames.Load())
	}
}
