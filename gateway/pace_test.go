package gateway

import (
	"bytes"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// TestFlushPacing checks that a flush's fan-out cost delays the loop's
// next flush (Config.FlushRate), that what arrives meanwhile is delivered
// in order as one merged batch, and that pacing off delivers at once.
func TestFlushPacing(t *testing.T) {
	for _, tc := range []struct {
		name    string
		rate    int
		minWait time.Duration
	}{
		{"paced", 10, 300 * time.Millisecond}, // 2 viewers at 10 writes/s: 200 ms, at most MaxFlushDelay
		{"off", -1, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gw := startGW(t, func(c *Config) {
				c.Loops = 1
				c.FlushRate = tc.rate
				c.MaxFlushDelay = 400 * time.Millisecond
			})
			a, b := dialRaw(t, gw.addr), dialRaw(t, gw.addr)
			for _, v := range []*wstest.Conn{a, b} {
				if st := v.Upgrade("/ws?room=p", ""); st != 101 {
					t.Fatal(st)
				}
				v.NextOp(protocol.OpHistory, 2*time.Second)
			}
			publishSeqs(t, gw, "p", 1, 1, 1)
			a.NextOp(protocol.OpBatch, 2*time.Second)
			first := time.Now()
			for seq := uint64(2); seq <= 11; seq++ {
				publishSeqs(t, gw, "p", seq, seq, 1)
			}
			if tc.minWait > 0 {
				// Everything published during the pause comes as one
				// merged batch.
				b := a.NextOp(protocol.OpBatch, 2*time.Second)
				if len(b.Msgs) != 10 || b.Msgs[0].Seq != 2 || b.Msgs[9].Seq != 11 || b.To != 0 {
					t.Fatalf("after the pause got %d msgs (to=%d): %+v, want seqs 2-11 in one batch", len(b.Msgs), b.To, b.Msgs)
				}
			} else {
				collect(t, a, nil, 2, 11, false)
			}
			waited := time.Since(first)
			t.Logf("batches 2-11 arrived %v after batch 1", waited)
			collect(t, b, nil, 1, 11, false)
			if tc.minWait > 0 && waited < tc.minWait/2 {
				t.Fatalf("the paced flush came %v after the first, want about %v", waited, tc.minWait)
			}
			if tc.minWait == 0 && waited > 2*time.Second {
				t.Fatalf("unpaced batches took %v", waited)
			}
		})
	}
}

func TestPaceAfter(t *testing.T) {
	s := &Server{cfg: Config{FlushRate: 250_000, MaxFlushDelay: 40 * time.Millisecond}}
	for _, tc := range []struct {
		n    int
		want time.Duration
	}{
		{0, 0},
		{1, 4 * time.Microsecond},
		{2500, 10 * time.Millisecond},
		{9500, 38 * time.Millisecond},
		{19000, 40 * time.Millisecond},
	} {
		if got := s.paceAfter(tc.n); got != tc.want {
			t.Errorf("paceAfter(%d) = %v, want %v", tc.n, got, tc.want)
		}
	}
	s.cfg.FlushRate = -1
	if got := s.paceAfter(19000); got != 0 {
		t.Errorf("pacing off: paceAfter = %v", got)
	}
}

