package gateway

import (
	"net"
	"strconv"
	"testing"
	"time"
)

// TestSetBacklog checks that the listen queue length of a listening
// socket changes: with room for 1 pending connection, dials beyond it are
// not completed while nothing accepts.
func TestSetBacklog(t *testing.T) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	if n := setBacklog(port, 1); n != 1 {
		t.Fatalf("setBacklog changed %d sockets, want 1", n)
	}
	connected := 0
	for range 8 {
		c, err := net.DialTimeout("tcp", "127.0.0.1:"+strconv.Itoa(port), 300*time.Millisecond)
		if err == nil {
			connected++
			defer c.Close()
		}
	}
	// Linux lets backlog+1 connections wait in the accept queue.
	if connected > 2 {
		t.Fatalf("%d of 8 dials completed against a queue of 1", connected)
	}
	if n := setBacklog(port+1, 1); n != 0 && port+1 < 65536 {
		t.Fatalf("setBacklog changed %d sockets on a port nobody here listens on", n)
	}
}
