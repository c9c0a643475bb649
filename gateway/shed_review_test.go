// Tests from an outside review of overload shedding's wide frames: each
// failed before the fix it names, except TestShedReviewJoinWideShedRoom,
// which held.

package gateway

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// TestShedReviewCoverSurvivesNarrowing: a room at 300 msg/s shed to the
// floor and calm for ~5 s (budget grown 5 → 566, still below twice the
// rate) gets a burst whose plain tail is left out entirely, then goes
// quiet. Its rate falls, the next grow ends the budget, the next step
// narrows the room (5 s since the last pressure) — before shedCoverWait
// has passed since the tail was left out. After that the room is not
// shedding, offers nothing, and shedStep no longer visits it: the tail is
// never covered (until the room's next message, if any).
func TestShedReviewCoverSurvivesNarrowing(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 1 })
	c, _ := joinRoom(t, gw, "hot")
	s := gw.s
	r := s.rooms.get("hot")
	base := time.Now()
	// History on a fake clock, as 50 ms shed steps would see it: wide,
	// then a cut to the floor (the gateway wrote ~4 msg/s per viewer),
	// then calm at 300 msg/s.
	r.mu.Lock()
	r.shed.rate = 300
	s.stepLocked(r, true, true, base.Add(-7*time.Second)) // wide
	r.mu.Unlock()
	r.written.Add(5)
	now := base.Add(-5900 * time.Millisecond)
	r.mu.Lock()
	r.shed.seen = 330
	s.stepLocked(r, true, true, now) // cut
	budget0 := r.shed.budget
	// The last grow ≥ 500 ms before the tail: the first quiet step grows.
	for now = now.Add(shedStep); now.Before(base.Add(-500 * time.Millisecond)); now = now.Add(shedStep) {
		r.shed.seen += 15
		s.stepLocked(r, false, false, now)
	}
	t.Logf("after calm: budget %.1f (cut to %.1f), rate %.1f, wide %v", r.shed.budget, budget0, r.shed.rate, r.shed.wide)
	if r.shed.budget == 0 || !r.shed.wide {
		r.mu.Unlock()
		t.Fatal("setup: want a wide room with a budget")
	}
	r.mu.Unlock()
	// The burst: protected messages spend the tokens, a plain tail is
	// left out entirely.
	pub := gw.bus.Publisher(bus.StreamDispatch)
	var paid []protocol.Message
	for seq := uint64(1); seq <= 230; seq++ {
		paid = append(paid, protocol.Message{Seq: seq, UID: "u", Name: "n", Text: "x", Kind: protocol.KindPaid})
	}
	var tail []protocol.Message
	for seq := uint64(231); seq <= 240; seq++ {
		tail = append(tail, protocol.Message{Seq: seq, UID: "u", Name: "n", Text: "x"})
	}
	if err := pub.Publish(context.Background(),
		bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", paid)},
		bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", tail)}); err != nil {
		t.Fatal(err)
	}
	waitLast(t, gw, "hot", 240)
	r.mu.Lock()
	cover, coverAt := r.shed.cover, r.shed.coverAt
	r.mu.Unlock()
	if cover == 0 {
		t.Fatal("setup: the tail was not left out")
	}
	// Quiet: shed steps every 50 ms from when the tail was left out, on
	// the same clock as coverAt, for a second.
	for now := coverAt.Add(shedStep); now.Before(coverAt.Add(time.Second)); now = now.Add(shedStep) {
		s.shedStep(now)
	}
	r.mu.Lock()
	t.Logf("after quiet: budget %.1f, wide %v, cover %d..%d", r.shed.budget, r.shed.wide, r.shed.cover, r.shed.coverTo)
	r.mu.Unlock()
	var covered uint64
	for covered < 240 {
		f, err := c.NextFrame(2 * time.Second)
		if err != nil {
			t.Fatalf("seqs %d..240 never covered (room quiet, frames narrowed): %v", covered+1, err)
		}
		if f.Op != protocol.OpBatch {
			continue
		}
		from, to := covers(f)
		if from > covered+1 {
			t.Fatalf("seqs %d..%d missing without a mark", covered+1, from-1)
		}
		covered = max(covered, to)
	}
}