func TestMergedBatches(t *testing.T) {
	msgs := func(seqs ...uint64) []protocol.Message {
		var out []protocol.Message
		for _, q := range seqs {
			out = append(out, protocol.Message{Seq: q, UID: "u", Text: "t"})
		}
		return out
	}
	d := func(first, last uint64, seqs ...uint64) delivery {
		return delivery{room: "r", frame: []byte("x"), first: first, last: last, msgs: len(seqs), batch: msgs(seqs...)}
	}
	s := &Server{}
	for _, tc := range []struct {
		name     string
		ds       []delivery
		ok       bool
		from, to uint64 // want a thinned batch covering from..to
		seqs     []uint64
	}{
		{"plain", []delivery{d(1, 2, 1, 2), d(3, 3, 3), d(4, 6, 4, 5, 6)}, true, 0, 0, []uint64{1, 2, 3, 4, 5, 6}},
		{"thinned inside", []delivery{d(1, 2, 1, 2), d(3, 9, 5), d(10, 10, 10)}, true, 1, 10, []uint64{1, 2, 5, 10}},
		{"gap between batches", []delivery{d(1, 2, 1, 2), d(4, 4, 4)}, false, 0, 0, nil},
		{"frame outside the stream", []delivery{d(1, 2, 1, 2), {room: "r", frame: []byte("x")}}, false, 0, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var l loop
			frame, zframe, ok := l.merged(s, tc.ds, false, nil, nil)
			if ok != tc.ok {
				t.Fatalf("ok = %v, want %v", ok, tc.ok)
			}
			if !ok {
				return
			}
			if zframe != nil {
				t.Fatal("compressed without deflate viewers")
			}
			bs := splitFrames(t, frame)
			if len(bs) != 1 {
				t.Fatalf("%d frames, want 1", len(bs))
			}
			b := bs[0]
			if b.From != tc.from || b.To != tc.to {
				t.Fatalf("from/to %d/%d, want %d/%d", b.From, b.To, tc.from, tc.to)
			}
			var got []uint64
			for _, m := range b.Msgs {
				got = append(got, m.Seq)
			}
			if fmtSeqs(got) != fmtSeqs(tc.seqs) {
				t.Fatalf("seqs %v, want %v", got, tc.seqs)
			}
		})
	}
}

func TestOnlineEvery(t *testing.T) {
	for _, tc := range []struct {
		rate    int
		viewers int64
		want    time.Duration
	}{
		{2500, 1, 2 * time.Second},
		{2500, 5000, 2 * time.Second},
		{2500, 19000, 7600 * time.Millisecond}, // one room of 19,000 or two of 9,500
		{100, 7700, 77 * time.Second},
	} {
		s := &Server{cfg: Config{PresenceInterval: 2 * time.Second, OnlineRate: tc.rate}}
		if got, send := s.onlineEvery(tc.viewers); got != tc.want || !send {
			t.Errorf("rate %d: onlineEvery(%d) = %v, %v; want %v, true", tc.rate, tc.viewers, got, send, tc.want)
		}
	}
	s := &Server{cfg: Config{PresenceInterval: 2 * time.Second, OnlineRate: -1}}
	if _, send := s.onlineEvery(10); send {
		t.Error("OnlineRate -1 still sends online frames")
	}
}

// splitFrames decodes the unmasked server frames concatenated in b.
func splitFrames(t *testing.T, b []byte) []protocol.ServerFrame {
	t.Helper()
	var out []protocol.ServerFrame
	for len(b) > 0 {
		hdr, n := 2, int(b[1]&0x7f)
		switch n {
		case 126:
			hdr, n = 4, int(b[2])<<8|int(b[3])
		case 127:
			t.Fatal("frame over 64 KiB")
		}
		f, err := protocol.DecodeServer(b[hdr : hdr+n])
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
		b = b[hdr+n:]
	}
	return out
}

// TestMergedChunks checks that merging stops at maxMerge messages per
// frame, at batch boundaries, and that the frames together carry every
// message in order.
func TestMergedChunks(t *testing.T) {
	var ds []delivery
	seq := uint64(1)
	for _, n := range []int{100, 100, 100, 300, 10} {
		var msgs []protocol.Message
		for range n {
			msgs = append(msgs, protocol.Message{Seq: seq, UID: "u", Text: "t"})
			seq++
		}
		ds = append(ds, delivery{room: "r", frame: []byte("x"), first: msgs[0].Seq, last: msgs[n-1].Seq, msgs: n, batch: msgs})
	}
	var l loop
	frames, _, ok := l.merged(&Server{}, ds, false, nil, nil)
	if !ok {
		t.Fatal("not merged")
	}
	var sizes []int
	next := uint64(1)
	for _, b := range splitFrames(t, frames) {
		sizes = append(sizes, len(b.Msgs))
		for _, m := range b.Msgs {
			if m.Seq != next {
				t.Fatalf("seq %d, want %d", m.Seq, next)
			}
			next++
		}
	}
	if fmt.Sprint(sizes) != "[200 100 300 10]" || next != seq {
		t.Fatalf("frames of %v messages up to seq %d, want [200 100 300 10] up to %d", sizes, next-1, seq-1)
	}
}

