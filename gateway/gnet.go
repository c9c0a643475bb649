// gnet's callbacks (boot, open, traffic, close, tick): each runs on the connection's event loop, OnTick on gnet's ticker goroutine.

package gateway

import (
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/danmaku-live/danmaku/pkg/ws"
)

// handler adapts gnet's callbacks to the server.
type handler struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (h *handler) OnBoot(eng gnet.Engine) gnet.Action {
	s := h.s
	s.loopsMu.Lock()
	s.eng = eng
	s.loopsMu.Unlock()
	if s.draining.Load() {
		return gnet.Shutdown // Shutdown began while the engine restarted
	}
	if fd, err := eng.Dup(); err == nil {
		if sa, err := syscall.Getsockname(fd); err == nil {
			if in4, ok := sa.(*syscall.SockaddrInet4); ok {
				s.addr.Store(netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port)).String())
			}
		}
		_ = syscall.Close(fd)
	}
	s.cfg.Logger.Info("gateway listening", "addr", s.Addr(), "id", s.cfg.ID, "loops", s.cfg.Loops, "max_conns", s.cfg.MaxConns)
	select {
	case <-s.booted: // a restart
	default:
		close(s.booted)
	}
	return gnet.None
}

func (h *handler) OnOpen(gc gnet.Conn) ([]byte, gnet.Action) {
	s := h.s
	var ip netip.Addr
	if ta, ok := gc.RemoteAddr().(*net.TCPAddr); ok {
		ip, _ = netip.AddrFromSlice(ta.IP)
		ip = ip.Unmap()
	}
	if s.draining.Load() {
		return nil, gnet.Close
	}
	if s.nconns.Add(1) > int64(s.cfg.MaxConns) {
		s.connClosed()
		s.m.closes.WithLabelValues("max_conns").Inc()
		return ws.AppendHTTPError(nil, 503, "server full, retry", "Retry-After: 1\r\n"), gnet.Close
	}
	if s.cfg.MaxConnsPerIP > 0 {
		s.ipMu.Lock()
		n := s.perIP[ip] + 1
		if int(n) > s.cfg.MaxConnsPerIP {
			s.ipMu.Unlock()
			s.connClosed()
			s.m.closes.WithLabelValues("per_ip").Inc()
			return ws.AppendHTTPError(nil, 429, "too many connections from this address", "Retry-After: 5\r\n"), gnet.Close
		}
		s.perIP[ip] = n
		s.ipMu.Unlock()
	}
	s.m.conns.Inc()
	c := &conn{s: s, gc: gc, lp: s.loopFor(gc.EventLoop()), id: s.nextID.Add(1), ip: ip, opened: s.nowMs()}
	c.rd.MaxMessage = s.cfg.MaxMessage
	c.lp.addConn(c)
	gc.SetContext(c)
	return nil, gnet.None
}

func (h *handler) OnClose(gc gnet.Conn, _ error) gnet.Action {
	s := h.s
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.None // refused in OnOpen
	}
	c.state = stateClosing
	for len(c.rooms) > 0 {
		c.removeMember(c.rooms[len(c.rooms)-1])
	}
	c.lp.removeConn(c)
	if c.registered {
		s.senders.Delete(c.id)
	}
	if c.claims != nil {
		s.removeUser(c)
		if s.sess != nil && c.claims.Device != "" {
			s.sess.close(c)
		}
	}
	if s.cfg.MaxConnsPerIP > 0 {
		s.ipMu.Lock()
		if n := s.perIP[c.ip] - 1; n > 0 {
			s.perIP[c.ip] = n
		} else {
			delete(s.perIP, c.ip)
		}
		s.ipMu.Unlock()
	}
	if c.deflate {
		s.ndeflate.Add(-1)
	}
	if c.compact {
		s.ncompact.Add(-1)
	}
	s.connClosed()
	s.m.conns.Dec()
	gc.SetContext(nil)
	return gnet.None
}

func (h *handler) OnTraffic(gc gnet.Conn) gnet.Action {
	c, ok := gc.Context().(*conn)
	if !ok {
		return gnet.Close
	}
	return c.onTraffic()
}

// OnTick runs on gnet's ticker goroutine: it advances the coarse clock and
// queues a sweep on every loop.
func (h *handler) OnTick() (time.Duration, gnet.Action) {
	s := h.s
	now := time.Now()
	s.clock.Store(now.UnixMilli())
	for _, l := range s.loopList() {
		l.execute(func() { l.sweep(s, now) })
	}
	return min(time.Second, s.cfg.IdleTimeout/4, s.cfg.HandshakeTimeout/2, s.cfg.SlowTimeout/2), gnet.None
}

// gnetLogger routes gnet's logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
