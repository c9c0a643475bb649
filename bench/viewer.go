package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

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
	lastJoin    atomic.Int64 // unix ns of the latest first join
	lastResume  atomic.Int64 // unix ns of the latest resumed history
	reconnects  atomic.Int64
	resumed     atomic.Int64 // re-joins after a drop that got their history
	incomplete  atomic.Int64 // history frames with complete:false after a resume
	deliveries  atomic.Int64
	dups        atomic.Int64
	frames      atomic.Int64
	bytes       atomic.Int64
	acks        atomic.Int64
	rejects     sync.Map // code → *atomic.Int64

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

func (st *stats) reject(code string) {
	v, ok := st.rejects.Load(code)
	if !ok {
		v, _ = st.rejects.LoadOrStore(code, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

// viewer is one lean WebSocket connection: a single goroutine reads and
// parses frames into a 4 KiB buffer; nothing else is kept per connection
// but the seq tracker.
type viewer struct {
	idx     int
	room    string
	addr    string // gateway host:port
	src     *net.TCPAddr
	token   string
	latency bool // record per-message latency
	st      *stats
	lshard  *shard

	mu      sync.Mutex
	c       net.Conn
	tr      Tracker
	joined  bool
	dropped bool // dropped on purpose (storm): the next join counts as resumed
}

// dial connects, upgrades and sends nothing else: the room is joined by the
// query string, with resume when the viewer has seen seqs before.
func (v *viewer) dial(timeout time.Duration) (net.Conn, []byte, error) {
	d := net.Dialer{Timeout: timeout, LocalAddr: v.src}
	if v.src != nil {
		d.Control = bindNoPort
	}
	c, err := d.Dial("tcp", v.addr)
	if err != nil {
		return nil, nil, err
	}
	key := ws.NewKey()
	q := "/ws?room=" + v.room
	v.mu.Lock()
	if v.joined || v.tr.Last() > 0 {
		q += "&resume=" + strconv.FormatUint(v.tr.Last(), 10)
	}
	v.mu.Unlock()
	var hdr string
	if v.token != "" {
		hdr = "Authorization: Bearer " + v.token + "\r\n"
	}
	req := ws.AppendClientHandshake(make([]byte, 0, 256), v.addr, q, key, hdr)
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

// serve reads frames until the connection ends. It returns the after_ms of
// a reconnect frame (-1 when none came) and the error that ended it.
func (v *viewer) serve(c net.Conn, buf []byte, dialStart time.Time) (afterMs int64, err error) {
	afterMs = -1
	n := len(buf)
	buf = buf[:cap(buf)]
	resuming := v.joined
	var frames, nbytes int64
	for {
		// Consume every complete frame in buf[:n].
		off := 0
		for {
			p := buf[off:n]
			if len(p) < 2 {
				break
			}
			op := p[0] & 0x0f
			l := int(p[1] & 0x7f)
			h := 2
			switch l {
			case 126:
				if len(p) < 4 {
					goto more
				}
				l, h = int(binary.BigEndian.Uint16(p[2:])), 4
			case 127:
				if len(p) < 10 {
					goto more
				}
				l, h = int(binary.BigEndian.Uint64(p[2:])), 10
			}
			if p[1]&0x80 != 0 || l > maxFrameSize {
				return afterMs, errBadFrame
			}
			if len(p) < h+l {
				if h+l > len(buf) {
					nb := make([]byte, h+l+readBuf)
					n = copy(nb, buf[off:n])
					buf, off = nb, 0
				}
				goto more
			}
			payload := p[h : h+l]
			off += h + l
			frames++
			nbytes += int64(h + l)
			switch ws.OpCode(op) {
			case ws.OpClose:
				return afterMs, errClosed
			case ws.OpPing:
				mask := ws.NewMask()
				_, _ = c.Write(ws.AppendClientFrame(nil, ws.OpPong, payload, mask))
			case ws.OpText, ws.OpBinary:
				if a := v.handle(payload, &resuming, dialStart); a >= 0 {
					afterMs = a
				}
			}
		}
	more:
		if frames > 0 {
			v.st.frames.Add(frames)
			v.st.bytes.Add(nbytes)
			frames, nbytes = 0, 0
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

// handle processes one text frame; it returns after_ms of a reconnect
// frame, or -1.
func (v *viewer) handle(p []byte, resuming *bool, dialStart time.Time) int64 {
	op := frameOp(p)
	switch string(op) {
	case protocol.OpBatch, protocol.OpHistory:
		var now int64
		var lat [64]uint64
		nl := 0
		fresh, dups := 0, 0
		freshHistory := string(op) == protocol.OpHistory && !*resuming
		v.mu.Lock()
		eachMessage(p, func(seq uint64, sent int64) {
			if freshHistory && seq <= v.tr.Last() {
				return // recent messages shown on a fresh join
			}
			if !v.tr.Add(seq) {
				dups++
				return
			}
			fresh++
			if v.latency && sent > 0 {
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
					v.lshard.record(lat[:]...)
					nl = 0
				}
			}
		})
		v.mu.Unlock()
		if nl > 0 {
			v.lshard.record(lat[:nl]...)
		}
		v.st.deliveries.Add(int64(fresh))
		if dups > 0 {
			v.st.dups.Add(int64(dups))
		}
		if string(op) == protocol.OpHistory {
			if *resuming {
				v.st.resumed.Add(1)
				v.st.lastResume.Store(time.Now().UnixNano())
				if bytes.Contains(p, falseCompl) {
					v.st.incomplete.Add(1)
				}
				*resuming = false
			}
		}
	case protocol.OpJoined:
		seq, _ := uintField(p, keySeq)
		v.mu.Lock()
		if !v.joined {
			v.tr.Start(seq) // a fresh join: older messages are history
			v.joined = true
			v.mu.Unlock()
			now := time.Now()
			v.st.conn.record(uint64(now.Sub(dialStart) / time.Microsecond))
			v.st.lastJoin.Store(now.UnixNano())
		} else {
			v.mu.Unlock()
		}
		v.st.established.Add(1)
	case protocol.OpReconnect:
		a, _ := uintField(p, keyAfterMs)
		return int64(a)
	case protocol.OpAck:
		v.st.acks.Add(1)
		if id := stringField(p, keyID); len(id) > 1 && id[0] == 's' {
			if ns, n := parseUint(id[1:]); n > 0 {
				if d := time.Now().UnixNano() - int64(ns); d > 0 {
					v.st.ack.record(uint64(d / 1e3))
				}
			}
		}
	case protocol.OpReject:
		v.st.reject(string(stringField(p, keyCode)))
	}
	return -1
}

// drop closes the connection on purpose; the run loop reconnects at once
// and resumes.
func (v *viewer) drop() {
	v.mu.Lock()
	c := v.c
	v.dropped = true
	v.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// close ends the viewer for good.
func (v *viewer) close() {
	v.mu.Lock()
	c := v.c
	v.c = nil
	v.mu.Unlock()
	if c != nil {
		_ = c.Close()
	}
}

// run connects and reads until stop is closed, reconnecting (with resume)
// after a drain, a drop or an error when reconnect is set.
func (v *viewer) run(stop <-chan struct{}, reconnect bool, gate chan struct{}, jitter time.Duration) {
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
		c, buf, err := v.dial(10 * time.Second)
		if gate != nil {
			<-gate
		}
		if err != nil {
			v.st.failed.Add(1)
			if !reconnect && first {
				return
			}
			// Back off like a real client: 200 ms doubling to 5 s, plus
			// jitter, so a dead gateway is not hammered.
			backoff := min(5*time.Second, 200*time.Millisecond<<min(fails, 5))
			fails++
			if !sleepOrStop(stop, backoff+time.Duration(rand.Int64N(int64(backoff)))) {
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
		wait := time.Duration(0)
		if dropped && jitter > 0 {
			wait = time.Duration(rand.Int64N(int64(jitter)))
		}
		if after >= 0 && !dropped {
			// Spread the reconnects of a drain over after_ms.
			wait = time.Duration(after)*time.Millisecond + time.Duration(v.idx%1000)*time.Millisecond
		} else if !dropped {
			wait = 100*time.Millisecond + time.Duration(v.idx%1000)*time.Millisecond
		}
		if !sleepOrStop(stop, wait) {
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

func bindNoPort(network, address string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_IP, ipBindAddressNoPort, 1)
	})
	if err != nil {
		return err
	}
	return serr
}