// TestHandshakeOneWrite checks that the 101 response, joined and history
// reach the client in one write (one TCP segment on loopback, so one
// read), not three.
func TestHandshakeOneWrite(t *testing.T) {
	gw := startGW(t, nil)
	first := dialRaw(t, gw.addr) // makes the room, so that batches fill its ring
	if st := first.Upgrade("/ws?room=w", ""); st != 101 {
		t.Fatal(st)
	}
	first.NextOp(protocol.OpHistory, 2*time.Second)
	publishSeqs(t, gw, "w", 1, 3, 3)
	collect(t, first, nil, 1, 3, false)
	c, err := net.Dial("tcp", gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	req := "GET /ws?room=w HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := c.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64<<10)
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	got := string(buf[:n])
	for _, want := range []string{"HTTP/1.1 101", `"op":"joined"`, `"op":"history"`, `"seq":3`} {
		if !strings.Contains(got, want) {
			t.Fatalf("the first read (%d bytes) lacks %q:\n%q", n, want, got)
		}
	}
}

// joinBig opens n viewers of room "big" at once and reads their history.
func joinBig(t *testing.T, gw *testGW, n int) []*wstest.Conn {
	t.Helper()
	vs := dialAtOnce(n, func(int) *wstest.Conn {
		v := dialRaw(t, gw.addr)
		if st := v.Upgrade("/ws?room=big", ""); st != 101 {
			t.Errorf("upgrade: %d", st)
		}
		return v
	})
	for _, v := range vs {
		v.NextOp(protocol.OpHistory, 5*time.Second)
	}
	return vs
}

// waitQueued waits up to 5 s for want deliveries in l's queue, failing the
// test (not stopping it: it may run on the loop) if they do not come.
func waitQueued(t *testing.T, l *loop, want int) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		l.out.mu.Lock()
		q := len(l.out.q)
		l.out.mu.Unlock()
		if q >= want {
			return true
		}
	}
	t.Errorf("%d deliveries did not reach the loop's queue", want)
	return false
}

