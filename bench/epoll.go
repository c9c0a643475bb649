package bench

import (
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/danmaku-live/danmaku/pkg/ws"
)

// Viewer implementations of a worker (WorkerSpec.ViewerImpl).
const (
	// ImplEpoll runs the watching connections on a few epoll loops: a
	// connection costs its session and, only while a frame is split over
	// reads, that frame's bytes.
	ImplEpoll = "epoll"
	// ImplGoroutine runs one goroutine per connection reading into its own
	// 4 KiB buffer.
	ImplGoroutine = "goroutine"
)

var (
	errNotTCP   = errors.New("bench: not a TCP connection")
	errStopping = errors.New("bench: viewers stopping")
	errShort    = errors.New("bench: short write of the upgrade request")
)

// loopBuf is the read buffer an event loop shares between its connections.
const loopBuf = 256 << 10

// handshakeTimeout bounds a connect and its upgrade (epollGroup.timeout).
const handshakeTimeout = 10 * time.Second

// expireEvery is how often a loop looks for handshakes past their timeout.
const expireEvery = 250 * time.Millisecond

// States of an econn.
const (
	stIdle       uint8 = iota // not connected: waiting for a slot, a timer or nothing
	stConnecting              // connect in progress, registered for writability
	stHandshake               // upgrade request sent, reading the response
	stOpen                    // upgraded: frames
)

// epollGroup runs watching connections on one epoll loop per core. The
// loops connect them too: a connection's socket is made non-blocking
// (bound to its source address as the goroutine viewers' are), its
// connect, upgrade request and 101 response all go through its loop's
// epoll set, and at most max of them are between connect and 101 at a
// time. The loop reads every ready socket into one shared buffer, answers
// pings and accounts frames through session.handle. Nothing runs per
// connection between frames: no goroutine, no timer, no buffer.
type epollGroup struct {
	st        *stats
	conns     []*econn
	loops     []*eloop
	targets   map[string]*target
	reconnect bool
	jitter    time.Duration
	rate      float64       // new connections/s, 0: no cap
	max       int           // connects and handshakes in flight
	timeout   time.Duration // of a connect and its upgrade; default handshakeTimeout
	// pause is how long a loop sleeps after a round with fewer ready
	// sockets than its event buffer before polling again (<= 0: none), so
	// that writes to its sockets meanwhile do not wake its thread.
	pause time.Duration
	// deflate: offer permessage-deflate in the upgrade request.
	deflate bool
	// compact: offer the danmaku.v1.compact subprotocol.
	compact bool
	// spill maps a target to the one a connection tries next when the
	// gateway answers 503 (at its connection cap), as a load balancer's
	// next-upstream does (deploy/nginx/room-affinity.conf); nil: retry the
	// same one. Built before the loops start (spillOver), then read only.
	spill    map[*target]*target
	stopping atomic.Bool

	qmu      sync.Mutex
	inflight int      // connects and handshakes holding a slot
	pending  []*econn // waiting for a slot, oldest first
}

// target is a parsed destination (and source) shared by the connections
// to it.
type target struct {
	addr string       // host:port, the Host header
	src  *net.TCPAddr // nil: the kernel's choice
	// dst and from are the IPv4 socket addresses when addr is an IPv4
	// host:port (and src, when set, an IPv4 address); raw is false
	// otherwise and such connections fall back to dialWS in a goroutine
	// (IPv6 and host names are not what the harness dials on loopback).
	dst, from unix.SockaddrInet4
	raw       bool
}

// eloop is one event loop. mu is held while it handles a batch of events,
// so that reports and connects see its connections' sessions consistently;
// nobody else takes it on the hot path.
type eloop struct {
	g     *epollGroup
	idx   int
	epfd  int // -1 once the loop has ended
	mu    sync.Mutex
	conns map[int32]*econn // registered: connecting, handshaking or open
	buf   []byte
	wbuf  []byte
	// spares are split-frame buffers (econn.rest) kept for reuse.
	spares [][]byte
	infl   ws.Inflater // compressed frames (epollGroup.deflate)
	// sums holds the decoded summaries of the batch frames the loop read
	// last: a gateway encodes (and compresses: no context takeover) a
	// batch once and writes the same bytes to every viewer, so the loop
	// decodes and inflates each once, not once per viewer, as one process
	// standing in for thousands of clients on their own machines.
	sums summaries
	lat  Hist // send → viewer, since the last report
	conn Hist // dial → joined, since the last report
	// st counts this loop's frames, deliveries and joins apart from the
	// other loops' (no shared cache line on the hot path).
	st stats
	// pending holds the registered connections not open yet (connecting or
	// handshaking), so expire looks at these only, not at every open one.
	pending map[int32]*econn
	// freed counts the slots released and todo the connections to
	// connect again at once, during a batch; both are acted on after mu
	// is released (unlock), since a connect takes its own loop's mu.
	freed int
	todo  []*econn
}