// TestShedReviewJoinWideShedRoom: viewers that join and resume a room under
// overload handling (wide and thinned) while it streams get every seq once
// in order — shown, in their history, or covered by a mark — with no
// duplicate and no unmarked gap.
func TestShedReviewJoinWideShedRoom(t *testing.T) {
	for _, budget := range []float64{1e9, 400} {
		t.Run(fmt.Sprint("rate ", budget), func(t *testing.T) {
			gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 2 })
			joinRoom(t, gw, "hot")
			joinRoom(t, gw, "hot")
			forceShed(gw.s, "hot", budget)
			pub := gw.bus.Publisher(bus.StreamDispatch)
			const last = 1500
			done := make(chan struct{})
			go func() {
				defer close(done)
				for seq := uint64(1); seq <= last; seq += 5 {
					ms := mixed(seq, seq+4, "")
					for i := range ms {
						ms[i].Text = fmt.Sprint(ms[i].Seq)
					}
					_ = pub.Publish(context.Background(), bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", ms)})
					time.Sleep(3 * time.Millisecond)
					if seq%100 == 1 {
						gw.s.shedStep(time.Now())
					}
				}
			}()
			type joiner struct {
				c      *wstest.Conn
				resume uint64
			}
			var js []joiner
			r := gw.s.rooms.get("hot")
			for i := 0; i < 16; i++ {
				time.Sleep(40 * time.Millisecond)
				r.mu.Lock()
				at := r.last
				r.mu.Unlock()
				c := dialRaw(t, gw.addr)
				q := "/ws?room=hot"
				var resume uint64
				if i%2 == 1 && at > 30 {
					resume = at - 30
					q += fmt.Sprintf("&resume=%d", resume)
				}
				if st := c.Upgrade(q, ""); st != 101 {
					t.Fatal(st)
				}
				js = append(js, joiner{c, resume})
			}
			<-done
			waitLast(t, gw, "hot", last)
			gw.s.shedStep(time.Now().Add(time.Second)) // cover the tail
			for i, j := range js {
				if err := checkShedJoin(j.c, j.resume, last); err != nil {
					t.Fatalf("joiner %d (resume %d): %v", i, j.resume, err)
				}
			}
		})
	}
}

// checkShedJoin reads a joiner's joined, history and batches up to last:
// every seq once, in order, shown or covered by from/to.
func checkShedJoin(v *wstest.Conn, resume, last uint64) error {
	f, err := v.NextFrame(5 * time.Second)
	if err != nil || f.Op != protocol.OpJoined {
		return fmt.Errorf("first frame %q, %v; want joined", f.Op, err)
	}
	h, err := v.NextFrame(5 * time.Second)
	if err != nil || h.Op != protocol.OpHistory || !h.Complete {
		return fmt.Errorf("second frame %q complete=%v, %v", h.Op, h.Complete, err)
	}
	covered := resume
	if resume == 0 && len(h.Msgs) > 0 {
		covered = h.Msgs[0].Seq - 1
	}
	for _, m := range h.Msgs {
		if m.Seq != covered+1 {
			return fmt.Errorf("history: seq %d after %d", m.Seq, covered)
		}
		covered = m.Seq
	}
	if covered != f.Seq && !(resume > f.Seq) {
		return fmt.Errorf("history ends at %d, joined %d", covered, f.Seq)
	}
	for covered < last {
		b, err := v.NextFrame(5 * time.Second)
		if err != nil {
			return fmt.Errorf("covered up to %d of %d: %v", covered, last, err)
		}
		if b.Op != protocol.OpBatch {
			continue
		}
		from, to := covers(b)
		if from > covered+1 {
			return fmt.Errorf("seqs %d..%d missing without a mark", covered+1, from-1)
		}
		for _, m := range b.Msgs {
			if m.Seq <= covered {
				return fmt.Errorf("seq %d again (covered to %d)", m.Seq, covered)
			}
			if m.Text != fmt.Sprint(m.Seq) {
				return fmt.Errorf("seq %d text %q", m.Seq, m.Text)
			}
		}
		covered = max(covered, to)
	}
	return nil
}

// TestShedReviewNarrowAfterWideCalmOfFullDelivery: docs/protocol.md says frames
// "narrow again once the room has had full delivery and no pressure for
// shedWideCalm (5 s)", shed.go "after shedWideCalm more without pressure"
// once leaving out ends. A room at 300 msg/s cut to the floor regains full
// delivery 5.5 s after the cut; it must stay wide for shedWideCalm after
// that, not narrow on the next shed step.
func TestShedReviewNarrowAfterWideCalmOfFullDelivery(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 1 })
	joinRoom(t, gw, "hot")
	s := gw.s
	r := s.rooms.get("hot")
	r.mu.Lock()
	defer r.mu.Unlock()
	now := time.Unix(1_000_000, 0)
	r.shed.rate = 300
	s.stepLocked(r, true, true, now) // wide
	r.written.Add(3)                 // the gateway wrote ~3 msg/s per viewer
	now = now.Add(1100 * time.Millisecond)
	r.shed.seen = 330
	s.stepLocked(r, true, true, now) // cut
	if r.shed.budget != shedMin {
		t.Fatalf("setup: cut to %v, want the floor", r.shed.budget)
	}
	var fullAt time.Time
	for i := 0; i < 400; i++ {
		now = now.Add(shedStep)
		r.shed.seen += 15 // 300 msg/s
		s.stepLocked(r, false, false, now)
		if r.shed.budget == 0 && fullAt.IsZero() {
			fullAt = now
			t.Logf("full delivery %v after the cut", now.Sub(r.shed.cutAt))
		}
		if !r.shed.wide {
			if fullAt.IsZero() || now.Sub(fullAt) < shedWideCalm {
				t.Fatalf("narrowed %v after full delivery came back; want shedWideCalm %v", now.Sub(fullAt), shedWideCalm)
			}
			return
		}
	}
	t.Fatal("never narrowed")
}

