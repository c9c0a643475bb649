// Package client is a Go client of the danmaku WebSocket protocol, used by
// the end-to-end tests and the bench harness, and as an example for
// integrators.
//
// A Client keeps one connection alive: it reconnects with exponential
// backoff and jitter, rejoins its rooms with resume set to the last seq it
// delivered, resumes on the same connection when a batch skips seqs, and
// delivers every room's messages exactly once in seq order. Send retries
// with the same message id until the server answers, so a message is never
// posted twice.
package client

import (
	"bufio"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// Errors.
var (
	ErrClosed = errors.New("client: closed")
)

// Config configures a Client.
type Config struct {
	// URL is the gateway endpoint, e.g. "ws://127.0.0.1:8090/ws".
	URL string
	// URLs lists further gateway endpoints to fail over to: a connection
	// attempt that fails moves on to the next address (URL first, then
	// URLs in order, round robin), so the viewers of a gateway that died
	// reconnect to another and resume there. Optional; when URL is empty
	// the first of URLs is used.
	URLs []string
	// Token is a JWT; empty means an anonymous viewer (may watch, not send).
	Token string
	// DialTimeout bounds one connection attempt. Zero value means 5s.
	DialTimeout time.Duration
	// MinBackoff and MaxBackoff bound the reconnect delay, which doubles
	// per failed attempt with full jitter (see [Backoff]). Zero values mean
	// DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff, MaxBackoff time.Duration
	// SendTimeout is how long Send waits for an answer before retrying
	// with the same id. Zero value means 3s.
	SendTimeout time.Duration
	// PingInterval is how often the client pings a quiet connection. Zero
	// value means 20s.
	PingInterval time.Duration
	// OnMessage receives every message of every joined room, exactly once,
	// in seq order per room. It runs on the client's reader goroutine and
	// must not block for long.
	OnMessage func(room string, m protocol.Message)
	// OnFrame receives every other server frame (joined, history, delete,
	// online, notice, kicked, reconnect, error, ...), after the client has
	// processed it. Optional.
	OnFrame func(f protocol.ServerFrame)
	// OnThinned hears of each thinned batch of a joined room (the gateway
	// or dispatch left some of its seqs out under load, on purpose): it
	// covers from..to, and the messages of it that were shown go to
	// OnMessage right after. Optional.
	OnThinned func(room string, from, to uint64)
	// Dial overrides how the TCP connection is made (for binding a local
	// address in load tests). Nil means net.Dialer.DialContext.
	Dial func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Client is a danmaku connection that survives disconnects (but not a kick,
// close 4001, or an expired token, close 4005: then Done is closed). Its
// methods are safe for concurrent use.
type Client struct {
	cfg     Config
	targets []target // URL then URLs
	cur     int      // index of the target the next attempt uses; guarded by mu

	mu      sync.Mutex // guards everything below
	conn    net.Conn
	connGen int
	rooms   map[string]*roomState
	waiters map[string]chan protocol.ServerFrame
	closed  bool
	kicked  string
	ready   chan struct{} // closed when a connection is up; replaced on loss

	wmu sync.Mutex // serialises writes to conn

	done chan struct{}
	wg   sync.WaitGroup
}

// target is one gateway endpoint.
type target struct {
	host, path string
}

type roomState struct {
	last uint64 // highest seq delivered or covered (thinned batches)
	// joinedSeq is the seq of the last joined frame: the history that
	// follows covers every seq up to it.
	joinedSeq uint64
	resuming  bool // a resume is in flight; batches wait for its history
	joined    chan struct{}
	complete  bool
	// incomplete counts resumes in a row answered complete:false without
	// progress; the client asks again until maxIncomplete.
	incomplete int
}

// maxIncomplete is how many times in a row a resume answered
// complete:false without progress is asked again (after 250 ms, 500 ms,
// 1 s, ...) before the client accepts the gap and moves on.
const maxIncomplete = 4

// Dial connects and starts the client. It returns after the first
// connection succeeded (reconnects afterwards happen in the background).
func Dial(ctx context.Context, cfg Config) (*Client, error) {
	var targets []target
	for i, raw := range append([]string{cfg.URL}, cfg.URLs...) {
		if raw == "" && i == 0 && len(cfg.URLs) > 0 {
			continue
		}
		u, err := url.Parse(raw)
		if err != nil || u.Scheme != "ws" || u.Host == "" {
			return nil, fmt.Errorf("client: URL must be ws://host:port/path, got %q", raw)
		}
		tg := target{host: u.Host, path: u.EscapedPath()}
		if tg.path == "" {
			tg.path = "/ws"
		}
		targets = append(targets, tg)
	}
	if cfg.DialTimeout == 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if cfg.MinBackoff == 0 {
		cfg.MinBackoff = DefaultMinBackoff
	}
	if cfg.MaxBackoff == 0 {
		cfg.MaxBackoff = DefaultMaxBackoff
	}
	if cfg.SendTimeout == 0 {
		cfg.SendTimeout = 3 * time.Second
	}
	if cfg.PingInterval == 0 {
		cfg.PingInterval = 20 * time.Second
	}
	c := &Client{
		cfg: cfg, targets: targets,
		rooms:   make(map[string]*roomState),
		waiters: make(map[string]chan protocol.ServerFrame),
		ready:   make(chan struct{}),
		done:    make(chan struct{}),
	}
	var conn net.Conn
	var br *bufio.Reader
	var err error
	for range c.targets { // the first connection tries every address once
		if conn, br, err = c.connect(ctx); err == nil || ctx.Err() != nil {
			break
		}
	}
	if err != nil {
		return nil, err
	}
	c.adopt(conn)
	c.wg.Add(1)
	go c.loop(conn, br)
	return c, nil
}

// connect dials and upgrades one connection to the current target; when
// that fails, the next attempt goes to the next target.
func (c *Client) connect(ctx context.Context) (net.Conn, *bufio.Reader, error) {
	c.mu.Lock()
	i := c.cur
	c.mu.Unlock()
	conn, br, err := c.connectTo(ctx, c.targets[i])
	if err != nil {
		c.mu.Lock()
		c.cur = (i + 1) % len(c.targets)
		c.mu.Unlock()
	}
	return conn, br, err
}

// connectTo dials and upgrades one connection to tg.
func (c *Client) connectTo(ctx context.Context, tg target) (net.Conn, *bufio.Reader, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.DialTimeout)
	defer cancel()
	dial := c.cfg.Dial
	if dial == nil {
		dial = (&net.Dialer{}).DialContext
	}
	conn, err := dial(ctx, "tcp", tg.host)
	if err != nil {
		return nil, nil, err
	}
	if d, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(d)
	}
	pq := tg.path
	if c.cfg.Token != "" {
		pq += "?token=" + url.QueryEscape(c.cfg.Token)
	}
	key := ws.NewKey()
	if _, err := conn.Write(ws.AppendClientHandshake(nil, tg.host, pq, key, "")); err != nil {
		conn.Close()
		return nil, nil, err
	}
	br := bufio.NewReaderSize(conn, 16<<10)
	var buf []byte
	for {
		b, err := br.ReadByte()
		if err != nil {
			conn.Close()
			return nil, nil, err
		}
		buf = append(buf, b)
		if len(buf) >= 4 && string(buf[len(buf)-4:]) == "\r\n\r\n" {
			break
		}
		if len(buf) > 16<<10 {
			conn.Close()
			return nil, nil, errors.New("client: handshake response too large")
		}
	}
	if _, status, err := ws.ParseHandshakeResponse(buf, key); err != nil {
		conn.Close()
		if status != 0 {
			return nil, nil, fmt.Errorf("client: upgrade refused with HTTP %d: %w", status, err)
		}
		return nil, nil, err
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, br, nil
}

// loop reads one connection after another until Close. Runs on its own
// goroutine.
func (c *Client) loop(conn net.Conn, br *bufio.Reader) {
	defer c.wg.Done()
	attempt := 0
	for {
		err := c.read(conn, br)
		c.lost(conn)
		if c.isClosed() {
			return
		}
		var ce *CloseError
		if errors.As(err, &ce) && (ce.Code == protocol.CloseKicked || ce.Code == protocol.CloseTokenExpired) {
			// Kicked or token expired: reconnecting would not help.
			c.mu.Lock()
			if c.kicked == "" {
				c.kicked = ce.Reason
			}
			c.mu.Unlock()
			c.shutdown()
			return
		}
		d := Backoff(c.cfg.MinBackoff, c.cfg.MaxBackoff, attempt)
		for {
			select {
			case <-c.done:
				return
			case <-time.After(d):
			}
			var cerr error
			conn, br, cerr = c.connect(context.Background())
			if cerr == nil {
				attempt = 0
				c.adopt(conn)
				break
			}
			// A gateway that said when to come back (503 at its cap or
			// draining) is taken at its word; otherwise back off further.
			var ok bool
			if d, ok = RetryAfter(cerr, c.cfg.MaxBackoff); !ok {
				attempt++
				d = Backoff(c.cfg.MinBackoff, c.cfg.MaxBackoff, attempt)
			}
		}
	}
}

// The reconnect delay's bounds when Config leaves them zero.
const (
	DefaultMinBackoff = 100 * time.Millisecond
	DefaultMaxBackoff = 5 * time.Second
)

// Backoff returns the delay before reconnect attempt number attempt
// (counted from 0 since the last successful connection): a random time in
// [lo/2, lo/2 + min(hi, lo·2^attempt)) — exponential with full jitter, the
// policy docs/protocol.md asks of every client.
func Backoff(lo, hi time.Duration, attempt int) time.Duration {
	d := lo << min(attempt, 16)
	if d > hi || d <= 0 {
		d = hi
	}
	return time.Duration(rand.Int64N(int64(d))) + lo/2
}

// RetryAfter returns the wait before the next attempt when err is an
// upgrade refused with a Retry-After header (a gateway's 503 at its
// connection cap or while it drains, 429 past its per-IP cap): the header's
// delay plus a random part of up to as much again, so the refused clients
// do not return at the same instant, at most hi. ok is false when err has
// no such header; the caller then backs off as usual.
func RetryAfter(err error, hi time.Duration) (d time.Duration, ok bool) {
	var he *ws.HandshakeError
	if !errors.As(err, &he) {
		return 0, false
	}
	ra := he.RetryAfter()
	if ra <= 0 {
		return 0, false
	}
	return min(hi, ra+time.Duration(rand.Int64N(int64(ra)))), true
}

// adopt makes conn current and rejoins every room with resume. The joins
// are written before anything else can be: a send retried across the
// reconnect must not reach the gateway ahead of its room's join (it would
// be rejected "join the room before sending").
func (c *Client) adopt(conn net.Conn) {
	c.wmu.Lock()
	c.mu.Lock()
	c.conn = conn
	c.connGen++
	gen := c.connGen
	ready := c.ready
	var frames [][]byte
	for name, rs := range c.rooms {
		rs.resuming = true
		frames = append(frames, joinFrame(name, rs.last, rs.last > 0))
	}
	c.mu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	for _, f := range frames {
		if _, err := conn.Write(ws.AppendClientFrame(nil, ws.OpText, f, ws.NewMask())); err != nil {
			break // the read loop sees the broken connection and reconnects
		}
	}
	c.wmu.Unlock()
	c.mu.Lock()
	close(ready)
	c.mu.Unlock()
	c.wg.Add(1)
	go c.pinger(conn, gen)
}

func (c *Client) lost(conn net.Conn) {
	conn.Close()
	c.mu.Lock()
	if c.conn == conn {
		c.conn = nil
		c.ready = make(chan struct{})
	}
	c.mu.Unlock()
}

func (c *Client) pinger(conn net.Conn, gen int) {
	defer c.wg.Done()
	t := time.NewTicker(c.cfg.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-c.done:
			return
		case <-t.C:
			if c.writeGen(gen, []byte(`{"op":"ping"}`)) != nil {
				return
			}
		}
	}
}

func joinFrame(room string, resume uint64, withResume bool) []byte {
	if withResume {
		return []byte(`{"op":"join","room":"` + room + `","resume":` + strconv.FormatUint(resume, 10) + `}`)
	}
	return []byte(`{"op":"join","room":"` + room + `"}`)
}

// read parses frames from conn until it fails.
func (c *Client) read(conn net.Conn, br *bufio.Reader) error {
	rd := ws.Reader{Client: true, MaxMessage: 16 << 20}
	buf := make([]byte, 0, 32<<10)
	tmp := make([]byte, 32<<10)
	for {
		n, err := br.Read(tmp)
		if err != nil {
			return err
		}
		buf = append(buf, tmp[:n]...)
		for {
			msg, used, ok, err := rd.Next(buf)
			if errors.Is(err, ws.ErrNeedMore) {
				break
			}
			if err != nil {
				return err
			}
			if ok {
				switch msg.Op {
				case ws.OpText:
					c.handle(msg.Payload)
				case ws.OpPing:
					_ = c.write(ws.OpPong, msg.Payload)
				case ws.OpClose:
					code, reason, _ := ws.ParseClose(msg.Payload)
					_ = c.write(ws.OpClose, ws.AppendClosePayload(nil, code, ""))
					return &CloseError{Code: code, Reason: reason}
				}
			}
			buf = buf[used:]
		}
		if len(buf) == 0 {
			buf = buf[:0:cap(buf)]
		}
	}
}

// CloseError is how the server closed the connection.
type CloseError struct {
	Code   uint16
	Reason string
}

func (e *CloseError) Error() string {
	return "client: closed by server: " + strconv.Itoa(int(e.Code)) + " " + e.Reason
}

// handle processes one server frame.
func (c *Client) handle(b []byte) {
	f, err := protocol.DecodeServer(b)
	if err != nil {
		return
	}
	switch f.Op {
	case protocol.OpBatch:
		c.onBatch(f)
		return
	case protocol.OpHistory:
		if c.onHistory(f) {
			return
		}
	case protocol.OpJoined:
		c.mu.Lock()
		if rs := c.rooms[f.Room]; rs != nil {
			rs.joinedSeq = f.Seq
		}
		c.mu.Unlock()
	case protocol.OpAck, protocol.OpReject:
		c.mu.Lock()
		ch := c.waiters[f.ID]
		delete(c.waiters, f.ID)
		c.mu.Unlock()
		if ch != nil {
			ch <- f
		}
	case protocol.OpKicked:
		c.mu.Lock()
		c.kicked = f.Reason
		c.mu.Unlock()
	case protocol.OpReconnect:
		// Graceful drain: move on after after_ms (the server closes with
		// 1001 then at the latest).
		time.AfterFunc(time.Duration(f.AfterMs)*time.Millisecond, c.Drop)
	}
	if c.cfg.OnFrame != nil {
		c.cfg.OnFrame(f)
	}
}

// onBatch delivers the new messages of a batch of a joined room, and on a
// gap asks the gateway to resume from the last seq delivered.
func (c *Client) onBatch(f protocol.ServerFrame) {
	c.mu.Lock()
	rs := c.rooms[f.Room]
	if rs == nil || rs.resuming {
		c.mu.Unlock()
		return // not joined, or its history will cover this batch
	}
	out, gap := rs.takeBatch(f)
	var resume []byte
	if gap {
		rs.resuming = true
		resume = joinFrame(f.Room, rs.last, true)
	}
	c.mu.Unlock()
	if !gap && f.To != 0 && c.cfg.OnThinned != nil {
		c.cfg.OnThinned(f.Room, f.From, f.To)
	}
	c.deliver(f.Room, out)
	if resume != nil {
		_ = c.writeText(resume)
	}
}

// takeBatch returns the messages of batch f after rs.last and advances
// rs.last, or reports a gap: seqs missing between rs.last and the batch.
// Called with c.mu held.
func (rs *roomState) takeBatch(f protocol.ServerFrame) (out []protocol.Message, gap bool) {
	if f.To != 0 {
		// A thinned batch covers f.From..f.To: the seqs it leaves
		// out are not a gap.
		if rs.last != 0 && f.From > rs.last+1 {
			return nil, true
		}
		for _, m := range f.Msgs {
			if m.Seq > rs.last {
				out = append(out, m)
			}
		}
		rs.last = max(rs.last, f.To)
		return out, false
	}
	for _, m := range f.Msgs {
		if m.Seq <= rs.last {
			continue
		}
		if rs.last != 0 && m.Seq != rs.last+1 {
			return out, true
		}
		rs.last = m.Seq
		out = append(out, m)
	}
	return out, false
}

// onHistory delivers the history answering a join or resume. It reports
// whether it asked again (an incomplete resume), in which case the frame
// is not passed to OnFrame.
func (c *Client) onHistory(f protocol.ServerFrame) (askedAgain bool) {
	c.mu.Lock()
	rs := c.rooms[f.Room]
	if rs != nil && !f.Complete && rs.last > 0 && rs.incomplete < maxIncomplete {
		c.resumeIncomplete(rs, f) // unlocks c.mu
		return true
	}
	var out []protocol.Message
	if rs != nil {
		rs.incomplete = 0
		for _, m := range f.Msgs {
			if m.Seq > rs.last {
				rs.last = m.Seq
				out = append(out, m)
			}
		}
		// The history covers everything up to the joined seq, also
		// messages a thinned room left out.
		rs.last = max(rs.last, rs.joinedSeq)
		rs.resuming = false
		rs.complete = f.Complete
		if rs.joined != nil {
			close(rs.joined)
			rs.joined = nil
		}
	}
	c.mu.Unlock()
	c.deliver(f.Room, out)
	return false
}

// resumeIncomplete handles a resume the gateway could not fill entirely
// (history behind, or a gap larger than it serves at once): it delivers
// the part that continues the stream and asks again from there after a
// growing delay, so nothing is skipped. Called with c.mu held; unlocks it.
func (c *Client) resumeIncomplete(rs *roomState, f protocol.ServerFrame) {
	var out []protocol.Message
	before := rs.last
	for _, m := range f.Msgs {
		if m.Seq == rs.last+1 {
			rs.last = m.Seq
			out = append(out, m)
		}
	}
	if rs.last > before {
		rs.incomplete = 0
	} else {
		rs.incomplete++
	}
	delay := 250 * time.Millisecond << rs.incomplete
	resume := joinFrame(f.Room, rs.last, true)
	c.mu.Unlock()
	c.deliver(f.Room, out)
	time.AfterFunc(delay, func() { _ = c.writeText(resume) })
}

func (c *Client) deliver(room string, msgs []protocol.Message) {
	if c.cfg.OnMessage == nil {
		return
	}
	for _, m := range msgs {
		c.cfg.OnMessage(room, m)
	}
}

// Join joins room and waits for its history. On a new room after a
// previous session, pass resume > 0 to get the messages after that seq.
func (c *Client) Join(ctx context.Context, room string, resume uint64) error {
	if !protocol.ValidRoom(room) {
		return fmt.Errorf("client: bad room %q", room)
	}
	c.mu.Lock()
	rs := c.rooms[room]
	if rs == nil {
		rs = &roomState{last: resume}
		c.rooms[room] = rs
	}
	rs.resuming = true
	joined := make(chan struct{})
	rs.joined = joined
	c.mu.Unlock()
	if err := c.writeText(joinFrame(room, resume, resume > 0)); err != nil {
		return err
	}
	select {
	case <-joined:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-c.done:
		return ErrClosed
	}
}

// Leave leaves room.
func (c *Client) Leave(room string) error {
	c.mu.Lock()
	delete(c.rooms, room)
	c.mu.Unlock()
	return c.writeText([]byte(`{"op":"leave","room":"` + room + `"}`))
}

// LastSeq returns the highest seq delivered for room.
func (c *Client) LastSeq(room string) uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	if rs := c.rooms[room]; rs != nil {
		return rs.last
	}
	return 0
}