// econn is one watching connection of an epollGroup. Its fields belong to
// its loop (under mu) while it is registered and to whoever holds it
// (the queue, a timer, a connect) otherwise.
type econn struct {
	s         session
	idx       int32
	fd        int32 // -1 while not connected
	after     int64 // after_ms of a reconnect frame, -1: none
	start     int64 // unix ns of the current connect
	t         *target
	token     string
	key       string // Sec-WebSocket-Key while the handshake runs
	loop      *eloop
	rest      []byte // a frame (or, handshaking, a response) split over reads; nil otherwise
	fails     uint8
	state     uint8
	connected bool // has been open once
	resuming  bool
	dropped   bool
}

var _ recorder = (*eloop)(nil)

func (l *eloop) recordLat(us []uint64) {
	for _, v := range us {
		l.lat.Record(v)
	}
}

func (l *eloop) recordConn(us uint64) { l.conn.Record(us) }

// newEpollGroup makes the loops; add connections with add before start.
// concurrency bounds the connects and handshakes in flight.
func newEpollGroup(st *stats, reconnect bool, jitter time.Duration, rate float64, concurrency int) (*epollGroup, error) {
	g := &epollGroup{st: st, reconnect: reconnect, jitter: jitter, rate: rate, max: max(concurrency, 1),
		timeout: handshakeTimeout, targets: map[string]*target{}}
	for i := range runtime.GOMAXPROCS(0) {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			for _, l := range g.loops {
				_ = unix.Close(l.epfd)
			}
			return nil, err
		}
		g.loops = append(g.loops, &eloop{g: g, idx: i, epfd: fd, conns: map[int32]*econn{}, pending: map[int32]*econn{},
			buf: make([]byte, loopBuf), wbuf: make([]byte, 0, 256), sums: newSummaries()})
	}
	return g, nil
}

func (g *epollGroup) add(idx int, room, addr string, src *net.TCPAddr, token string, latency bool) {
	c := &econn{s: session{room: room, latency: latency}, idx: int32(idx), fd: -1, after: -1, t: g.target(addr, src),
		token: token, loop: g.loops[len(g.conns)%len(g.loops)]}
	g.conns = append(g.conns, c)
}

// spillOver makes a connection refused with 503 try the next of gateways
// (in their order, round the end) from the same source. Called before the
// group starts.
func (g *epollGroup) spillOver(gateways []string) {
	if len(gateways) < 2 {
		return
	}
	g.spill = make(map[*target]*target)
	srcs := map[string]*net.TCPAddr{}
	for _, t := range g.targets {
		if slices.Contains(gateways, t.addr) {
			srcs[t.src.String()] = t.src
		}
	}
	for _, src := range srcs {
		for i, addr := range gateways {
			g.spill[g.target(addr, src)] = g.target(gateways[(i+1)%len(gateways)], src)
		}
	}
}

// target returns the parsed destination addr from src, parsing each pair
// once.
func (g *epollGroup) target(addr string, src *net.TCPAddr) *target {
	k := addr
	if src != nil {
		k += " " + src.String()
	}
	if t := g.targets[k]; t != nil {
		return t
	}
	t := &target{addr: addr, src: src}
	g.targets[k] = t
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return t
	}
	ip := net.ParseIP(host).To4()
	p, err := strconv.Atoi(port)
	if ip == nil || err != nil || p <= 0 || p > 65535 {
		return t
	}
	t.dst.Port = p
	copy(t.dst.Addr[:], ip)
	if src != nil {
		sip := src.IP.To4()
		if sip == nil {
			return t
		}
		t.from.Port = src.Port
		copy(t.from.Addr[:], sip)
	}
	t.raw = true
	return t
}