// TestShedReviewNegativeShedFlushDelay: Config.ShedFlushDelay documents zero
// (250ms) and a cap, nothing for a negative value; like the other
// durations that have no meaning below zero, Validate should name it
// instead of running with wide frames silently reduced to the pass
// duration.
func TestShedReviewNegativeShedFlushDelay(t *testing.T) {
	cfg := Config{ShedFlushDelay: -time.Second}
	cfg.setDefaults()
	b := bus.NewMemory(bus.MemoryConfig{})
	defer b.Close()
	cfg.Bus, cfg.History, cfg.Signer = b, history.NewMemory(history.MemoryConfig{}), &auth.Signer{}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "ShedFlushDelay") {
		t.Fatalf("Validate with ShedFlushDelay -1s: %v (runs with ShedFlushDelay %v), want an error naming it", err, cfg.ShedFlushDelay)
	}
}

// TestShedReviewNoNarrowWhileLate: a wide room whose loop stays late past
// ShedDelay on every batch, with frames under shedFrameBytes (the
// write-bound case the wide frames are for: 100 msg/s at 250ms is 25 a
// frame), is under pressure all along: its frames must not narrow back to
// one write per MaxFlushDelay (docs: "Frames narrow again once the room
// has had full delivery and no pressure for shedWideCalm").
func TestShedReviewNoNarrowWhileLate(t *testing.T) {
	s, r, l := lateHotRoom(t)
	now := time.Now()
	flips := 0
	wasWide := false
	for i := 0; i < 200; i++ { // 10 s of shed steps
		r.offered.Add(100)
		r.mu.Lock()
		r.shed.seen += 5 // 100 msg/s
		r.mu.Unlock()
		r.writeBytes.Store(3000)
		markLate(s, l, now)
		s.shedStep(now)
		if w := r.shedding.Load(); w != wasWide {
			if !w {
				flips++
				t.Logf("narrowed at step %d while its loop is %v late", i, 2*s.cfg.ShedDelay)
			}
			wasWide = w
		}
		now = now.Add(shedStep)
	}
	if flips > 0 {
		t.Fatalf("the room narrowed %d times in 10 s while its loop was late on every step", flips)
	}
}

// TestShedReviewWideSparesNeighboursBudget: while the process is over its
// OutboundBudget, a healthy reader loses a batch whenever one write to it
// would pass SoftOutbound/16 — meant for a loop that fell behind. A room
// beside a wide one on the same loop is not behind, but the wide wait
// makes its writes 250 ms worth of messages: its reader, in a room that is
// not under overload, must not lose batches because a neighbour is wide.
func TestShedReviewWideSparesNeighboursBudget(t *testing.T) {
	for _, wide := range []bool{false, true} {
		t.Run(fmt.Sprint("hot wide=", wide), func(t *testing.T) {
			gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 1 })
			joinRoom(t, gw, "hot")
			cold, _ := joinRoom(t, gw, "cold")
			s := gw.s
			if wide {
				r := s.rooms.get("hot")
				r.mu.Lock()
				s.stepLocked(r, true, true, time.Now())
				r.mu.Unlock()
			}
			// Backlogs elsewhere in the process hold it over the budget.
			s.outbound.Add(s.cfg.OutboundBudget + 1)
			defer s.outbound.Add(-(s.cfg.OutboundBudget + 1))
			pub := gw.bus.Publisher(bus.StreamDispatch)
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { // the hot room: a short batch every 5 ms
				defer close(done)
				for seq := uint64(1); ctx.Err() == nil; seq++ {
					_ = pub.Publish(ctx, bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", mixed(seq, seq, "x"))})
					time.Sleep(5 * time.Millisecond)
				}
			}()
			defer func() { cancel(); <-done }()
			// The cold room: 2 messages of 700 bytes every 10 ms (140
			// KB/s), read at once.
			text := strings.Repeat("y", 700)
			var seq uint64
			for start := time.Now(); time.Since(start) < time.Second; {
				seq += 2
				ms := []protocol.Message{{Seq: seq - 1, UID: "u", Name: "n", Text: text}, {Seq: seq, UID: "u", Name: "n", Text: text}}
				if err := pub.Publish(context.Background(), bus.Record{Key: "cold", Value: protocol.EncodeBatch("cold", ms)}); err != nil {
					t.Fatal(err)
				}
				time.Sleep(10 * time.Millisecond)
			}
			var prev uint64
			for prev < seq {
				f, err := cold.NextFrame(2 * time.Second)
				if err != nil {
					t.Fatalf("cold reader got up to %d of %d (%v batches dropped): %v", prev, seq, counterValue(s.m.dropped), err)
				}
				if f.Op != protocol.OpBatch {
					continue
				}
				for _, m := range f.Msgs {
					if m.Seq != prev+1 {
						t.Fatalf("cold reader: seq %d after %d (%v batches dropped): a room not under overload lost batches", m.Seq, prev, counterValue(s.m.dropped))
					}
					prev = m.Seq
				}
			}
		})
	}
}

