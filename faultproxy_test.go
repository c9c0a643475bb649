package main

import (
	"io"
	"net"
	"sync"
	"testing"
)

// cutProxy is a loopback TCP proxy in front of a server (Redis,
// ClickHouse) that a test can cut to make an outage without stopping a
// server other tests share. While cut, new connections are accepted and
// closed at once (refuse) or held open without forwarding a byte (hang,
// like a partition: the client waits for its own time-outs); existing
// connections are closed either way.
type cutProxy struct {
	target string
	ln     net.Listener

	mu    sync.Mutex // guards the fields below
	cut   bool
	hang  bool
	conns map[net.Conn]struct{}
}

func newCutProxy(t *testing.T, target string) *cutProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cutProxy{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(func() {
		ln.Close()
		p.setCut(false, false)
		p.closeAll()
	})
	return p
}

// Addr is the proxy's address.
func (p *cutProxy) Addr() string { return p.ln.Addr().String() }

// Cut starts an outage; hang chooses holding connections over refusing.
func (p *cutProxy) Cut(hang bool) {
	p.setCut(true, hang)
	p.closeAll()
}

// Restore ends the outage; connections held while it lasted are closed.
func (p *cutProxy) Restore() {
	p.setCut(false, false)
	p.closeAll()
}

func (p *cutProxy) setCut(cut, hang bool) {
	p.mu.Lock()
	p.cut, p.hang = cut, hang
	p.mu.Unlock()
}

func (p *cutProxy) closeAll() {
	p.mu.Lock()
	conns := p.conns
	p.conns = map[net.Conn]struct{}{}
	p.mu.Unlock()
	for c := range conns {
		c.Close()
	}
}

// track remembers connections to close at the next cut or restore; with
// live set it refuses (false) when a cut began meanwhile.
func (p *cutProxy) track(live bool, cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if live && p.cut {
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

func (p *cutProxy) serve() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		cut, hang := p.cut, p.hang
		p.mu.Unlock()
		if cut {
			if hang {
				p.track(false, c)
			} else {
				c.Close()
			}
			continue
		}
		go p.pipe(c)
	}
}

func (p *cutProxy) pipe(c net.Conn) {
	s, err := net.Dial("tcp", p.target)
	if err != nil {
		c.Close()
		return
	}
	if !p.track(true, c, s) {
		s.Close()
		c.Close()
		return
	}
	go func() {
		_, _ = io.Copy(s, c)
		s.Close()
		c.Close()
	}()
	_, _ = io.Copy(c, s)
	s.Close()
	c.Close()
}