func (g *epollGroup) start(stop <-chan struct{}, wg *sync.WaitGroup) {
	for _, l := range g.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run()
		}()
	}
	wg.Add(1)
	go func() { // the first connects, paced
		defer wg.Done()
		paced(stop, g.rate, len(g.conns), func(i int) bool {
			select {
			case <-stop:
				return false
			default:
			}
			g.admit(g.conns[i])
			return true
		})
	}()
}

// admit connects c when a slot is free, else queues it for the next one.
func (g *epollGroup) admit(c *econn) {
	if g.stopping.Load() {
		return
	}
	g.qmu.Lock()
	if g.inflight >= g.max {
		g.pending = append(g.pending, c)
		g.qmu.Unlock()
		return
	}
	g.inflight++
	g.qmu.Unlock()
	if !g.connect(c) {
		g.next()
	}
}

// next hands a released slot to the oldest queued connection (and the
// next one while connects fail at once), or frees it.
func (g *epollGroup) next() {
	for {
		g.qmu.Lock()
		if len(g.pending) == 0 || g.stopping.Load() {
			g.inflight--
			g.qmu.Unlock()
			return
		}
		c := g.pending[0]
		g.pending[0] = nil
		g.pending = g.pending[1:]
		if len(g.pending) == 0 {
			g.pending = nil
		}
		g.qmu.Unlock()
		if g.connect(c) {
			return
		}
	}
}

// later connects c again after d (on a timer; at once when the caller
// holds no loop's mu and d <= 0).
func (g *epollGroup) later(c *econn, d time.Duration) {
	if g.stopping.Load() {
		return
	}
	if d <= 0 {
		g.admit(c)
		return
	}
	time.AfterFunc(d, func() { g.admit(c) })
}

// fail accounts a connect or handshake of c that failed with err (c holds
// no slot and no socket any more) and schedules the next attempt after the
// backoff; none when reconnecting is off and c was never open.
func (g *epollGroup) fail(c *econn, err error) {
	if g.stopping.Load() {
		return
	}
	g.st.fail(err)
	var he *ws.HandshakeError
	if g.spill != nil && errors.As(err, &he) && he.Status == http.StatusServiceUnavailable {
		if next := g.spill[c.t]; next != nil {
			c.t = next
		}
	}
	if !g.reconnect && !c.connected {
		return
	}
	d, counted := dialBackoff(err, int(c.fails))
	if counted && c.fails < 255 {
		c.fails++
	}
	g.later(c, d)
}

// connect starts c's non-blocking connect and registers the socket with
// c's loop for writability; the loop does the rest. It reports whether c
// now holds the slot it was given: false when the connect failed at once
// (accounted and retried by fail).
func (g *epollGroup) connect(c *econn) bool {
	if !c.t.raw {
		go g.dial(c)
		return true
	}
	start := time.Now().UnixNano()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err == nil && c.t.src != nil {
		if err = setBindNoPort(fd); err == nil {
			from := c.t.from // Bind and Connect write into the sockaddr: a copy per call
			err = unix.Bind(fd, &from)
		}
	}
	if err == nil {
		dst := c.t.dst
		if err = unix.Connect(fd, &dst); errors.Is(err, unix.EINPROGRESS) {
			err = nil
		}
	}
	l := c.loop
	l.mu.Lock()
	if err == nil && (g.stopping.Load() || l.epfd < 0) {
		err = errStopping
	}
	if err == nil {
		c.fd, c.state, c.start = int32(fd), stConnecting, start
		ev := unix.EpollEvent{Events: unix.EPOLLOUT, Fd: c.fd}
		if err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err == nil {
			l.conns[c.fd] = c
			l.pending[c.fd] = c
		} else {
			c.fd, c.state = -1, stIdle
		}
	}
	l.mu.Unlock()
	if err != nil {
		if fd >= 0 {
			_ = unix.Close(fd)
		}
		g.fail(c, err)
		return false
	}
	return true
}