// TestShedReviewCompactWriteBytes (outside review): a room whose only
// viewer chose danmaku.v1.compact gets compact frames; the size the
// shedding judges is theirs, not the plain frame's.
func TestShedReviewCompactWriteBytes(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 1 })
	c := dialRaw(t, gw.addr)
	if st := c.Upgrade("/ws?room=hot", "Sec-WebSocket-Protocol: danmaku.v1.compact\r\n"); st != 101 {
		t.Fatal(st)
	}
	c.NextOp(protocol.OpHistory, 2*time.Second)
	ms := mixed(1, 200, "哈哈哈哈哈哈 233333 233333 233333")
	batch := protocol.EncodeBatch("hot", ms)
	if err := gw.bus.Publisher(bus.StreamDispatch).Publish(context.Background(), bus.Record{Key: "hot", Value: batch}); err != nil {
		t.Fatal(err)
	}
	if shown, _, _ := compactView(t, c, 200); len(shown) != 200 {
		t.Fatalf("%d messages", len(shown))
	}
	r := gw.s.rooms.get("hot")
	var got int64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && got == 0; time.Sleep(time.Millisecond) {
		got = r.writeBytes.Load()
	}
	cf := int64(len(ws.AppendFrame(nil, ws.OpText, compactPayload("hot", 1, 200, ms))))
	pf := int64(len(ws.AppendFrame(nil, ws.OpText, batch)))
	t.Logf("writeBytes=%d compact frame on the wire=%d plain frame=%d", got, cf, pf)
	if got > cf+16 {
		t.Fatalf("writeBytes %d for a viewer that got a %d-byte compact frame (plain would be %d)", got, cf, pf)
	}
}

