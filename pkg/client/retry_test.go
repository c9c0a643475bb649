package client

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/ws"
)

func TestRetryAfter(t *testing.T) {
	refused := fmt.Errorf("client: upgrade refused with HTTP 503: %w",
		&ws.HandshakeError{Status: 503, Header: "Retry-After: 1\r\n"})
	for range 100 {
		d, ok := RetryAfter(refused, 5*time.Second)
		if !ok || d < time.Second || d >= 2*time.Second {
			t.Fatalf("RetryAfter = %v, %v; want [1s, 2s), true", d, ok)
		}
	}
	if d, ok := RetryAfter(refused, 1200*time.Millisecond); !ok || d > 1200*time.Millisecond {
		t.Fatalf("RetryAfter with hi 1.2s = %v, %v", d, ok)
	}
	for _, err := range []error{
		errors.New("dial tcp: connection refused"),
		&ws.HandshakeError{Status: 403, Message: "banned"},
	} {
		if d, ok := RetryAfter(err, time.Second); ok {
			t.Errorf("RetryAfter(%v) = %v, true; want false", err, d)
		}
	}
}

// TestReconnectHonoursRetryAfter: after its connection drops, the client
// finds the gateway answering 503 with Retry-After: 1 twice; it waits at
// least the second it was told each time (its own backoff starts at 50 ms)
// and gets back on the third attempt.
func TestReconnectHonoursRetryAfter(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var mu sync.Mutex
	var accepts []time.Time
	upgraded := make(chan net.Conn, 4)
	go func() {
		for n := 0; ; n++ {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			accepts = append(accepts, time.Now())
			mu.Unlock()
			go func(n int, c net.Conn) {
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					c.Close()
					return
				}
				if n == 1 || n == 2 {
					_, _ = c.Write([]byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"))
					c.Close()
					return
				}
				_, _ = c.Write(ws.AppendAccept(nil, req.Header.Get("Sec-WebSocket-Key"), ""))
				upgraded <- c
			}(n, c)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, Config{URL: "ws://" + ln.Addr().String() + "/ws"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	(<-upgraded).Close() // the first connection drops
	select {
	case conn := <-upgraded:
		defer conn.Close()
	case <-ctx.Done():
		t.Fatal("the client did not reconnect")
	}
	mu.Lock()
	defer mu.Unlock()
	if len(accepts) != 4 {
		t.Fatalf("%d connections, want 4", len(accepts))
	}
	for i := 2; i < 4; i++ {
		if gap := accepts[i].Sub(accepts[i-1]); gap < time.Second || gap > 2500*time.Millisecond {
			t.Errorf("attempt %d came %v after a 503 with Retry-After: 1, want 1s to 2s", i, gap)
		}
	}
}