// dial connects and upgrades c with blocking calls and registers it with
// its loop: the path of a destination that is not an IPv4 address. It
// runs in its own goroutine and releases c's slot when done.
func (g *epollGroup) dial(c *econn) {
	defer g.next()
	l := c.loop
	l.mu.Lock()
	q := c.s.resumeQuery()
	l.mu.Unlock()
	start := time.Now()
	fd := -1
	nc, rest, err := dialWS(c.t.addr, c.t.src, q, c.token, g.timeout)
	if err == nil {
		fd, err = detach(nc)
	}
	if err != nil {
		g.fail(c, err)
		return
	}
	l.mu.Lock()
	defer l.unlock()
	if g.stopping.Load() || l.epfd < 0 {
		_ = unix.Close(fd)
		return
	}
	c.fd, c.start = int32(fd), start.UnixNano()
	l.conns[c.fd] = c
	l.opened(c)
	if len(rest) > 0 && !l.process(c, rest) {
		return
	}
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: c.fd}
	if err := unix.EpollCtl(l.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		l.closeConn(c)
	}
}

// detach takes the socket of a connection out of the Go runtime's poller:
// it duplicates the descriptor (non-blocking, like the original) and
// closes the net.Conn.
func detach(nc net.Conn) (int, error) {
	defer nc.Close()
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return -1, errNotTCP
	}
	rc, err := tc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	return fd, derr
}

// unlock releases mu, then hands the slots freed during the batch to
// queued connections and connects those whose reconnect is due now.
func (l *eloop) unlock() {
	freed, todo := l.freed, l.todo
	l.freed = 0
	if len(todo) > 0 {
		l.todo = nil
	}
	l.mu.Unlock()
	for range freed {
		l.g.next()
	}
	for _, c := range todo {
		l.g.admit(c)
	}
}

// run waits for ready sockets until the group stops.
func (l *eloop) run() {
	defer func() {
		l.mu.Lock()
		_ = unix.Close(l.epfd)
		l.epfd = -1
		l.mu.Unlock()
	}()
	events := make([]unix.EpollEvent, 256)
	var scanned time.Time
	for !l.g.stopping.Load() {
		n, err := unix.EpollWait(l.epfd, events, 100)
		if err != nil && !errors.Is(err, unix.EINTR) {
			return
		}
		l.mu.Lock()
		for _, ev := range events[:max(n, 0)] {
			c := l.conns[ev.Fd]
			if c == nil {
				continue
			}
			switch c.state {
			case stConnecting:
				l.connected(c, ev.Events)
			case stHandshake:
				l.handshake(c)
			default:
				l.read(c)
			}
		}
		if len(l.pending) > 0 {
			if now := time.Now(); now.Sub(scanned) >= expireEvery {
				scanned = now
				l.expire(now.UnixNano())
			}
		}
		l.unlock()
		if n > 0 && n < len(events) && l.g.pause > 0 {
			time.Sleep(l.g.pause)
		}
	}
}

// connected handles the first readiness of a connecting socket: on
// success it sends the upgrade request (with resume when the session has
// seen seqs) and waits for the response.
func (l *eloop) connected(c *econn, events uint32) {
	fd := int(c.fd)
	soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	switch {
	case err != nil:
		l.abort(c, err)
		return
	case soerr != 0:
		l.abort(c, unix.Errno(soerr))
		return
	case events&unix.EPOLLOUT == 0:
		l.abort(c, io.EOF)
		return
	}
	c.key = ws.NewKey()
	var hdr string
	if c.token != "" {
		hdr = "Authorization: Bearer " + c.token + "\r\n"
	}
	if l.g.deflate {
		hdr += deflateOffer
	}
	if l.g.compact {
		hdr += compactOffer
	}
	l.wbuf = ws.AppendClientHandshake(l.wbuf[:0], c.t.addr, c.s.resumeQuery(), c.key, hdr)
	m, err := unix.Write(fd, l.wbuf)
	for errors.Is(err, unix.EINTR) {
		m, err = unix.Write(fd, l.wbuf)
	}
	if err == nil && m < len(l.wbuf) {
		// A fresh socket's send buffer holds far more than a request:
		// not worth a partial-write state.
		err = errShort
	}
	if err == nil {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP, Fd: c.fd}
		err = unix.EpollCtl(l.epfd, unix.EPOLL_CTL_MOD, fd, &ev)
	}
	if err != nil {
		l.abort(c, err)
		return
	}
	c.state = stHandshake
}

