// Package gateway is the WebSocket edge of danmaku: gnet event loops that
// hold viewers' connections, parse RFC 6455 frames without blocking
// (pkg/ws), forward sends to logic over the bus, and write each batch from
// dispatch — encoded once — to every local viewer of its room.
//
// # Who owns what
//
//   - Each event loop owns its connections (conn), their memberships
//     (member) and its room index (loop.rooms): touched only in gnet
//     callbacks and in tasks queued with loop.execute.
//   - room (shared by all loops) holds a room's ring of recent messages,
//     per-loop viewer counts and its pending store load (room.fill, with
//     the joins waiting on it) under room.mu; the load runs on its own
//     goroutine and hands each waiter back to its loop.
//   - Each loop's outbox (loop.out, under loop.out.mu) is where other
//     goroutines leave frames for the loop's viewers; at most one flush task
//     per loop is pending at a time (paced by the last flush's fan-out
//     cost, its timer queues it), and the flush (on the loop) writes each
//     viewer everything queued for it in one write or writev. loop.cork
//     (on the loop) gathers a connection's writes while it finishes its
//     handshake.
//   - The dispatch goroutine reads batches, appends them to rings, sheds
//     what an overloaded gateway cannot write (room.shed, under room.mu:
//     once per gateway, so every viewer of a room gets the same stream)
//     and puts the framed batch in the outbox of every loop with viewers.
//     The shed goroutine reads the loops' lag and the rooms' pressure,
//     sets each room's shed budget and posts, under room.mu, the batch
//     that covers seqs left out when no batch followed them. The control
//     goroutine does the same for deletions, purges and notices and queues
//     kicks with loop.execute; the reply goroutine routes acks and rejects to
//     the sender's loop; the ingest goroutine publishes sends; the presence
//     goroutine reports counts and sends online frames. None of them touches
//     a conn directly.
//
// Lock order: rooms shard lock → room.mu → loop.out.mu (the shed
// goroutine posts under room.mu). usersMu and ipMu are leaves.
package gateway

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/panjf2000/gnet/v2"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// Server is a gateway. Create it with New, start it with Run, stop it with
// Shutdown.
type Server struct {
	cfg   Config
	m     *metrics
	rooms *rooms

	ctx    context.Context // cancelled when the server stops
	cancel context.CancelFunc
	wg     sync.WaitGroup // background goroutines

	eng      gnet.Engine // guarded by loopsMu (replaced when the engine restarts)
	booted   chan struct{}
	addr     atomic.Value // string: bound address
	clock    atomic.Int64 // coarse Unix ms, updated by the ticker
	draining atomic.Bool
	stopped  chan struct{}

	loopsMu sync.Mutex // guards loops, loopOf and eng
	loops   []*loop
	loopOf  map[gnet.EventLoop]*loop

	nconns atomic.Int64
	// outbound is the viewers' outbound backlog in bytes as their loops
	// last saw it (at each write to a viewer and every sweep, each adding
	// the change: conn.count), checked against Config.OutboundBudget.
	outbound atomic.Int64
	// nextID numbers connections. It starts at the process's start time
	// in nanoseconds, not at 0: replies are addressed by gateway id and
	// connection id, the gateway id survives a restart, and logic may
	// answer a send made before the restart afterwards (a redelivery);
	// that answer must not reach whichever new connection got the same
	// number.
	nextID atomic.Uint64
	// tsBase is the smallest (arrival − accepted ts) of a batch seen, in
	// ns: the transit of an unqueued pipeline plus the clocks' offset (see
	// born). unsetBase before the first.
	tsBase atomic.Int64
	// shedZ compresses the shed goroutine's cover batches; owned by it
	// (stepLocked).
	shedZ ws.Deflater
	// ndeflate counts open connections that negotiated permessage-deflate;
	// batches are compressed only while it is above zero.
	ndeflate atomic.Int64

	ipMu  sync.Mutex
	perIP map[netip.Addr]int32

	// senders maps conn id → *conn for connections that sent something,
	// so replies find them. Values are only dereferenced on their loop.
	senders sync.Map
	// users maps uid → its connections (for kicks). Values are only
	// dereferenced on their loop.
	usersMu sync.Mutex
	users   map[string]map[*conn]struct{}

	ingest chan bus.Ingest
	// endIngest closes ingest once: in Shutdown, or when Run ends without
	// one (the engine failed to start), so that runIngest returns.
	endIngest sync.Once
	// histSem holds a slot for every history-store load in flight
	// (Config.MaxHistoryLoads): loadHistory and fillRing.
	histSem chan struct{}
	// sess keeps one connection per user and device; nil without
	// Config.Sessions.
	sess *sessions
}

