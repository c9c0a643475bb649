package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
	"github.com/danmaku-live/danmaku/pkg/ws"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// slowloris opens n connections to addr (from 127.0.0.x sources, to
// spread ports) that send an upgrade request one byte per second and
// never finish it. It returns the connections.
func slowloris(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for i := range n {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/50000), byte(2+i%200))}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("slowloris connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// trickle sends the next byte of a request on every connection once a
// second until stop is closed; writes to connections the server closed
// fail and are ignored.
func trickle(conns []net.Conn, stop <-chan struct{}) {
	req := []byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nX-Slow: " + strings.Repeat("a", 100))
	for i := 0; ; i++ {
		for _, c := range conns {
			_ = c.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
			_, _ = c.Write(req[i%len(req) : i%len(req)+1])
		}
		select {
		case <-stop:
			return
		case <-time.After(time.Second):
		}
	}
}

// closedByServer counts the connections whose read ends (EOF or reset)
// rather than times out.
func closedByServer(conns []net.Conn) int {
	n := 0
	buf := make([]byte, 4096)
	for _, c := range conns {
		_ = c.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		for {
			_, err := c.Read(buf)
			if err == nil {
				continue // a 408 or error response before the close
			}
			var ne net.Error
			if !(errors.As(err, &ne) && ne.Timeout()) {
				n++
			}
			break
		}
	}
	return n
}

// badFrames opens n upgraded connections and sends each kind of bad input,
// returning the close codes the server answered with, by kind.
func badFrames(t *testing.T, addr string, n int) map[string]map[uint16]int {
	t.Helper()
	kinds := map[string]func(r *wstest.Conn){
		// An unmasked client frame is a protocol error.
		"unmasked": func(r *wstest.Conn) {
			_, _ = r.NetConn().Write(ws.AppendFrame(nil, ws.OpText, []byte(`{"op":"ping"}`)))
		},
		// A reserved opcode.
		"reserved opcode": func(r *wstest.Conn) { _ = r.Send(ws.OpCode(0x3), []byte("x")) },
		// Invalid UTF-8 in a text frame.
		"invalid utf-8": func(r *wstest.Conn) { _ = r.Send(ws.OpText, []byte{0xff, 0xfe, 0xfd}) },
		// Garbage JSON, again and again.
		"garbage json": func(r *wstest.Conn) {
			for range 200 {
				if r.Send(ws.OpText, []byte(`{"op":"send","room":`)) != nil {
					return
				}
			}
		},
		// A message over the 4 KiB limit.
		"oversized": func(r *wstest.Conn) {
			_ = r.Send(ws.OpText, []byte(`{"op":"send","text":"`+strings.Repeat("x", 64<<10)+`"}`))
		},
	}
	out := map[string]map[uint16]int{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for kind := range kinds {
		out[kind] = map[uint16]int{}
	}
	for kind, attack := range kinds {
		for range n {
			r := wstest.Dial(t, addr)
			wg.Add(1)
			go func() {
				defer wg.Done()
				if st := r.Upgrade("/ws", ""); st != http.StatusSwitchingProtocols {
					mu.Lock()
					out[kind][uint16(st)]++
					mu.Unlock()
					return
				}
				attack(r)
				code := r.CloseCode(10 * time.Second)
				mu.Lock()
				out[kind][code]++
				mu.Unlock()
			}()
		}
	}
	wg.Wait()
	return out
}

// TestFloodsKeepViewerLatency: while slowloris connections (5,000; 10,000
// with DANMAKU_CHAOS=long, against a gateway subprocess) trickle partial
// handshakes and 5 × 40 connections send malformed, invalid or oversized
// frames, a real viewer's send → receive latency stays low; every
// slowloris connection is closed by the handshake timeout and every bad
// connection with its close code.
func TestFloodsKeepViewerLatency(t *testing.T) {
	n := 5000
	var wsAddr, metricsURL string
	if chaosLong() {
		n = 10000
		bin := testenv.Binary(t)
		h, w := freeAddr(t), freeAddr(t)
		p := testenv.Spawn(t, bin, "all", h, mpEnv, "all", "--http", h, "--ws", w, "--jwt-secret", testSecret, "--demo=false",
			"--max-conns-per-ip", "-1", "--log-level", "warn")
		p.WaitReady(t, 30*time.Second)
		wsAddr, metricsURL = w, "http://"+h+"/metrics"
	} else {
		var h string
		h, wsAddr = startAll(t, "--max-conns-per-ip", "-1")
		metricsURL = "http://" + h + "/metrics"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	lp := newLatencyProbe(t, ctx, wsAddr, "flood")
	const probes, interval = 100, 10 * time.Millisecond
	base := lp.run(t, ctx, probes, interval, 20)

	start := time.Now()
	conns := slowloris(t, wsAddr, n)
	dialed := time.Since(start)
	stop := make(chan struct{})
	var twg sync.WaitGroup
	twg.Add(1)
	go func() { defer twg.Done(); trickle(conns, stop) }()
	defer func() { close(stop); twg.Wait() }()

	var codes map[string]map[uint16]int
	var bwg sync.WaitGroup
	bwg.Add(1)
	go func() { defer bwg.Done(); codes = badFrames(t, wsAddr, 40) }()
	var during []time.Duration
	for time.Since(start) < 6*time.Second {
		during = append(during, lp.run(t, ctx, probes, interval, 20)...)
	}
	bwg.Wait()
	// The handshake timeout is 5 s from the connection's open.
	var closed int
	deadline := time.Now().Add(15 * time.Second)
	for {
		closed = closedByServer(conns)
		if closed == n || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	m := scrape(t, nil, metricsURL)
	b99, d99 := pct(base, 99), pct(during, 99)
	t.Logf("%d slowloris connections (dialed in %v): %d closed by the handshake timeout (metric %v); "+
		"viewer p50/p99 %v/%v before, %v/%v during the floods (%d probes)", n, dialed.Round(time.Millisecond), closed,
		m["danmaku_gateway_handshakes_total{result=timeout}"], pct(base, 50).Round(time.Microsecond), b99.Round(time.Microsecond),
		pct(during, 50).Round(time.Microsecond), d99.Round(time.Microsecond), len(during))
	for kind, cs := range codes {
		t.Logf("bad input %-16s close codes %v", kind, cs)
	}
	if closed != n {
		t.Errorf("%d of %d slowloris connections closed by the server", closed, n)
	}
	want := map[string]uint16{"unmasked": ws.CloseProtocolError, "reserved opcode": ws.CloseProtocolError,
		"invalid utf-8": ws.CloseInvalidPayload, "garbage json": protocol.CloseBadFrames, "oversized": ws.CloseMessageTooBig}
	for kind, code := range want {
		if codes[kind][code] != 40 {
			t.Errorf("%s: close codes %v, want 40 × %d", kind, codes[kind], code)
		}
	}
	if d99 > latencyBound(b99) {
		t.Errorf("viewer p99 %v during the floods, %v before", d99, b99)
	}
}