// handshake reads the upgrade response of c. Until it is complete it is
// kept in c.rest; the bytes after it (frames) go to process.
func (l *eloop) handshake(c *econn) {
	m, err := unix.Read(int(c.fd), l.buf)
	for errors.Is(err, unix.EINTR) {
		m, err = unix.Read(int(c.fd), l.buf)
	}
	switch {
	case errors.Is(err, unix.EAGAIN):
		return
	case err != nil:
		l.abort(c, err)
		return
	case m <= 0:
		l.abort(c, io.EOF)
		return
	}
	data := l.buf[:m]
	if c.rest != nil {
		c.rest = append(c.rest, data...)
		data = c.rest
	}
	end, _, err := ws.ParseHandshakeResponse(data, c.key)
	if errors.Is(err, ws.ErrNeedMore) {
		if len(data) >= readBuf {
			l.abort(c, errTooBig)
		} else if c.rest == nil {
			c.rest = append(make([]byte, 0, 2*len(data)), data...)
		}
		return
	}
	if err != nil {
		l.abort(c, err)
		return
	}
	c.rest, c.key = nil, ""
	delete(l.pending, c.fd)
	l.freed++
	l.opened(c)
	if len(data) > end {
		l.process(c, data[end:])
	}
}

// opened accounts c's successful upgrade (mu held).
func (l *eloop) opened(c *econn) {
	if c.connected {
		l.g.st.reconnects.Add(1)
	}
	c.state = stOpen
	c.connected, c.fails, c.dropped, c.after = true, 0, false, -1
	c.resuming = c.s.joined
	l.g.st.open.Add(1)
}

// abort ends a connect or handshake of c that failed with err or timed out
// (mu held): its slot is freed and fail retries it.
func (l *eloop) abort(c *econn, err error) {
	_ = unix.Close(int(c.fd))
	delete(l.conns, c.fd)
	delete(l.pending, c.fd)
	c.fd, c.rest, c.key, c.state = -1, nil, "", stIdle
	l.freed++
	l.g.fail(c, err)
}

// expire aborts the connects and handshakes that began before now minus
// the group's timeout (mu held).
func (l *eloop) expire(now int64) {
	limit := now - int64(l.g.timeout)
	for _, c := range l.pending {
		if c.start < limit {
			l.abort(c, errTimedOut)
		}
	}
}

// read reads what one socket has once (the loop is level-triggered: more
// wakes it again) and handles it. A frame split over reads is put back at
// the start of the loop's buffer, so that one read brings its end and the
// frames after it; only a frame longer than half the buffer is read into
// its own.
func (l *eloop) read(c *econn) {
	dst, head := l.buf, 0
	if c.rest != nil {
		if cap(c.rest) <= loopBuf/2 {
			head = copy(l.buf, c.rest)
			l.putSpare(c.rest)
			c.rest = nil
			dst = l.buf[head:]
		} else {
			dst = c.rest[len(c.rest):cap(c.rest)]
		}
	}
	for {
		m, err := rawRead(int(c.fd), dst)
		switch {
		case err == unix.EINTR:
			continue
		case err == unix.EAGAIN:
			if head > 0 {
				l.process(c, l.buf[:head]) // keeps the split frame again
			}
			return
		case err != nil || m <= 0:
			l.closeConn(c)
			return
		}
		if c.rest != nil {
			l.process(c, c.rest[:len(c.rest)+m])
		} else {
			l.process(c, l.buf[:head+m])
		}
		return
	}
}