// New returns a gateway for cfg.
func New(cfg Config) (*Server, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Loops <= 0 {
		cfg.Loops = max(1, runtime.GOMAXPROCS(0))
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &Server{
		cfg:     cfg,
		rooms:   newRooms(cfg.Loops),
		ctx:     ctx,
		cancel:  cancel,
		booted:  make(chan struct{}),
		stopped: make(chan struct{}),
		loopOf:  make(map[gnet.EventLoop]*loop),
		perIP:   make(map[netip.Addr]int32),
		users:   make(map[string]map[*conn]struct{}),
		ingest:  make(chan bus.Ingest, cfg.IngestQueue),
		histSem: make(chan struct{}, cfg.MaxHistoryLoads),
	}
	s.m = newMetrics(cfg.Registerer, &s.outbound)
	s.nextID.Store(uint64(time.Now().UnixNano()))
	s.tsBase.Store(unsetBase)
	s.clock.Store(time.Now().UnixMilli())
	s.addr.Store(cfg.Addr)
	if cfg.Sessions != nil {
		s.sess = newSessions(s, cfg.Sessions, cfg.SessionTTL)
	}
	return s, nil
}

// ID returns the gateway id.
func (s *Server) ID() string { return s.cfg.ID }

// Addr returns the bound address (after Ready).
func (s *Server) Addr() string { return s.addr.Load().(string) }

// Ready is closed once the gateway listens.
func (s *Server) Ready() <-chan struct{} { return s.booted }

// Done is closed when Run stops serving. If the engine fails before it
// listens (the port is taken), Done is closed before Ready.
func (s *Server) Done() <-chan struct{} { return s.stopped }

func (s *Server) nowMs() int64 { return s.clock.Load() }

// listenAddr returns the address gnet listens on. gnet always runs with
// SO_REUSEPORT, one listener per event loop: each loop then accepts one
// connection at a time and OnOpen can refuse it past MaxConns before the
// next accept. Without it gnet accepts on a goroutine of its own until the
// queue is empty and hands the connections to the loops; a loop starved
// of CPU lets that goroutine run ahead of OnOpen until accept fails with
// EMFILE, which stops the engine and drops every connection (22 of 52
// gateways in a 1M-viewer bench did). Unless Config.ReusePort asks to
// share the port, listenAddr first binds Addr without SO_REUSEPORT, which
// fails if anyone listens there. It pins port 0 to the port it got, so
// every loop's listener binds the same one.
func (s *Server) listenAddr() (string, error) {
	if _, port, _ := net.SplitHostPort(s.cfg.Addr); s.cfg.ReusePort && port != "0" {
		return s.cfg.Addr, nil
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return "", err
	}
	addr := ln.Addr().String()
	return addr, ln.Close()
}

// Run starts the background goroutines and serves until Shutdown. It
// returns nil after a Shutdown, or the error that stopped the engine.
func (s *Server) Run() error {
	bg := []func(){s.runDispatch, s.runControl, s.runReplies, s.runIngest, s.runPresence}
	if s.sess != nil {
		bg = append(bg, s.sess.run)
	}
	if s.cfg.ShedDelay > 0 && !s.cfg.manualShed {
		bg = append(bg, s.runShed)
	}
	for _, f := range bg {
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			f()
		}()
	}
	addr, err := s.listenAddr()
	for err == nil {
		err = gnet.Run(&handler{s: s}, "tcp://"+addr,
			gnet.WithMulticore(true),
			gnet.WithNumEventLoop(s.cfg.Loops),
			gnet.WithReusePort(true), // see listenAddr
			gnet.WithReuseAddr(true),
			gnet.WithTicker(true),
			gnet.WithTCPNoDelay(gnet.TCPNoDelay),
			gnet.WithLogger(gnetLogger{s.cfg.Logger}),
		)
		if err != nil || s.draining.Load() || s.ctx.Err() != nil {
			break
		}
		// The engine stopped by itself: gnet shuts it down when accept
		// fails, e.g. with EMFILE when a reconnect storm's new connections
		// arrive before the old ones are closed. Every connection was
		// closed with it (clients reconnect and resume); serve again on
		// the address it had.
		s.cfg.Logger.Error("gateway: engine stopped (accept failed, open-file limit?); restarting", "addr", s.Addr())
		s.m.restarts.Inc()
		s.loopsMu.Lock()
		s.loops, s.loopOf = nil, make(map[gnet.EventLoop]*loop)
		s.loopsMu.Unlock()
		addr = s.Addr()
		select {
		case <-s.ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	s.cancel()
	if !s.draining.Load() {
		s.endIngest.Do(func() { close(s.ingest) }) // no Shutdown will: the engine failed
	}
	s.wg.Wait()
	close(s.stopped)
	select {
	case <-s.booted:
	default:
		close(s.booted) // never booted: unblock waiters
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// Shutdown drains the gateway: it stops accepting connections, sends every
// client a reconnect frame with a random after_ms spread over half the
// drain timeout, closes each with 1001 at that time, then stops the
// engine. Sends already queued are published before it returns.
func (s *Server) Shutdown(ctx context.Context) error {
	if !s.draining.CompareAndSwap(false, true) {
		<-s.stopped
		return nil
	}
	select {
	case <-s.booted:
	case <-ctx.Done():
		return ctx.Err()
	}
	deadline := time.Now().Add(s.cfg.DrainTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	spread := time.Until(deadline) / 2
	for _, l := range s.loopList() {
		l.execute(func() {
			now := s.nowMs()
			// Iterate over a copy: a failing write closes a connection at
			// once, which removes it from l.conns.
			for _, c := range append([]*conn(nil), l.conns...) {
				switch c.state {
				case stateHandshake:
					c.abort("drain")
				case stateOpen:
					after := int64(0)
					if spread > 0 {
						after = rand.Int64N(spread.Milliseconds() + 1)
					}
					c.write(protocol.Encode(protocol.Reconnect{Op: protocol.OpReconnect, AfterMs: after}))
					c.closeAt = now + after
				}
			}
		})
	}
	// Sweep often until every client is gone or the deadline passes.
	t := time.NewTicker(50 * time.Millisecond)
	defer t.Stop()
	for s.nconns.Load() > 0 && time.Now().Before(deadline) {
		<-t.C
		s.clock.Store(time.Now().UnixMilli())
		now := time.Now()
		for _, l := range s.loopList() {
			l.execute(func() { l.sweep(s, now) })
		}
	}
	for _, l := range s.loopList() {
		l.execute(func() {
			for _, c := range append([]*conn(nil), l.conns...) {
				c.closeWith(1001, "server draining", "drain")
			}
		})
	}
	// Give the loops a moment to flush close frames.
	for i := 0; i < 20 && s.nconns.Load() > 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	s.endIngest.Do(func() { close(s.ingest) }) // the ingest goroutine publishes what is queued, then exits
	stopCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.loopsMu.Lock()
	eng := s.eng
	s.loopsMu.Unlock()
	err := eng.Stop(stopCtx)
	select {
	case <-s.stopped:
	case <-ctx.Done():
		return ctx.Err()
	}
	return err
}

func (s *Server) loopList() []*loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	return append([]*loop(nil), s.loops...)
}

// loopFor returns the loop state for el, creating it on first use.
func (s *Server) loopFor(el gnet.EventLoop) *loop {
	s.loopsMu.Lock()
	defer s.loopsMu.Unlock()
	l := s.loopOf[el]
	if l == nil {
		l = &loop{idx: len(s.loops), el: el, rooms: make(map[string]*loopRoom)}
		if l.idx >= s.cfg.Loops {
			// gnet made more loops than configured; share the last index.
			l.idx = s.cfg.Loops - 1
		}
		s.loopOf[el] = l
		s.loops = append(s.loops, l)
	}
	return l
}

func (s *Server) originAllowed(origin string) bool {
	for _, o := range s.cfg.AllowedOrigins {
		if o == origin || o == "*" {
			return true
		}
	}
	return false
}

func (s *Server) addUser(c *conn) {
	uid := c.claims.UID()
	s.usersMu.Lock()
	set := s.users[uid]
	if set == nil {
		set = make(map[*conn]struct{}, 1)
		s.users[uid] = set
	}
	set[c] = struct{}{}
	s.usersMu.Unlock()
}

func (s *Server) removeUser(c *conn) {
	uid := c.claims.UID()
	s.usersMu.Lock()
	if set := s.users[uid]; set != nil {
		delete(set, c)
		if len(set) == 0 {
			delete(s.users, uid)
		}
	}
	s.usersMu.Unlock()
}

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
		s.nconns.Add(-1)
		s.m.closes.WithLabelValues("max_conns").Inc()
		return []byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"), gnet.Close
	}
	if s.cfg.MaxConnsPerIP > 0 {
		s.ipMu.Lock()
		n := s.perIP[ip] + 1
		if int(n) > s.cfg.MaxConnsPerIP {
			s.ipMu.Unlock()
			s.nconns.Add(-1)
			s.m.closes.WithLabelValues("per_ip").Inc()
			return []byte("HTTP/1.1 429 Too Many Requests\r\nConnection: close\r\nRetry-After: 5\r\nContent-Length: 0\r\n\r\n"), gnet.Close
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
	s.nconns.Add(-1)
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