// TestShedReviewWriteBytesOverLoops (outside review): with a room's
// viewers on two loops, a loop with small writes (deflate viewers) must
// not hide another with big ones (a plain viewer): the size the shedding
// judges is the largest loop's, never below the room-wide mean.
func TestShedReviewWriteBytesOverLoops(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 2 })
	const deflate = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
	r := func() *room { return gw.s.rooms.get("hot") }
	counts := func() []int32 {
		rr := r()
		if rr == nil {
			return nil
		}
		rr.mu.Lock()
		defer rr.mu.Unlock()
		return append([]int32(nil), rr.viewers...)
	}
	join := func(extra string) int { // returns the loop it landed on
		before := counts()
		c := dialRaw(t, gw.addr)
		c.AcceptCompressed()
		if st := c.Upgrade("/ws?room=hot", extra); st != 101 {
			t.Fatal(st)
		}
		c.NextOp(protocol.OpHistory, 2*time.Second)
		go func() { // drain
			for {
				if _, err := c.Next(5 * time.Second); err != nil {
					return
				}
			}
		}()
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			after := counts()
			for i := range after {
				var b int32
				if i < len(before) {
					b = before[i]
				}
				if after[i] > b {
					return i
				}
			}
		}
		t.Fatal("viewer not counted")
		return -1
	}
	plainLoop := join("")
	perLoop := map[int][2]int{plainLoop: {1, 0}} // loop -> {plain, deflate}
	for i := 0; i < 20; i++ {
		li := join(deflate)
		v := perLoop[li]
		v[1]++
		perLoop[li] = v
		if li != plainLoop {
			break
		}
	}
	if len(perLoop) < 2 {
		t.Fatal("21 viewers all on one of two loops")
	}
	ms := mixed(1, 200, "哈哈哈哈哈哈 233333 233333 233333")
	batch := protocol.EncodeBatch("hot", ms)
	if err := gw.bus.Publisher(bus.StreamDispatch).Publish(context.Background(), bus.Record{Key: "hot", Value: batch}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	got := r().writeBytes.Load()
	plen := len(ws.AppendFrame(nil, ws.OpText, batch))
	// zlen as the room's own delivery compressed it: recover from the
	// deflate-only loop's average if that loop wrote last, else from loop
	// a's. Report both candidate averages.
	t.Logf("viewers per loop {plain, deflate}: %v; writeBytes=%d; plain frame=%d", perLoop, got, plen)
	var tp, tz int
	for _, v := range perLoop {
		tp += v[0]
		tz += v[1]
	}
	// Solve for zlen under each hypothesis and check consistency with a
	// room-wide average: room avg = (tp*plen + tz*zlen)/(tp+tz).
	for li, v := range perLoop {
		n := v[0] + v[1]
		// if loop li wrote last: got = (v0*plen + v1*zlen)/n
		if v[1] > 0 {
			zlen := (int(got)*n - v[0]*plen) / v[1]
			room := (tp*plen + tz*zlen) / (tp + tz)
			t.Logf("if loop %d wrote last: zlen=%d, room-wide average would be %d", li, zlen, room)
		}
	}
	// Room-wide average: for every zlen in (0, plen), (tp*plen+tz*zlen)/(tp+tz) > plen*tp/(tp+tz).
	// The deflate-only loop's average is zlen < that bound when zlen is small.
	roomMin := int64(tp * plen / (tp + tz))
	if got < roomMin {
		t.Fatalf("writeBytes %d is below any room-wide average (>= %d with %d plain of %d viewers): it is one loop's average", got, roomMin, tp, tp+tz)
	}
}

// TestShedReviewThinnedWritesHoldBudget (outside review): a wide room at
// 1000 msg/s whose loop is late on every step, with 40 KB writes at full
// delivery and smaller ones as the budget thins them. The size judged is
// that of full delivery, so the budget never grows back while the loop is
// late (it did: a sawtooth of cuts and returns to full delivery).
func TestShedReviewThinnedWritesHoldBudget(t *testing.T) {
	s, r, l := lateHotRoom(t)
	now := time.Now()
	const rate, full = 1000.0, 40000
	fulls, cuts, grows := 0, 0, 0
	prev := -1.0
	for i := 0; i < 400; i++ { // 20 s
		r.offered.Add(1000)
		r.mu.Lock()
		r.shed.seen += int64(rate * shedStep.Seconds())
		b := r.shed.budget
		r.mu.Unlock()
		fb := int64(full)
		if b != 0 {
			fb = int64(full * min(b/rate, 1))
		}
		r.writeBytes.Store(fb)
		markLate(s, l, now)
		s.shedStep(now)
		r.mu.Lock()
		nb := r.shed.budget
		r.mu.Unlock()
		if prev > 0 && nb == 0 {
			fulls++
			t.Logf("step %d: back to full delivery while the loop is %v late", i, 2*s.cfg.ShedDelay)
		}
		if nb != 0 && (prev <= 0 || nb < prev) {
			cuts++
		}
		if prev > 0 && nb > prev {
			grows++
		}
		if nb != prev {
			t.Logf("step %d: budget %.0f (frame %d B)", i, nb, fb)
		}
		prev = nb
		now = now.Add(shedStep)
	}
	t.Logf("cuts %d, returns to full delivery %d in 20 s", cuts, fulls)
	if grows > 0 {
		t.Fatalf("budget grew %d times (cut %d times) while the loop was late on every step", grows, cuts)
	}
	if fulls > 0 {
		t.Fatalf("budget returned to full delivery %d times while the loop was late on every step", fulls)
	}
}

// lateHotRoom starts a gateway with one event loop and shed steps run by
// the test, with a viewer in room "hot": its server, the room and the loop.
func lateHotRoom(t *testing.T) (*Server, *room, *loop) {
	t.Helper()
	gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 1 })
	joinRoom(t, gw, "hot")
	return gw.s, gw.s.rooms.get("hot"), gw.s.loopList()[0]
}

// markLate records on l a write pass ending at now whose batches, queued
// just now, are late by twice ShedDelay beyond the loop's wide wait.
func markLate(s *Server, l *loop, now time.Time) {
	l.notePass(int64(2*s.cfg.ShedDelay)+l.wideWait.Load(), now.UnixNano(), now.UnixNano())
}
