package gateway

import (
	"context"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// nextOpZ is NextOp for a connection that may receive compressed messages.
func nextOpZ(t *testing.T, r *wstest.Conn, f *ws.Inflater, op string, timeout time.Duration) (protocol.ServerFrame, bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		m, err := r.Next(time.Until(deadline))
		if err != nil {
			t.Fatalf("waiting for %s: %v", op, err)
		}
		if m.Op != ws.OpText {
			continue
		}
		p := m.Payload
		if m.Compressed {
			if p, err = f.Inflate(p, 1<<20, true); err != nil {
				t.Fatalf("inflate: %v", err)
			}
		}
		sf, err := protocol.DecodeServer(p)
		if err != nil {
			t.Fatalf("bad frame %q: %v", p, err)
		}
		if sf.Op == op {
			return sf, m.Compressed
		}
	}
	t.Fatalf("no %s frame within %v", op, timeout)
	return protocol.ServerFrame{}, false
}

// sendZ sends a compressed, masked text message.
func sendZ(t *testing.T, r *wstest.Conn, payload []byte) {
	t.Helper()
	var d ws.Deflater
	frame := d.AppendFrame(nil, ws.OpText, payload)
	// Re-frame the compressed payload as a masked client frame with RSV1.
	var rd ws.Reader
	rd.Client, rd.AllowRSV1 = true, true
	msg, _, _, err := rd.Next(frame)
	if err != nil {
		t.Fatal(err)
	}
	out := ws.AppendClientFrame(nil, ws.OpText, msg.Payload, ws.NewMask())
	out[0] |= 0x40
	if _, err := r.NetConn().Write(out); err != nil {
		t.Fatal(err)
	}
}

func publishSeqs(t *testing.T, gw *testGW, room string, from, to uint64, perBatch int) {
	t.Helper()
	var recs []bus.Record
	for seq := from; seq <= to; {
		var msgs []protocol.Message
		for i := 0; i < perBatch && seq <= to; i++ {
			msgs = append(msgs, protocol.Message{Seq: seq, UID: "u", Name: "n", Text: strings.Repeat("弾幕 ", 10)})
			seq++
		}
		recs = append(recs, bus.Record{Key: room, Value: protocol.EncodeBatch(room, msgs)})
	}
	if err := gw.bus.Publisher(bus.StreamDispatch).Publish(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
}

// collect reads batches until seq last and checks that seqs arrive once,
// in order, from first on.
func collect(t *testing.T, r *wstest.Conn, f *ws.Inflater, first, last uint64, wantCompressed bool) {
	t.Helper()
	next := first
	for next <= last {
		b, compressed := nextOpZ(t, r, f, protocol.OpBatch, 5*time.Second)
		if compressed != wantCompressed {
			t.Fatalf("batch compressed=%v, want %v", compressed, wantCompressed)
		}
		for _, m := range b.Msgs {
			if m.Seq != next {
				t.Fatalf("seq %d, want %d", m.Seq, next)
			}
			next++
		}
	}
}

func TestDeflateAndCoalescing(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.Loops = 1 })
	const offer = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
	plain := dialRaw(t, gw.addr)
	if st := plain.Upgrade("/ws?room=z", ""); st != 101 {
		t.Fatal(st)
	}
	if strings.Contains(plain.Response(), "permessage-deflate") {
		t.Fatalf("deflate answered without an offer:\n%s", plain.Response())
	}
	z := dialRaw(t, gw.addr)
	z.AcceptCompressed()
	if st := z.Upgrade("/ws?room=z", offer); st != 101 {
		t.Fatal(st)
	}
	if !strings.Contains(z.Response(), "Sec-WebSocket-Extensions: "+ws.DeflateResponse+"\r\n") {
		t.Fatalf("deflate not negotiated:\n%s", z.Response())
	}
	var pf, zf ws.Inflater
	nextOpZ(t, plain, &pf, protocol.OpHistory, 2*time.Second)
	nextOpZ(t, z, &zf, protocol.OpHistory, 2*time.Second)

	// Many batches at once: each viewer gets every seq once, in order;
	// the deflate viewer gets them compressed.
	publishSeqs(t, gw, "z", 1, 500, 5)
	collect(t, plain, &pf, 1, 500, false)
	collect(t, z, &zf, 1, 500, true)

	// A viewer joining mid-stream gets the rest after its history.
	late := dialRaw(t, gw.addr)
	if st := late.Upgrade("/ws?room=z", ""); st != 101 {
		t.Fatal(st)
	}
	h := late.NextOp(protocol.OpHistory, 2*time.Second)
	if n := len(h.Msgs); n == 0 || h.Msgs[n-1].Seq != 500 {
		t.Fatalf("late history ends at %+v", h.Msgs[n-1])
	}
	publishSeqs(t, gw, "z", 501, 700, 3)
	var lf ws.Inflater
	collect(t, late, &lf, 501, 700, false)
	collect(t, z, &zf, 501, 700, true)

	// Compressed client messages are inflated.
	sendZ(t, z, []byte(`{"op":"ping"}`))
	nextOpZ(t, z, &zf, protocol.OpPong, 2*time.Second)
	if n := counterValue(gw.s.m.deliveries); n < 700*2+200 {
		t.Fatalf("deliveries metric %v, want at least %d", n, 700*2+200)
	}
}

