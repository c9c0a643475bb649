package bench

import (
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

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

var errNotTCP = errors.New("bench: not a TCP connection")

// loopBuf is the read buffer an event loop shares between its connections.
const loopBuf = 64 << 10

// epollGroup runs watching connections on one epoll loop per core. A pool
// of dialers connects and upgrades them with blocking calls (bound to
// their source address as the goroutine viewers are) and hands the socket
// to its loop; the loop reads every ready socket into one shared buffer,
// answers pings and accounts frames through session.handle. Nothing runs
// per connection between frames: no goroutine, no timer, no buffer.
type epollGroup struct {
	st        *stats
	conns     []*econn
	loops     []*eloop
	reconnect bool
	jitter    time.Duration
	rate      float64 // new connections/s, 0: no cap
	dialers   int
	// dialq holds the connections waiting for a dialer; it has room for
	// all of them, so a send never blocks.
	dialq    chan *econn
	stopping atomic.Bool
}

// eloop is one event loop. mu is held while it handles a batch of events,
// so that reports and dialers see its connections' sessions consistently;
// nobody else takes it on the hot path.
type eloop struct {
	g     *epollGroup
	idx   int
	epfd  int
	mu    sync.Mutex
	conns map[int32]*econn
	buf   []byte
	wbuf  []byte
	lat   Hist // send → viewer, since the last report
	conn  Hist // dial → joined, since the last report
	// st counts this loop's frames, deliveries and joins apart from the
	// other loops' (no shared cache line on the hot path).
	st stats
}

// econn is one watching connection of an epollGroup. Its fields belong to
// the dialer while it is connecting and to the loop (under mu) while it is
// registered.
type econn struct {
	s         session
	idx       int32
	fd        int32 // -1 while not connected
	after     int64 // after_ms of a reconnect frame, -1: none
	start     int64 // unix ns of the current dial
	addr      string
	src       *net.TCPAddr
	token     string
	loop      *eloop
	rest      []byte // a frame split over reads; nil otherwise
	fails     uint8
	connected bool // has been registered once
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
func newEpollGroup(st *stats, reconnect bool, jitter time.Duration, rate float64, dialers int) (*epollGroup, error) {
	g := &epollGroup{st: st, reconnect: reconnect, jitter: jitter, rate: rate, dialers: dialers}
	for i := range runtime.GOMAXPROCS(0) {
		fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
		if err != nil {
			for _, l := range g.loops {
				_ = unix.Close(l.epfd)
			}
			return nil, err
		}
		g.loops = append(g.loops, &eloop{g: g, idx: i, epfd: fd, conns: map[int32]*econn{},
			buf: make([]byte, loopBuf), wbuf: make([]byte, 0, 256)})
	}
	return g, nil
}

func (g *epollGroup) add(idx int, room, addr string, src *net.TCPAddr, token string, latency bool) {
	c := &econn{s: session{room: room, latency: latency}, idx: int32(idx), fd: -1, after: -1, addr: addr, src: src,
		token: token, loop: g.loops[len(g.conns)%len(g.loops)]}
	g.conns = append(g.conns, c)
}

func (g *epollGroup) start(stop <-chan struct{}, wg *sync.WaitGroup) {
	g.dialq = make(chan *econn, len(g.conns))
	for _, l := range g.loops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l.run()
		}()
	}
	for range g.dialers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				case c := <-g.dialq:
					g.dial(c)
				}
			}
		}()
	}
	wg.Add(1)
	go func() { // queue the first dials, paced
		defer wg.Done()
		paced(stop, g.rate, len(g.conns), func(i int) bool {
			select {
			case <-stop:
				return false
			case g.dialq <- g.conns[i]:
				return true
			}
		})
	}()
}

// later queues c for a dial after d.
func (g *epollGroup) later(c *econn, d time.Duration) {
	if g.stopping.Load() {
		return
	}
	if d <= 0 {
		g.dialq <- c
		return
	}
	time.AfterFunc(d, func() { g.dialq <- c })
}

