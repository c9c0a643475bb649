package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/danmaku-live/danmaku/pkg/client"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// readBuf is the initial read buffer of a viewer; it grows only for a frame
// larger than it.
const readBuf = 4 << 10

// maxFrameSize bounds a server frame the viewer accepts.
const maxFrameSize = 16 << 20

var (
	errClosed   = errors.New("bench: connection closed by the server")
	errBadFrame = errors.New("bench: bad frame from the server")
	errTooBig   = errors.New("bench: handshake response too large")
)

// stats are the counters a worker shares between its viewers. Latencies go
// to sharded histograms so that thousands of viewers do not contend on one
// lock.
type stats struct {
	open        atomic.Int64
	established atomic.Int64 // successful joins, including re-joins
	failed      atomic.Int64 // dial, handshake or join failures
	failedBy    counters     // failed by kind (failKind)
	lastJoin    atomic.Int64 // unix ns of the latest first join
	lastResume  atomic.Int64 // unix ns of the latest resumed history
	reconnects  atomic.Int64
	resumed     atomic.Int64 // re-joins after a drop that got their history
	incomplete  atomic.Int64 // history frames with complete:false after a resume
	deliveries  atomic.Int64
	dups        atomic.Int64
	marked      atomic.Int64 // seqs covered by from/to marks without being carried (thinned or shed)
	frames      atomic.Int64
	bytes       atomic.Int64
	acks        atomic.Int64
	rejects     counters // send rejects by error code

	lat  [64]shard
	conn shard // dial → joined
	ack  shard // send → ack (senders)
}

type shard struct {
	mu sync.Mutex
	h  Hist
}

func (s *shard) record(vs ...uint64) {
	s.mu.Lock()
	for _, v := range vs {
		s.h.Record(v)
	}
	s.mu.Unlock()
}

// take moves the shard's histogram into dst and empties it.
func (s *shard) take(dst *Hist) {
	s.mu.Lock()
	dst.Merge(&s.h)
	s.h.Reset()
	s.mu.Unlock()
}

// addTo adds the counters of st to sum and keeps the later timestamps; the
// worker sums its shared stats and the event loops' own at report time.
func (st *stats) addTo(sum *stats) {
	sum.open.Add(st.open.Load())
	sum.established.Add(st.established.Load())
	sum.failed.Add(st.failed.Load())
	sum.reconnects.Add(st.reconnects.Load())
	sum.resumed.Add(st.resumed.Load())
	sum.incomplete.Add(st.incomplete.Load())
	sum.deliveries.Add(st.deliveries.Load())
	sum.dups.Add(st.dups.Load())
	sum.marked.Add(st.marked.Load())
	sum.frames.Add(st.frames.Load())
	sum.bytes.Add(st.bytes.Load())
	sum.acks.Add(st.acks.Load())
	sum.lastJoin.Store(max(sum.lastJoin.Load(), st.lastJoin.Load()))
	sum.lastResume.Store(max(sum.lastResume.Load(), st.lastResume.Load()))
	st.rejects.addTo(&sum.rejects)
	st.failedBy.addTo(&sum.failedBy)
}

// fail accounts a failed dial or upgrade that ended with err.
func (st *stats) fail(err error) {
	st.failed.Add(1)
	st.failedBy.add(failKind(err), 1)
}

// counters counts events by name; safe for concurrent use.
type counters struct {
	m sync.Map // name → *atomic.Int64
}

