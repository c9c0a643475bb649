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
//     per-loop viewer counts and its store loads in flight (room.fills,
//     each with the joins waiting on it) under room.mu; each load runs on
//     its own goroutine and hands each waiter back to its loop with its
//     answer.
//   - Each loop's outbox (loop.out, under loop.out.mu) is where other
//     goroutines leave frames for the loop's viewers; at most one flush task
//     per loop is pending at a time (paced by the last flush's fan-out
//     cost, its timer queues it), and the flush (on the loop) writes each
//     viewer everything queued for it in one write or writev. loop.cork
//     (on the loop) gathers a connection's writes while it finishes its
//     handshake.
//   - With Config.Affinity the set of dispatch partitions read and their
//     grace timers (affinity, under affinity.mu, a leaf lock) change when a
//     loop's join gives a room its first viewer or its leave takes the
//     last (under room.mu); the subscription goroutine resolves where a
//     newly read partition starts; the dispatch goroutine alone assigns
//     and unassigns partitions on its consumer, between fetches, tells
//     each record's reading period (room.epoch), and hands the joins that
//     waited for a new reading to catch up back to their loops
//     (joinCaughtUp).
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
//   - Config (s.cfg) is read-only once New returns; the metrics
//     (s.m) are Prometheus collectors, updated from any goroutine.
//
// Lock order: rooms shard lock → room.mu → loop.out.mu (the shed
// goroutine posts under room.mu). usersMu, ipMu, retracts.mu and affinity.mu
// are leaves.
//
// # Files
//
// Each file opens with its concept and the goroutine that runs it.
//
//   - server.go: Server, New, Run (starts the goroutines below), Shutdown;
//     config.go: Config, every knob with its default, read-only once New
//     returns; metrics.go: the Prometheus metrics, updated from every
//     goroutine and loop.
//   - gnet.go: gnet's callbacks (boot, open, traffic, close, tick).
//   - handshake.go, conn.go: a connection's upgrade, then its frames and
//     client messages.
//   - join.go: join and leave; fill.go: history the ring lacks, loaded
//     from the store (roomFill, the gateway's one path to it).
//   - room.go: a room's shared state and ring; loop.go: one event loop's
//     state and its sweep.
//   - dispatch.go, control.go, replies.go, ingest.go, presence.go,
//     shed.go, session.go: one background goroutine each; purges.go:
//     the recent purges and deletes, written by control, read by
//     dispatch and history fills.
//     affinity.go: the dispatch partitions read with Config.Affinity.
//   - outbox.go: a loop's queue of frames from other goroutines;
//     flush.go: the pass that writes it to the viewers; outbound.go: every
//     write to a socket and the outbound policy.
//   - web.go: the pages (viewer, replay, OBS overlay) and danmaku.js,
//     embedded from web/ and served by the caller's HTTP server;
//     webtest/: their browser tests.
//
// # How a batch reaches a viewer
//
//  1. dispatch.go: the dispatch goroutine reads the batch from the bus
//     (Server.consume, server.go), appends it to its room's ring
//     (room.appendLocked, room.go), thinned when the gateway sheds the
//     room (shedLocked, shed.go), and frames it once (textFrame, defined
//     with the other frame builders in outbound.go; compressed too when a
//     viewer negotiated permessage-deflate).
//  2. outbox.go: the dispatch goroutine posts the delivery to every loop
//     with viewers of the room (Server.post, loop.post), which schedules
//     the loop's flush (paced by the last flush's cost, paceAfter in
//     flush.go, which reschedules through outbox.go when frames arrived
//     during it).
//  3. flush.go: on the event loop, the flush takes the outbox, groups the
//     deliveries by room, merges consecutive batches (merged) and walks
//     the room's members (roomPass: deliverMember): each gets the shared
//     frame, or the part it lacks (writeLacking); a member still loading
//     history keeps them in member.pending until finishJoin (fill.go).
//  4. outbound.go: each write (conn.write: one frame or several, each with
//     its class) passes the outbound policy once (conn.outboundState) and
//     goes to gnet in one write or writev, which writes the socket.
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
	// retracts remembers recent purges and deletes for the messages that
	// arrive after them (purges.go).
	retracts *retractMemory

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
	// connsGone receives a token when nconns falls to zero (connClosed),
	// so a drain waits for the last close instead of polling.
	connsGone chan struct{}
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
	// shedZ compresses the shed goroutine's cover batches; owned by it
	// (stepLocked).
	shedZ ws.Deflater
	// ndeflate counts open connections that negotiated permessage-deflate;
	// batches are compressed only while it is above zero.
	ndeflate atomic.Int64
	// ncompact counts open connections that chose the compact subprotocol;
	// batches are encoded compact too only while it is above zero.
	ncompact atomic.Int64

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
	// (Config.MaxHistoryLoads): every room fill takes one (runFill).
	histSem chan struct{}
	// sess keeps one connection per user and device; nil without
	// Config.Sessions.
	sess *sessions
	// aff is the set of dispatch partitions read, with Config.Affinity;
	// nil without (every partition is read). See affinity.go.
	aff *affinity
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
		cfg:       cfg,
		rooms:     newRooms(cfg.Loops),
		retracts:  newRetractMemory(),
		ctx:       ctx,
		cancel:    cancel,
		booted:    make(chan struct{}),
		stopped:   make(chan struct{}),
		connsGone: make(chan struct{}, 1),
		loopOf:    make(map[gnet.EventLoop]*loop),
		perIP:     make(map[netip.Addr]int32),
		users:     make(map[string]map[*conn]struct{}),
		ingest:    make(chan bus.Ingest, cfg.IngestQueue),
		histSem:   make(chan struct{}, cfg.MaxHistoryLoads),
	}
	s.m = newMetrics(cfg.Registerer, &s.outbound)
	s.nextID.Store(uint64(time.Now().UnixNano()))
	s.clock.Store(time.Now().UnixMilli())
	s.addr.Store(cfg.Addr)
	if cfg.Sessions != nil {
		s.sess = newSessions(s, cfg.Sessions, cfg.SessionTTL)
	}
	aff, err := newAffinity(&s.cfg)
	if err != nil {
		cancel()
		return nil, err
	}
	s.aff = aff
	if aff != nil {
		aff.readGauge = s.m.readPartitions
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
	if s.aff != nil {
		bg = append(bg, s.runAffinity)
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
					c.writeOwn(protocol.Encode(protocol.Reconnect{Op: protocol.OpReconnect, AfterMs: after}))
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
				c.closeWith(ws.CloseGoingAway, "server draining", "drain")
			}
		})
	}
	// Give the loops a moment to flush close frames and close.
	s.waitConnsGone(closeWait)
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

// closeWait bounds how long Shutdown waits, after closing every
// connection, for the loops to write the close frames and close them.
const closeWait = 200 * time.Millisecond

// connClosed counts a connection out; the last one signals connsGone.
func (s *Server) connClosed() {
	if s.nconns.Add(-1) == 0 {
		select {
		case s.connsGone <- struct{}{}:
		default: // a token is waiting already
		}
	}
}

// waitConnsGone waits until no connection is open, at most d. A token
// left in connsGone by an earlier fall to zero only makes it check again.
func (s *Server) waitConnsGone(d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	for s.nconns.Load() > 0 {
		select {
		case <-s.connsGone:
		case <-t.C:
			return
		}
	}
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

// consume opens a consumer and feeds what it fetches to handle until the
// server stops, reopening it after errors with a backoff. Runs on its own
// goroutine.
func (s *Server) consume(stream string, opts bus.ConsumerOptions, handle func([]bus.Record)) {
	bus.Follow(s.ctx, s.cfg.Bus, stream, opts, handle, func(err error) {
		s.cfg.Logger.Warn("gateway: consumer failed, retrying", "stream", stream, "err", err)
	})
}