// dial connects and upgrades c and registers it with its loop.
func (g *epollGroup) dial(c *econn) {
	l := c.loop
	l.mu.Lock()
	q := c.s.resumeQuery()
	l.mu.Unlock()
	start := time.Now()
	fd := -1
	nc, rest, err := dialWS(c.addr, c.src, q, c.token, 10*time.Second)
	if err == nil {
		fd, err = detach(nc)
	}
	if err != nil {
		g.st.failed.Add(1)
		if !g.reconnect && !c.connected {
			return
		}
		d := dialBackoff(int(c.fails))
		if c.fails < 255 {
			c.fails++
		}
		g.later(c, d)
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if g.stopping.Load() {
		_ = unix.Close(fd)
		return
	}
	if c.connected {
		g.st.reconnects.Add(1)
	}
	c.connected, c.fails, c.dropped, c.after = true, 0, false, -1
	c.fd, c.start, c.resuming = int32(fd), start.UnixNano(), c.s.joined
	l.conns[c.fd] = c
	g.st.open.Add(1)
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

// run waits for readable sockets until the group stops.
func (l *eloop) run() {
	defer unix.Close(l.epfd)
	events := make([]unix.EpollEvent, 256)
	for !l.g.stopping.Load() {
		n, err := unix.EpollWait(l.epfd, events, 100)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return
		}
		if n == 0 {
			continue
		}
		l.mu.Lock()
		for _, ev := range events[:n] {
			if c := l.conns[ev.Fd]; c != nil {
				l.read(c)
			}
		}
		l.mu.Unlock()
	}
}

// read reads what one socket has once (the loop is level-triggered: more
// wakes it again) and handles it.
func (l *eloop) read(c *econn) {
	dst := l.buf
	if c.rest != nil {
		dst = c.rest[len(c.rest):cap(c.rest)]
	}
	for {
		m, err := unix.Read(int(c.fd), dst)
		switch {
		case errors.Is(err, unix.EINTR):
			continue
		case errors.Is(err, unix.EAGAIN):
			return
		case err != nil || m <= 0:
			l.closeConn(c)
			return
		}
		if c.rest != nil {
			l.process(c, c.rest[:len(c.rest)+m])
		} else {
			l.process(c, l.buf[:m])
		}
		return
	}
}

// process handles the bytes of c in data (its carried-over frame and what
// was read) and keeps an incomplete tail in c.rest. It reports false when
// it closed c.
func (l *eloop) process(c *econn, data []byte) bool {
	var frames, nbytes int64
	closed := false
	off, need, err := scanFrames(data, func(op ws.OpCode, payload []byte, size int) bool {
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
			if a := c.s.handle(payload, &c.resuming, time.Unix(0, c.start), &l.st, l); a >= 0 {
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
		c.rest = nil
		return true
	}
	// Keep the split frame: room for all of it when its size is known,
	// else for the longest header (then it is known).
	size := max(need, 16)
	if c.rest != nil && cap(c.rest) >= size {
		c.rest = c.rest[:copy(c.rest[:cap(c.rest)], left)]
	} else {
		nb := make([]byte, len(left), size)
		copy(nb, left)
		c.rest = nb
	}
	return true
}

// closeConn closes c's socket and queues its reconnect (mu held).
func (l *eloop) closeConn(c *econn) {
	_ = unix.Close(int(c.fd))
	delete(l.conns, c.fd)
	c.fd, c.rest = -1, nil
	l.g.st.open.Add(-1)
	if !l.g.reconnect || l.g.stopping.Load() {
		return
	}
	l.g.later(c, reconnectWait(int(c.idx), c.after, c.dropped, l.g.jitter))
}

// drop shuts every connection down; each reconnects and resumes.
func (g *epollGroup) drop() {
	for _, l := range g.loops {
		l.mu.Lock()
		for _, c := range l.conns {
			c.dropped = true
			_ = unix.Shutdown(int(c.fd), unix.SHUT_RDWR)
		}
		l.mu.Unlock()
	}
}

// close ends every connection for good.
func (g *epollGroup) close() {
	g.stopping.Store(true)
	for _, l := range g.loops {
		l.mu.Lock()
		for fd := range l.conns {
			_ = unix.Close(int(fd))
			delete(l.conns, fd)
			g.st.open.Add(-1)
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