func (c *counters) add(name string, n int64) {
	v, ok := c.m.Load(name)
	if !ok {
		v, _ = c.m.LoadOrStore(name, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(n)
}

// addTo adds c's counts to sum.
func (c *counters) addTo(sum *counters) {
	c.m.Range(func(k, v any) bool {
		sum.add(k.(string), v.(*atomic.Int64).Load())
		return true
	})
}

// snapshot returns the counts, nil when there are none.
func (c *counters) snapshot() map[string]int64 {
	var out map[string]int64
	c.m.Range(func(k, v any) bool {
		if out == nil {
			out = map[string]int64{}
		}
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// errTimedOut ends a connect or upgrade that took longer than the bound.
var errTimedOut = errors.New("bench: connect or upgrade timed out")

// failKind names the kind of a failed dial or upgrade for the run's
// connect_failures_by: refused (nothing listening, or the listen queue
// full), timeout (no answer within --handshake-timeout), closed (the server
// closed or reset the connection before answering), http_NNN (answered
// with status NNN, e.g. 503 at the connection cap), error (anything else).
func failKind(err error) string {
	var he *ws.HandshakeError
	var ne net.Error
	switch {
	case errors.As(err, &he):
		return "http_" + strconv.Itoa(he.Status)
	case errors.Is(err, syscall.ECONNREFUSED):
		return "refused"
	case errors.Is(err, errTimedOut), errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, syscall.ETIMEDOUT),
		errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return "closed"
	default:
		return "error"
	}
}

// recorder takes the latency samples of one connection's frames; the
// caller of session.handle guarantees it is not used concurrently or
// locks inside.
type recorder interface {
	recordLat(us []uint64) // send → viewer, microseconds
	recordConn(us uint64)  // dial → joined, microseconds
}

// shardRecorder records into the worker's shared, locked shards (goroutine
// viewers).
type shardRecorder struct{ lat, conn *shard }

func (r shardRecorder) recordLat(us []uint64) { r.lat.record(us...) }
func (r shardRecorder) recordConn(us uint64)  { r.conn.record(us) }

// session is the per-room state of one watching connection that outlives
// its reconnects: the seq tracker and whether it has joined once. Both
// viewer implementations account frames through session.handle.
type session struct {
	room    string
	latency bool // record per-message latency
	tr      Tracker
	joined  bool
}

// resumeQuery returns the path and query of the upgrade request: the room,
// with resume from the last seq seen when the session has seen any.
func (s *session) resumeQuery() string {
	q := "/ws?room=" + s.room
	if s.joined || s.tr.Last() > 0 {
		q += "&resume=" + strconv.FormatUint(s.tr.Last(), 10)
	}
	return q
}

// handle processes one text frame; it returns after_ms of a reconnect
// frame, or -1. resuming is true from a re-join until its history frame.
func (s *session) handle(p []byte, resuming *bool, dialStart time.Time, st *stats, rec recorder) int64 {
	op := frameOp(p)
	switch string(op) {
	case protocol.OpBatch, protocol.OpHistory:
		s.handleMessages(p, string(op) == protocol.OpHistory, *resuming, st, rec)
		if string(op) == protocol.OpHistory && *resuming {
			countResume(p, st)
			*resuming = false
		}
	case protocol.OpJoined:
		s.handleJoined(p, dialStart, st, rec)
	case protocol.OpReconnect:
		a, _ := uintField(p, keyAfterMs)
		return int64(a)
	case protocol.OpAck:
		handleAck(p, st)
	case protocol.OpReject:
		st.rejects.add(string(stringField(p, keyCode)), 1)
	}
	return -1
}

// handleMessages tracks the seqs of a batch or history frame: it counts
// fresh deliveries, duplicates and marked (thinned or shed) ranges, and
// records the latency of each fresh message when s.latency is set.
func (s *session) handleMessages(p []byte, history, resuming bool, st *stats, rec recorder) {
	var now int64
	var lat [64]uint64
	nl := 0
	fresh, dups := 0, 0
	freshHistory := history && !resuming
	// A thinned or shed batch covers from..to: what it leaves out is
	// marked, not lost (docs/protocol.md).
	var markFrom, markTo uint64
	marked := false
	if !history && !resuming {
		if markFrom, markTo, marked = batchMarks(p); marked {
			s.tr.BeginMark(markFrom)
		}
	}
	markedBefore := s.tr.Marked
	eachMessage(p, func(seq uint64, sent int64) {
		if freshHistory && seq <= s.tr.Last() {
			return // recent messages shown on a fresh join
		}
		if !s.tr.Add(seq) {
			dups++
			return
		}
		fresh++
		if s.latency && sent > 0 {
			if now == 0 {
				now = time.Now().UnixNano()
			}
			if d := now - sent; d > 0 {
				lat[nl] = uint64(d / 1e3)
			} else {
				lat[nl] = 0
			}
			nl++
			if nl == len(lat) {
				rec.recordLat(lat[:])
				nl = 0
			}
		}
	})
	if nl > 0 {
		rec.recordLat(lat[:nl])
	}
	if marked {
		s.tr.EndMark(markFrom, markTo)
		if d := s.tr.Marked - markedBefore; d > 0 {
			st.marked.Add(int64(d))
		}
	}
	if fresh > 0 {
		st.deliveries.Add(int64(fresh))
	}
	if dups > 0 {
		st.dups.Add(int64(dups))
	}
}

// countResume counts the history frame that ends a re-join, and whether
// the server said it was incomplete.
func countResume(p []byte, st *stats) {
	st.resumed.Add(1)
	st.lastResume.Store(time.Now().UnixNano())
	if bytes.Contains(p, falseCompl) {
		st.incomplete.Add(1)
	}
}

// handleJoined starts tracking at the joined seq on a fresh join and
// records the time from dial to join.
func (s *session) handleJoined(p []byte, dialStart time.Time, st *stats, rec recorder) {
	seq, _ := uintField(p, keySeq)
	if !s.joined {
		s.tr.Start(seq) // a fresh join: older messages are history
		s.joined = true
		now := time.Now()
		rec.recordConn(uint64(now.Sub(dialStart) / time.Microsecond))
		st.lastJoin.Store(now.UnixNano())
	}
	st.established.Add(1)
}

// handleAck counts an ack and records the publish round trip of the
// bench's own messages (ids "s<unix nanos>-<n>").
func handleAck(p []byte, st *stats) {
	st.acks.Add(1)
	if id := stringField(p, keyID); len(id) > 1 && id[0] == 's' {
		if ns, n := parseUint(id[1:]); n > 0 {
			if d := time.Now().UnixNano() - int64(ns); d > 0 {
				st.ack.record(uint64(d / 1e3))
			}
		}
	}
}

// deflateOffer is the upgrade header of a viewer that offers
// permessage-deflate (Options.Deflate), as browsers do.
const deflateOffer = "Sec-WebSocket-Extensions: permessage-deflate; client_no_context_takeover; server_no_context_takeover\r\n"

// compactOffer is the upgrade header of a viewer that offers compact
// batches (Options.Compact), with danmaku.v1 as the fallback.
const compactOffer = "Sec-WebSocket-Protocol: " + protocol.SubprotocolCompact + ", " + protocol.Subprotocol + "\r\n"

// scanFrames calls f for every complete server frame at the start of buf
// (with whether it is compressed — RSV1, permessage-deflate — and the
// frame's size, header included)
// until f returns false. It returns the bytes consumed and, when an
// incomplete frame follows, the total size that frame needs (0 when its
// header is incomplete too).
func scanFrames(buf []byte, f func(op ws.OpCode, z bool, payload []byte, size int) bool) (off, need int, err error) {
	for {
		p := buf[off:]
		if len(p) < 2 {
			return off, 0, nil
		}
		l := int(p[1] & 0x7f)
		h := 2
		switch l {
		case 126:
			if len(p) < 4 {
				return off, 0, nil
			}
			l, h = int(binary.BigEndian.Uint16(p[2:])), 4
		case 127:
			if len(p) < 10 {
				return off, 0, nil
			}
			u := binary.BigEndian.Uint64(p[2:])
			if u > maxFrameSize {
				return off, 0, errBadFrame
			}
			l, h = int(u), 10
		}
		if p[1]&0x80 != 0 || l > maxFrameSize {
			return off, 0, errBadFrame
		}
		if len(p) < h+l {
			return off, h + l, nil
		}
		off += h + l
		if !f(ws.OpCode(p[0]&0x0f), p[0]&0x40 != 0, p[h:h+l], h+l) {
			return off, 0, nil
		}
	}
}

// dialWS connects from src (nil: the kernel's choice) to addr and upgrades
// to WebSocket with path and query q. It returns the connection and the
// bytes read after the handshake response.
func dialWS(addr string, src *net.TCPAddr, q, token string, timeout time.Duration) (net.Conn, []byte, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: src}
	if src != nil {
		d.Control = bindNoPort
	}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	key := ws.NewKey()
	var hdr string
	if token != "" {
		hdr = "Authorization: Bearer " + token + "\r\n"
	}
	req := ws.AppendClientHandshake(make([]byte, 0, 256), addr, q, key, hdr)
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(req); err != nil {
		c.Close()
		return nil, nil, err
	}
	buf := make([]byte, readBuf)
	n := 0
	for {
		m, err := c.Read(buf[n:])
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		n += m
		end, _, err := ws.ParseHandshakeResponse(buf[:n], key)
		if errors.Is(err, ws.ErrNeedMore) {
			if n == len(buf) {
				c.Close()
				return nil, nil, errTooBig
			}
			continue
		}
		if err != nil {
			c.Close()
			return nil, nil, err
		}
		_ = c.SetDeadline(time.Time{})
		rest := buf[:copy(buf, buf[end:n])]
		return c, rest, nil
	}
}

// dialBackoff is the wait before the next dial after one that failed with
// err, when fails earlier failures in a row backed off: the Go client's
// policy with its defaults — the server's Retry-After when it refused with
// one (not counted: the caller keeps fails), else exponential from 100 ms to
// 5 s with full jitter (docs/protocol.md; counted) — so a storm's viewers
// come back the way real ones would and a dead gateway is not hammered.
func dialBackoff(err error, fails int) (d time.Duration, counted bool) {
	if d, ok := client.RetryAfter(err, client.DefaultMaxBackoff); ok {
		return d, false
	}
	return client.Backoff(client.DefaultMinBackoff, client.DefaultMaxBackoff, fails), true
}

// reconnectWait is the wait before redialing a connection that ended:
// after a storm drop none (or up to jitter); after a drain after_ms;
// after an error 100 ms; the last two spread by the connection's index.
func reconnectWait(idx int, afterMs int64, dropped bool, jitter time.Duration) time.Duration {
	switch {
	case dropped && jitter > 0:
		return time.Duration(rand.Int64N(int64(jitter)))
	case dropped:
		return 0
	case afterMs >= 0:
		return time.Duration(afterMs)*time.Millisecond + time.Duration(idx%1000)*time.Millisecond
	default:
		return 100*time.Millisecond + time.Duration(idx%1000)*time.Millisecond
	}
}

// viewer is one lean WebSocket connection: a single goroutine reads and
// parses frames into a 4 KiB buffer; nothing else is kept per connection
// but the session.
type viewer struct {
	idx   int
	addr  string // gateway host:port
	src   *net.TCPAddr
	token string
	st    *stats
	rec   shardRecorder

	mu      sync.Mutex
	c       net.Conn
	s       session
	dropped bool // dropped on purpose (storm): the next join counts as resumed
}

// dial connects, upgrades and sends nothing else: the room is joined by the
// query string, with resume when the viewer has seen seqs before.
func (v *viewer) dial(timeout time.Duration) (net.Conn, []byte, error) {
	v.mu.Lock()
	q := v.s.resumeQuery()
	v.mu.Unlock()
	return dialWS(v.addr, v.src, q, v.token, timeout)
}

// serve reads frames until the connection ends. It returns the after_ms of
// a reconnect frame (-1 when none came) and the error that ended it.
func (v *viewer) serve(c net.Conn, buf []byte, dialStart time.Time) (afterMs int64, err error) {
	afterMs = -1
	n := len(buf)
	buf = buf[:cap(buf)]
	v.mu.Lock()
	resuming := v.s.joined
	v.mu.Unlock()
	var frames, nbytes int64
	var closed bool
	frame := func(op ws.OpCode, z bool, payload []byte, size int) bool {
		frames++
		nbytes += int64(size)
		switch op {
		case ws.OpClose:
			closed = true
			return false
		case ws.OpPing:
			_, _ = c.Write(ws.AppendClientFrame(nil, ws.OpPong, payload, ws.NewMask()))
		case ws.OpText, ws.OpBinary:
			v.mu.Lock()
			a := v.s.handle(payload, &resuming, dialStart, v.st, v.rec)
			v.mu.Unlock()
			if a >= 0 {
				afterMs = a
			}
		}
		return true
	}
	for {
		off, need, serr := scanFrames(buf[:n], frame)
		if frames > 0 {
			v.st.frames.Add(frames)
			v.st.bytes.Add(nbytes)
			frames, nbytes = 0, 0
		}
		if serr != nil {
			return afterMs, serr
		}
		if closed {
			return afterMs, errClosed
		}
		if need > len(buf) {
			nb := make([]byte, need+readBuf)
			n = copy(nb, buf[off:n])
			buf, off = nb, 0
		}
		if off > 0 {
			n = copy(buf, buf[off:n])
		}
		m, rerr := c.Read(buf[n:])
		if rerr != nil {
			if errors.Is(rerr, io.EOF) {
				rerr = errClosed
			}
			return afterMs, rerr
		}
		n += m
	}
}

// drop closes the connection on purpose; the run loop reconnects at once
// and resumes.
func (v *viewer) drop() { v.closeConn(func() { v.dropped = true }) }

// close ends the viewer for good.
func (v *viewer) close() { v.closeConn(func() { v.c = nil }) }

// closeConn closes the viewer's connection, if any, after mark has
// recorded why (mark runs under v.mu).
func (v *viewer) closeConn(mark func()) {
	v.mu.Lock()
	c := v.c
	mark()
	v.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// run connects and reads until stop is closed, reconnecting (with resume)
// after a drain, a drop or an error when reconnect is set.
func (v *viewer) run(stop <-chan struct{}, reconnect bool, gate chan struct{}, jitter, timeout time.Duration) {
	first := true
	fails := 0
	for {
		select {
		case <-stop:
			return
		default:
		}
		if gate != nil {
			gate <- struct{}{}
		}
		start := time.Now()
		c, buf, err := v.dial(timeout)
		if gate != nil {
			<-gate
		}
		if err != nil {
			v.st.fail(err)
			if !reconnect && first {
				return
			}
			backoff, counted := dialBackoff(err, fails)
			if counted {
				fails++
			}
			if !sleepOrStop(stop, backoff) {
				return
			}
			continue
		}
		fails = 0
		if !first {
			v.st.reconnects.Add(1)
		}
		first = false
		v.mu.Lock()
		v.c = c
		v.dropped = false
		v.mu.Unlock()
		select {
		case <-stop:
			c.Close()
			return
		default:
		}
		v.st.open.Add(1)
		after, _ := v.serve(c, buf, start)
		v.st.open.Add(-1)
		c.Close()
		v.mu.Lock()
		dropped := v.dropped
		v.mu.Unlock()
		if !reconnect {
			return
		}
		if !sleepOrStop(stop, reconnectWait(v.idx, after, dropped, jitter)) {
			return
		}
	}
}

// paced calls start(i) for i in [0, n), spaced at rate per second (no
// pacing when rate <= 0), until start returns false or stop closes.
func paced(stop <-chan struct{}, rate float64, n int, start func(i int) bool) {
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(time.Second) / rate)
	}
	next := time.Now()
	for i := 0; i < n; i++ {
		if interval > 0 {
			next = next.Add(interval)
			if d := time.Until(next); d > 0 && !sleepOrStop(stop, d) {
				return
			}
		}
		if !start(i) {
			return
		}
	}
}

func sleepOrStop(stop <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		return true
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-stop:
		return false
	case <-t.C:
		return true
	}
}

// ipBindAddressNoPort is IP_BIND_ADDRESS_NO_PORT (Linux 4.2+): bind to a
// source address without reserving a port, so that connect picks one per
// 4-tuple. Without it every bind searches the ephemeral range for a port
// unused on that address, which costs CPU and caps an address at ~28k
// connections over all destinations.
const ipBindAddressNoPort = 24

// bindNoPort is the net.Dialer Control hook that sets
// IP_BIND_ADDRESS_NO_PORT on the socket before it is bound.
func bindNoPort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) { serr = setBindNoPort(int(fd)) })
	if err != nil {
		return err
	}
	return serr
}

// setBindNoPort sets IP_BIND_ADDRESS_NO_PORT on the socket fd; the epoll
// viewers call it on their raw sockets, bindNoPort on a dialer's.
func setBindNoPort(fd int) error {
	return syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
}