// TestPassTakesNewBatches runs a pass over a room bigger than takeEvery
// while the room's next batch waits in the loop's queue: the members the
// pass reaches after takeEvery get both batches in one frame. A third
// batch comes before the next flush: the first takeEvery members get the
// second and third in one frame, the others the third alone. Every viewer
// gets every seq once, in order. The second pass's lateness counts the
// second batch only until it has written the members that lacked it.
func TestPassTakesNewBatches(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.Loops = 1; c.FlushRate = -1; c.OnlineRate = -1; c.MaxConnsPerIP = -1 })
	const n = takeEvery + 100
	vs := joinBig(t, gw, n)
	l := gw.s.loopList()[0]
	queued := func(want int) bool { return waitQueued(t, l, want) }
	passed, held := make(chan struct{}), make(chan struct{})
	var second delivery // as queued after the first pass took it
	l.execute(func() {
		defer close(held)
		if !queued(2) {
			close(passed)
			return
		}
		// Take the first batch out and run its pass with the second queued.
		l.out.mu.Lock()
		first := l.out.q[0]
		l.out.q = append([]delivery(nil), l.out.q[1:]...)
		l.out.mu.Unlock()
		l.deliverRoom(gw.s, []delivery{first})
		l.out.mu.Lock()
		second = l.out.q[0]
		l.out.mu.Unlock()
		close(passed)
		queued(2) // the second and the third
	})
	publishSeqs(t, gw, "big", 1, 1, 1)
	publishSeqs(t, gw, "big", 2, 2, 1)
	<-passed
	publishSeqs(t, gw, "big", 3, 3, 1)
	<-held
	if t.Failed() {
		t.FailNow()
	}
	seqs := func(b protocol.ServerFrame) []uint64 {
		var out []uint64
		for _, m := range b.Msgs {
			out = append(out, m.Seq)
		}
		return out
	}
	early := 0
	for i, v := range vs {
		a, b := seqs(v.NextOp(protocol.OpBatch, 5*time.Second)), seqs(v.NextOp(protocol.OpBatch, 5*time.Second))
		switch {
		case fmt.Sprint(a, b) == "[1 2] [3]":
			early++
		case fmt.Sprint(a, b) == "[1] [2 3]":
		default:
			t.Fatalf("viewer %d got %v then %v, want [1 2] [3] or [1] [2 3]", i, a, b)
		}
	}
	if early != n-takeEvery {
		t.Fatalf("%d viewers got seqs 1-2 in one frame, want the %d after the first %d", early, n-takeEvery, takeEvery)
	}
	// The second batch was written to the members from takeEvery on by
	// the first pass: the second pass is done with it at member
	// takeEvery, and the third batch came later. Its lateness is below
	// the second batch's wait until that pass's end (what the loop
	// counted before).
	if second.first != 2 || second.takenAt != takeEvery+1 {
		t.Fatalf("after the first pass the queue's head is seq %d taken at %d, want seq 2 taken at member %d (+1)", second.first, second.takenAt, takeEvery)
	}
	if lag, end := l.delay.Load(), l.delayAt.Load(); lag <= 0 || lag >= end-second.queued {
		t.Fatalf("second pass's lateness %v, want above 0 and below %v (seq 2 queued → the pass's end)", time.Duration(lag), time.Duration(end-second.queued))
	}
	publishSeqs(t, gw, "big", 4, 4, 1)
	for i, v := range vs {
		if got := seqs(v.NextOp(protocol.OpBatch, 5*time.Second)); fmt.Sprint(got) != "[4]" {
			t.Fatalf("viewer %d: next batch %v, want [4] (nothing repeated)", i, got)
		}
	}
	// Three passes, a write to every viewer in each.
	if w, b := counterValue(gw.s.m.streamWrites), counterValue(gw.s.m.streamBytes); w != 3*n || b < 3*n*20 {
		t.Fatalf("stream writes %v of %v bytes, want %d writes of 20 bytes or more", w, b, 3*n)
	}
}

// TestShortBatchSentPlain: a batch that does not shrink compressed on its
// own (a cover batch of no messages) goes to deflate viewers plain (RSV1
// clear); a long one compressed.
func TestShortBatchSentPlain(t *testing.T) {
	s := &Server{}
	s.ndeflate.Store(1)
	for _, tc := range []struct {
		n          int
		compressed bool
	}{{0, false}, {40, true}} {
		ms := []protocol.Message{}
		for i := 1; i <= tc.n; i++ {
			ms = append(ms, protocol.Message{Seq: uint64(i), UID: "u", Name: "n", Text: "哈哈哈"})
		}
		var l loop
		frames, zframes, ok := l.merged(s, []delivery{{room: "r", frame: []byte("x"), first: 1, last: 50, msgs: tc.n, batch: ms}}, false, nil, nil)
		if !ok {
			t.Fatal("not merged")
		}
		if got := zframes[0]&0x40 != 0; got != tc.compressed || (!got && !bytes.Equal(frames, zframes)) || len(zframes) > len(frames) {
			t.Fatalf("%d messages: compressed %v (%d bytes, plain %d), want %v", tc.n, got, len(zframes), len(frames), tc.compressed)
		}
	}
}