// NewID returns a random message id.
func NewID() string {
	var b [12]byte
	_, _ = crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Send posts text to room with a fresh id and waits for the verdict,
// retrying with the same id (after reconnects, timeouts, and "unavailable"
// rejects with their retry_after_ms) until ctx is done. The returned frame
// is an ack (Seq or Held set) or a reject (Code set).
func (c *Client) Send(ctx context.Context, room, text string) (protocol.ServerFrame, error) {
	return c.SendID(ctx, room, NewID(), text)
}

// SendID is Send with a caller-chosen id.
func (c *Client) SendID(ctx context.Context, room, id, text string) (protocol.ServerFrame, error) {
	return c.sendID(ctx, room, id, text, false)
}

// Resend sends again a message sent before with id (its answer was lost,
// e.g. by an earlier process of the caller): every attempt is marked as a
// retry, so the pipeline answers from its dedupe, or unavailable while it
// cannot look the id up, never with a second decision.
func (c *Client) Resend(ctx context.Context, room, id, text string) (protocol.ServerFrame, error) {
	return c.sendID(ctx, room, id, text, true)
}

// sendID runs the attempts of one send; attempts after the first (and all
// of them when retry is set) carry the frame's retry mark.
func (c *Client) sendID(ctx context.Context, room, id, text string, retry bool) (protocol.ServerFrame, error) {
	frame := sendFrame(room, id, text, retry)
	attempt := 0
	for {
		if attempt > 0 && !retry {
			retry = true
			frame = sendFrame(room, id, text, true)
		}
		ch := make(chan protocol.ServerFrame, 1)
		c.mu.Lock()
		c.waiters[id] = ch
		c.mu.Unlock()
		werr := c.writeText(frame)
		if werr == nil {
			t := time.NewTimer(c.cfg.SendTimeout)
			select {
			case f := <-ch:
				t.Stop()
				if f.Op == protocol.OpReject && f.Code == protocol.CodeUnavailable {
					wait := time.Duration(f.RetryAfterMs) * time.Millisecond
					if wait <= 0 {
						wait = Backoff(c.cfg.MinBackoff, c.cfg.MaxBackoff, attempt)
					}
					attempt++
					if !sleepCtx(ctx, c.done, wait) {
						return f, ctx.Err()
					}
					continue
				}
				return f, nil
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				c.forget(id)
				return protocol.ServerFrame{}, ctx.Err()
			case <-c.done:
				t.Stop()
				return protocol.ServerFrame{}, ErrClosed
			}
		}
		c.forget(id)
		if errors.Is(werr, ErrClosed) {
			return protocol.ServerFrame{}, werr
		}
		// No answer or no connection: wait for one, back off, retry.
		if !sleepCtx(ctx, c.done, Backoff(c.cfg.MinBackoff, c.cfg.MaxBackoff, attempt)) {
			return protocol.ServerFrame{}, ctx.Err()
		}
		attempt++
		c.mu.Lock()
		ready := c.ready
		c.mu.Unlock()
		select {
		case <-ready:
		case <-ctx.Done():
			return protocol.ServerFrame{}, ctx.Err()
		case <-c.done:
			return protocol.ServerFrame{}, ErrClosed
		}
	}
}

func (c *Client) forget(id string) {
	c.mu.Lock()
	delete(c.waiters, id)
	c.mu.Unlock()
}

func sleepCtx(ctx context.Context, done chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	case <-done:
		return false
	}
}