// rawRead is read(2) on a non-blocking socket, made without telling the
// Go scheduler: it never blocks, and a loop reads hundreds of thousands of
// times a second, where each syscall entry and exit through the scheduler
// also keeps its monitor thread waking every 20 µs to look at the P left
// in a syscall.
func rawRead(fd int, p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	n, _, e := unix.RawSyscall(unix.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// maxSpares bounds the split-frame buffers a loop keeps for reuse.
const maxSpares = 64

// putSpare keeps b, a split frame's buffer no longer used, for the next
// split frame (while fewer than maxSpares are kept): under a backlog most
// reads end inside a frame, and a fresh buffer each time costs its
// allocation, zeroing and page faults.
func (l *eloop) putSpare(b []byte) {
	if len(l.spares) < maxSpares && cap(b) <= loopBuf/2 {
		l.spares = append(l.spares, b[:0])
	}
}

// takeSpare returns an empty buffer of capacity size or more: the last
// kept one when it is large enough (else it is let go), or a new one.
func (l *eloop) takeSpare(size int) []byte {
	if n := len(l.spares); n > 0 {
		b := l.spares[n-1]
		l.spares[n-1] = nil
		l.spares = l.spares[:n-1]
		if cap(b) >= size {
			return b
		}
	}
	return make([]byte, 0, size)
}

// process handles the bytes of c in data (its carried-over frame and what
// was read) and keeps an incomplete tail in c.rest. It reports false when
// it closed c. The receive time of every frame in data, for latency, is
// read from the clock once, when the first message needs it.
func (l *eloop) process(c *econn, data []byte) bool {
	var frames, nbytes, now int64
	closed := false
	off, need, err := scanFrames(data, func(op ws.OpCode, z bool, payload []byte, size int) bool {
		frames++
		nbytes += int64(size)
		switch op {
		case ws.OpClose:
			closed = true
			return false
		case ws.OpPing:
			l.wbuf = ws.AppendClientFrame(l.wbuf[:0], ws.OpPong, payload, ws.NewMask())
			_, _ = unix.Write(int(c.fd), l.wbuf)
		case ws.OpText, ws.OpBinary:
			a, ok := l.frame(c, z, payload, &now)
			if !ok {
				closed = true // a bad compressed frame: drop the connection
				return false
			}
			if a >= 0 {
				c.after = a
			}
		}
		return true
	})
	if frames > 0 {
		l.st.frames.Add(frames)
		l.st.bytes.Add(nbytes)
	}
	if err != nil || closed {
		l.closeConn(c)
		return false
	}
	left := data[off:]
	if len(left) == 0 {
		if c.rest != nil {
			l.putSpare(c.rest)
			c.rest = nil
		}
		return true
	}
	// Keep the split frame: room for all of it when its size is known,
	// else for the longest header (then it is known).
	size := max(need, 16)
	if c.rest != nil && cap(c.rest) >= size {
		c.rest = c.rest[:copy(c.rest[:cap(c.rest)], left)]
	} else {
		c.rest = append(l.takeSpare(size), left...)
	}
	return true
}

// closeConn closes c's socket and queues its reconnect (mu held): on a
// timer, or at once in unlock.
func (l *eloop) closeConn(c *econn) {
	_ = unix.Close(int(c.fd))
	delete(l.conns, c.fd)
	c.fd, c.rest, c.state = -1, nil, stIdle
	l.g.st.open.Add(-1)
	if !l.g.reconnect || l.g.stopping.Load() {
		return
	}
	if d := reconnectWait(int(c.idx), c.after, c.dropped, l.g.jitter); d > 0 {
		l.g.later(c, d)
	} else {
		l.todo = append(l.todo, c)
	}
}

// drop shuts every open connection down; each reconnects and resumes.
// Connects and handshakes in progress go on.
func (g *epollGroup) drop() {
	for _, l := range g.loops {
		l.mu.Lock()
		for _, c := range l.conns {
			if c.state == stOpen {
				c.dropped = true
				_ = unix.Shutdown(int(c.fd), unix.SHUT_RDWR)
			}
		}
		l.mu.Unlock()
	}
}

// close ends every connection for good, open or not.
func (g *epollGroup) close() {
	g.stopping.Store(true)
	for _, l := range g.loops {
		l.mu.Lock()
		for fd, c := range l.conns {
			_ = unix.Close(int(fd))
			delete(l.conns, fd)
			delete(l.pending, fd)
			if c.state == stOpen {
				g.st.open.Add(-1)
			}
			c.fd, c.state = -1, stIdle
		}
		l.mu.Unlock()
	}
}

// each calls f with every connection's session, until f returns false.
func (g *epollGroup) each(f func(*session) bool) {
	for _, l := range g.loops {
		l.mu.Lock()
		for i := l.idx; i < len(g.conns); i += len(g.loops) {
			if !f(&g.conns[i].s) {
				l.mu.Unlock()
				return
			}
		}
		l.mu.Unlock()
	}
}

// addTo adds the loops' counters to sum.
func (g *epollGroup) addTo(sum *stats) {
	for _, l := range g.loops {
		l.st.addTo(sum)
	}
}

// take moves the loops' histograms into lat and conn.
func (g *epollGroup) take(lat, conn *Hist) {
	for _, l := range g.loops {
		l.mu.Lock()
		lat.Merge(&l.lat)
		l.lat.Reset()
		conn.Merge(&l.conn)
		l.conn.Reset()
		l.mu.Unlock()
	}
}