func TestDeflateBadClientMessages(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.MaxMessage = 1024 })
	const offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
	tests := []struct {
		name    string
		payload []byte
		code    uint16
	}{
		{"bad utf8 after inflating", []byte{'{', 0xff, '}'}, ws.CloseInvalidPayload},
		{"too big after inflating", []byte(`{"op":"ping","x":"` + strings.Repeat("a", 5000) + `"}`), ws.CloseMessageTooBig},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := dialRaw(t, gw.addr)
			r.AcceptCompressed()
			if st := r.Upgrade("/ws", offer); st != 101 {
				t.Fatal(st)
			}
			sendZ(t, r, tt.payload)
			if code := r.CloseCode(3 * time.Second); code != tt.code {
				t.Fatalf("close %d, want %d", code, tt.code)
			}
		})
	}
	t.Run("deflate off", func(t *testing.T) {
		gw := startGW(t, func(c *Config) { c.NoDeflate = true })
		r := dialRaw(t, gw.addr)
		if st := r.Upgrade("/ws", offer); st != 101 {
			t.Fatal(st)
		}
		if strings.Contains(r.Response(), "permessage-deflate") {
			t.Fatalf("deflate negotiated with NoDeflate:\n%s", r.Response())
		}
		sendZ(t, r, []byte(`{"op":"ping"}`))
		if code := r.CloseCode(3 * time.Second); code != ws.CloseProtocolError {
			t.Fatalf("close %d, want 1002 for RSV1 without the extension", code)
		}
	})
}

func TestThinnedBatches(t *testing.T) {
	gw := startGW(t, nil)
	r := dialRaw(t, gw.addr)
	if st := r.Upgrade("/ws?room=t", ""); st != 101 {
		t.Fatal(st)
	}
	r.NextOp(protocol.OpHistory, 2*time.Second)
	pub := gw.bus.Publisher(bus.StreamDispatch)
	recs := []bus.Record{
		{Key: "t", Value: protocol.EncodeBatch("t", []protocol.Message{{Seq: 1, Text: "a"}, {Seq: 2, Text: "b"}})},
		{Key: "t", Value: protocol.EncodeThinned("t", 3, 10, []protocol.Message{{Seq: 4, Text: "c"}, {Seq: 9, Text: "d"}})},
		{Key: "t", Value: protocol.EncodeThinned("t", 11, 12, nil)},
		{Key: "t", Value: protocol.EncodeThinned("t", 13, 15, []protocol.Message{{Seq: 15, Text: "e"}})},
		// A redelivery of part of the range is dropped.
		{Key: "t", Value: protocol.EncodeThinned("t", 13, 15, []protocol.Message{{Seq: 15, Text: "e"}})},
	}
	if err := pub.Publish(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	// The viewer sees every range covered once, in order.
	var covered uint64
	var shown []uint64
	for covered < 15 {
		f := r.NextOp(protocol.OpBatch, 2*time.Second)
		from, to := covers(f)
		if from != covered+1 {
			t.Fatalf("batch covers %d..%d after %d", from, to, covered)
		}
		covered = to
		for _, m := range f.Msgs {
			shown = append(shown, m.Seq)
		}
	}
	if got := fmtSeqs(shown); got != "1 2 4 9 15" {
		t.Fatalf("shown %s, want 1 2 4 9 15", got)
	}
	// A resume inside the thinned range is served from memory, complete.
	r2 := dialRaw(t, gw.addr)
	if st := r2.Upgrade("/ws?room=t&resume=5", ""); st != 101 {
		t.Fatal(st)
	}
	j := r2.NextOp(protocol.OpJoined, 2*time.Second)
	h := r2.NextOp(protocol.OpHistory, 2*time.Second)
	if j.Seq != 15 || !h.Complete || len(h.Msgs) != 2 || h.Msgs[0].Seq != 9 || h.Msgs[1].Seq != 15 {
		t.Fatalf("joined seq %d, history %+v", j.Seq, h)
	}
}

func fmtSeqs(s []uint64) string {
	var b strings.Builder
	for i, v := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(strconv.FormatUint(v, 10))
	}
	return b.String()
}

// TestMemoryPerIdleViewer measures the gateway's live heap per idle viewer
// joined to one room (after a forced GC; the clients are raw sockets that
// use no Go heap). It is a measurement, not a check of a timing: run it
// with DANMAKU_MEMTEST=N (viewers, e.g. 5000).
func TestMemoryPerIdleViewer(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("DANMAKU_MEMTEST"))
	if n <= 0 {
		t.Skip("set DANMAKU_MEMTEST=N to measure the heap of N idle viewers")
	}
	gw := startGW(t, func(c *Config) { c.MaxConnsPerIP = -1 })
	ap, err := netip.ParseAddrPort(gw.addr)
	if err != nil {
		t.Fatal(err)
	}
	sa := &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	req := ws.AppendClientHandshake(nil, "x", "/ws?room=mem", ws.NewKey(), "")
	var ms runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&ms)
	h0 := ms.HeapAlloc
	fds := make([]int, 0, n)
	defer func() {
		for _, fd := range fds {
			_ = syscall.Close(fd)
		}
	}()
	for range n {
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
		if err := syscall.Connect(fd, sa); err != nil {
			t.Fatal(err)
		}
		if _, err := syscall.Write(fd, req); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	joined := func() int64 {
		if r := gw.s.rooms.get("mem"); r != nil {
			return r.online.Load()
		}
		return 0
	}
	for joined() < int64(n) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if j := joined(); j < int64(n) {
		t.Fatalf("%d of %d viewers joined", j, n)
	}
	time.Sleep(200 * time.Millisecond)
	runtime.GC()
	runtime.ReadMemStats(&ms)
	per := float64(ms.HeapAlloc-h0) / float64(n)
	t.Logf("%d idle viewers joined: live heap %.0f B per viewer (%d → %d B), %d goroutines",
		n, per, h0, ms.HeapAlloc, runtime.NumGoroutine())
}