func sendFrame(room, id, text string, retry bool) []byte {
	return protocol.Encode(protocol.ClientFrame{Op: protocol.OpSend, Room: room, ID: id, Text: text, Retry: retry})
}

// Kicked returns the reason of a kick, "" if none.
func (c *Client) Kicked() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.kicked
}

// Drop closes the current connection (the client reconnects): for tests.
func (c *Client) Drop() {
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		conn.Close()
	}
}

func (c *Client) writeText(payload []byte) error { return c.write(ws.OpText, payload) }

func (c *Client) write(op ws.OpCode, payload []byte) error {
	c.mu.Lock()
	conn, closed := c.conn, c.closed
	c.mu.Unlock()
	if closed {
		return ErrClosed
	}
	if conn == nil {
		return io.ErrClosedPipe
	}
	return c.writeTo(conn, op, payload)
}

func (c *Client) writeGen(gen int, payload []byte) error {
	c.mu.Lock()
	conn := c.conn
	ok := c.connGen == gen && conn != nil
	c.mu.Unlock()
	if !ok {
		return io.ErrClosedPipe
	}
	return c.writeTo(conn, ws.OpText, payload)
}

func (c *Client) writeTo(conn net.Conn, op ws.OpCode, payload []byte) error {
	frame := ws.AppendClientFrame(nil, op, payload, ws.NewMask())
	c.wmu.Lock()
	defer c.wmu.Unlock()
	_ = conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	_, err := conn.Write(frame)
	return err
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Done is closed when the client stops for good: after Close, a kick
// (close 4001) or an expired token (close 4005).
func (c *Client) Done() <-chan struct{} { return c.done }

// shutdown stops reconnecting without waiting for the loop (it runs on it).
func (c *Client) shutdown() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.closed = true
		close(c.done)
	}
}

// Close closes the connection and stops reconnecting.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.wg.Wait()
		return nil
	}
	c.closed = true
	conn := c.conn
	close(c.done)
	c.mu.Unlock()
	if conn != nil {
		c.wmu.Lock()
		_ = conn.SetWriteDeadline(time.Now().Add(time.Second))
		_, _ = conn.Write(ws.AppendClientFrame(nil, ws.OpClose, ws.AppendClosePayload(nil, ws.CloseNormal, ""), ws.NewMask()))
		c.wmu.Unlock()
		conn.Close()
	}
	c.wg.Wait()
	return nil
}
