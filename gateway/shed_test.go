package gateway

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// kindOf gives message seq a kind: every 7th paid, every 11th a mod's,
// every 13th a system message, every 17th highlighted; the rest plain.
func kindOf(seq uint64) (kind, role string) {
	switch {
	case seq%7 == 0:
		return protocol.KindPaid, ""
	case seq%11 == 0:
		return "", "mod"
	case seq%13 == 0:
		return protocol.KindSystem, "service"
	case seq%17 == 0:
		return protocol.KindHighlight, ""
	}
	return "", ""
}

func mixed(from, to uint64, text string) []protocol.Message {
	var ms []protocol.Message
	for seq := from; seq <= to; seq++ {
		k, r := kindOf(seq)
		ms = append(ms, protocol.Message{Seq: seq, UID: "u", Name: "n", Text: text, Kind: k, Role: r})
	}
	return ms
}

func TestShedApply(t *testing.T) {
	t0 := time.Unix(1000, 0)
	t.Run("full delivery without a budget", func(t *testing.T) {
		var sh shed
		ms := mixed(1, 10, "x")
		shown, from, post, left := sh.apply(ms, 1, 10, t0)
		if !post || from != 1 || left != 0 || len(shown) != 10 {
			t.Fatalf("shown %d from %d post %v left %d", len(shown), from, post, left)
		}
	})
	t.Run("protected kinds kept, the rest spread, marks cover", func(t *testing.T) {
		sh := shed{budget: 20, tokens: 20, at: t0}
		ms := mixed(1, 100, "x")
		shown, from, post, left := sh.apply(ms, 1, 100, t0)
		if !post || from != 1 {
			t.Fatalf("post %v from %d", post, from)
		}
		prot := 0
		for i := range ms {
			if protected(&ms[i]) {
				prot++
				if !slices.ContainsFunc(shown, func(m protocol.Message) bool { return m.Seq == ms[i].Seq }) {
					t.Errorf("protected seq %d left out", ms[i].Seq)
				}
			}
		}
		if len(shown) != max(20, prot) || left != 100-len(shown) {
			t.Fatalf("%d shown (%d protected), left %d; want %d", len(shown), prot, left, max(20, prot))
		}
	})
	t.Run("a batch left out entirely is covered by the next", func(t *testing.T) {
		sh := shed{budget: 10, tokens: 0, at: t0}
		plain := func(from, to uint64) []protocol.Message {
			var ms []protocol.Message
			for s := from; s <= to; s++ {
				ms = append(ms, protocol.Message{Seq: s})
			}
			return ms
		}
		if _, _, post, left := sh.apply(plain(1, 5), 1, 5, t0); post || left != 5 {
			t.Fatalf("posted a batch of nothing (post %v, left %d)", post, left)
		}
		if sh.cover != 1 || sh.coverTo != 5 {
			t.Fatalf("cover %d..%d, want 1..5", sh.cover, sh.coverTo)
		}
		shown, from, post, _ := sh.apply(plain(6, 8), 6, 8, t0.Add(time.Second))
		if !post || from != 1 || len(shown) == 0 || sh.cover != 0 {
			t.Fatalf("next batch: post %v from %d shown %d cover %d; want from 1", post, from, len(shown), sh.cover)
		}
	})
}

// streamView reads room batches from c until every seq up to last is
// covered, failing on a seq gap that no from/to mark covers; it returns
// the seqs shown, and the batches that carried marks.
func streamView(t *testing.T, c *wstest.Conn, last uint64) (shown []uint64, marked int) {
	t.Helper()
	var covered uint64
	for covered < last {
		f, err := c.NextFrame(5 * time.Second)
		if err != nil {
			t.Fatalf("covered up to %d of %d: %v", covered, last, err)
		}
		if f.Op != protocol.OpBatch {
			continue
		}
		from, to := covers(f)
		if f.To != 0 {
			marked++
		}
		if from > covered+1 {
			t.Fatalf("seqs %d..%d missing without a mark", covered+1, from-1)
		}
		for _, m := range f.Msgs {
			if m.Seq > covered {
				shown = append(shown, m.Seq)
			}
		}
		covered = max(covered, to)
	}
	return shown, marked
}

// forceShed puts room under shedding at a budget of half rate: the first
// pressure makes it wide, the second (a cut interval later) cuts.
func forceShed(s *Server, name string, rate float64) {
	r := s.rooms.get(name)
	r.mu.Lock()
	r.shed.rate = rate
	now := time.Now().Add(-s.shedCutEvery())
	s.stepLocked(r, true, true, now)
	s.stepLocked(r, true, true, now.Add(s.shedCutEvery()))
	r.mu.Unlock()
}

// TestShedSameForEveryViewer: a room the gateway sheds shows every viewer
// of it on the gateway (over both loops) the same messages, never leaves a
// protected one out, covers what it left out with marks (also the tail of
// a burst when the room goes quiet), and returns to full delivery by
// itself once the pressure is gone.
func TestShedSameForEveryViewer(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.manualShed = true })
	const viewers = 6
	var cs []*wstest.Conn
	for range viewers {
		c := dialRaw(t, gw.addr)
		if st := c.Upgrade("/ws?room=hot", ""); st != 101 {
			t.Fatal(st)
		}
		c.NextOp(protocol.OpHistory, 2*time.Second)
		cs = append(cs, c)
	}
	// The loops with viewers of the room (read under room.mu: a loop's
	// own maps are the loop's).
	loops := map[int]bool{}
	hr := gw.s.rooms.get("hot")
	hr.mu.Lock()
	for i, n := range hr.viewers {
		if n > 0 {
			loops[i] = true
		}
	}
	hr.mu.Unlock()
	forceShed(gw.s, "hot", 400) // budget 200/s
	pub := gw.bus.Publisher(bus.StreamDispatch)
	ctx := context.Background()
	var seq uint64
	for range 30 {
		if err := pub.Publish(ctx, bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", mixed(seq+1, seq+20, "x"))}); err != nil {
			t.Fatal(err)
		}
		seq += 20
		time.Sleep(5 * time.Millisecond)
	}
	// A burst of plain messages: the budget is spent, they are left out
	// entirely, and the room then goes quiet.
	var burst []bus.Record
	for range 5 {
		var ms []protocol.Message
		for range 4 {
			seq++
			ms = append(ms, protocol.Message{Seq: seq, UID: "u", Name: "n", Text: "x"})
		}
		burst = append(burst, bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", ms)})
	}
	if err := pub.Publish(ctx, burst...); err != nil {
		t.Fatal(err)
	}
	// Once the gateway has the burst, a shed step covers what no batch
	// followed.
	waitLast(t, gw, "hot", seq)
	gw.s.shedStep(time.Now().Add(shedCoverWait)) // covers what no batch followed
	var first []uint64
	for i, c := range cs {
		shown, marked := streamView(t, c, seq)
		if i == 0 {
			first = shown
			if marked == 0 || len(shown) >= int(seq) {
				t.Fatalf("nothing shed: %d of %d shown, %d marked batches", len(shown), seq, marked)
			}
			for s := uint64(1); s <= 600; s++ { // the burst after 600 is plain
				if k, r := kindOf(s); (k != "" || r != "") && !slices.Contains(shown, s) {
					t.Fatalf("protected seq %d (%s%s) left out", s, k, r)
				}
			}
			continue
		}
		if !slices.Equal(shown, first) {
			t.Fatalf("viewer %d saw %d messages, viewer 0 %d: shedding differs between viewers", i, len(shown), len(first))
		}
	}
	if got := counterValue(gw.s.m.shed); got != float64(int(seq)-len(first)) {
		t.Errorf("shed metric %v, want %d", got, int(seq)-len(first))
	}
	if got := counterValue(gw.s.m.shedDeliveries); got != float64(viewers*(int(seq)-len(first))) {
		t.Errorf("shed deliveries metric %v, want %d", got, viewers*(int(seq)-len(first)))
	}
	t.Logf("%d of %d shown to each of %d viewers on %d loops", len(first), seq, viewers, len(loops))

	// No pressure: the room returns to full delivery by itself.
	r := gw.s.rooms.get("hot")
	now := time.Now()
	for i := 0; r.shedding.Load(); i++ {
		if i == 100 {
			t.Fatal("still shedding after 100 calm steps")
		}
		now = now.Add(gw.s.shedCutEvery())
		r.mu.Lock()
		gw.s.stepLocked(r, false, false, now)
		r.mu.Unlock()
	}
	start := seq + 1
	if err := pub.Publish(ctx, bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", mixed(start, start+49, "x"))}); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		f := c.NextOp(protocol.OpBatch, 2*time.Second)
		if f.To != 0 || len(f.Msgs) != 50 || f.Msgs[0].Seq != start {
			t.Fatalf("viewer %d after recovery: from/to %d/%d, %d messages from %d; want all 50 from %d", i, f.From, f.To, len(f.Msgs), f.Msgs[0].Seq, start)
		}
	}
}

// TestShedKeepsHealthyReader: over the outbound budget (a viewer that does
// not read holds it), a reader of the room that keeps up loses batches to
// the budget's per-viewer drops — unless the room is shed, which answers
// the budget the same for every viewer: the reader then sees every seq
// shown or marked, and is never closed.
func TestShedKeepsHealthyReader(t *testing.T) {
	for _, shedding := range []bool{true, false} {
		t.Run(fmt.Sprintf("shedding=%v", shedding), func(t *testing.T) {
			gw := startGW(t, func(c *Config) {
				c.manualShed = true
				c.SoftOutbound = 16 << 10
				c.HardOutbound = 4 << 20
				c.SlowTimeout = time.Minute
				c.OutboundBudget = 1
				// Wide frames are not what this test is about; at
				// 250ms a round, 300 rounds pass the idle timeout.
				c.ShedFlushDelay = 5 * time.Millisecond
			})
			_, fast := slowAndFast(t, gw)
			if shedding {
				forceShed(gw.s, "hot", 1e9) // shedding, with a budget that leaves nothing out
			}
			pub := gw.bus.Publisher(bus.StreamDispatch)
			text := strings.Repeat("x", 900)
			var seq uint64
			gaps := 0
			var covered uint64
			// Until 30 rounds after the budget first dropped a batch (the
			// slow viewer's backlog holds the budget by then).
			pressedAt := -1
			for round := 0; round < 300 && (pressedAt < 0 || round < pressedAt+30); round++ {
				if pressedAt < 0 && counterValue(gw.s.m.dropped) > 0 {
					pressedAt = round
				}
				var recs []bus.Record
				for range 20 {
					seq++
					recs = append(recs, bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", mixed(seq, seq, text))})
				}
				if err := pub.Publish(context.Background(), recs...); err != nil {
					t.Fatal(err)
				}
				for covered < seq && gaps == 0 {
					f, err := fast.NextFrame(2 * time.Second)
					if err != nil {
						break // dropped batches: the tail never comes
					}
					if f.Op != protocol.OpBatch {
						continue
					}
					from, to := covers(f)
					if from > covered+1 {
						gaps++
					}
					covered = max(covered, to)
				}
				if gaps > 0 || covered < seq {
					break
				}
			}
			t.Logf("covered %d of %d, %d gaps, %v batches dropped", covered, seq, gaps, counterValue(gw.s.m.dropped))
			if shedding && (gaps > 0 || covered < seq) {
				t.Fatalf("reader of a shed room lost batches: covered %d of %d, %d gaps", covered, seq, gaps)
			}
			if !shedding && gaps == 0 && covered == seq {
				t.Fatal("without shedding the reader lost nothing: the test does not press the budget")
			}
			if counterValue(gw.s.m.slowConsumers) > 0 && shedding {
				// Only the viewer that never reads may be closed.
				if _, err := fast.NextFrame(100 * time.Millisecond); err != nil && strings.Contains(err.Error(), strconv.Itoa(int(protocol.CloseSlowConsumer))) {
					t.Fatal("healthy reader closed as slow")
				}
			}
		})
	}
}

// TestShedStepPressure: a shed step cuts a room when a loop with its
// viewers lags past ShedDelay or when most of its viewers are backed up,
// not otherwise, and not a light room beside a heavy one.
func TestShedStepPressure(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 1 })
	for _, room := range []string{"heavy", "light"} {
		c := dialRaw(t, gw.addr)
		if st := c.Upgrade("/ws?room="+room, ""); st != 101 {
			t.Fatal(st)
		}
		c.NextOp(protocol.OpHistory, 2*time.Second)
	}
	s := gw.s
	heavy, light := s.rooms.get("heavy"), s.rooms.get("light")
	l := s.loopList()[0]
	now := time.Now()
	head := now // when the deliveries the lag is measured on were queued
	step := func(lag time.Duration) {
		heavy.offered.Add(1000)
		light.offered.Add(10)
		heavy.mu.Lock()
		heavy.shed.seen += 1000 // 2000 msg/s
		heavy.mu.Unlock()
		heavy.written.Add(100) // the gateway writes its one viewer 200 msg/s
		l.notePass(int64(lag), head.UnixNano(), now.UnixNano())
		s.shedStep(now)
		now = now.Add(s.shedCutEvery())
	}
	budget := func() float64 {
		heavy.mu.Lock()
		defer heavy.mu.Unlock()
		return heavy.shed.budget
	}
	for range 2 {
		step(s.cfg.ShedDelay / 2)
		if heavy.shedding.Load() || light.shedding.Load() {
			t.Fatal("shedding without pressure")
		}
	}
	step(2 * s.cfg.ShedDelay)
	if !heavy.shedding.Load() {
		t.Fatal("a lagging loop did not make its heavy room wide")
	}
	if b := budget(); b != 0 {
		t.Fatalf("the first pressure left messages out (budget %v): it must only widen the frames", b)
	}
	// Still late on batches queued before it went wide: no cut yet.
	step(2 * s.cfg.ShedDelay)
	if b := budget(); b != 0 {
		t.Fatalf("cut to %v on a lag measured before the room went wide", b)
	}
	head = now // late on batches queued since, but with small frames: the
	// writes' fixed cost, which leaving messages out does not lower
	heavy.writeBytes.Store(shedFrameBytes / 4)
	step(2 * s.cfg.ShedDelay)
	if b := budget(); b != 0 {
		t.Fatalf("cut to %v with writes of %d bytes", b, shedFrameBytes/4)
	}
	head = now // with big frames: cut
	heavy.writeBytes.Store(shedFrameBytes)
	step(2 * s.cfg.ShedDelay)
	if b := budget(); b == 0 || b > shedHeadroom*200+1 {
		t.Fatalf("first cut to %v msg/s; the gateway wrote 200 per viewer, want at most %v", b, shedHeadroom*200)
	}
	if light.shedding.Load() {
		t.Fatal("a light room was cut")
	}
	// Still late, but on batches queued before the cut: no second cut,
	// and no growth either, however long it lasts.
	b := budget()
	for range 5 {
		step(2 * s.cfg.ShedDelay)
		if budget() != b {
			t.Fatalf("budget %v → %v while late on batches queued before the cut", b, budget())
		}
	}
	head = now // late on batches queued after the cut: cut again
	step(2 * s.cfg.ShedDelay)
	if budget() >= b {
		t.Fatalf("budget %v after a lag measured past the cut, was %v", budget(), b)
	}
	light.backedAt.Store(now.UnixNano())
	step(0)
	if !light.shedding.Load() {
		t.Fatal("a room whose viewers are backed up was not cut")
	}
	if got := gaugeValue(s.m.shedRooms); got != 2 {
		t.Fatalf("shedding_rooms %v, want 2", got)
	}
	// Calm: full delivery comes back first, then the frames narrow.
	full := false
	for i := 0; heavy.shedding.Load(); i++ {
		if i == 100 {
			t.Fatal("the heavy room is still under overload handling after 100 calm steps")
		}
		step(0)
		if b := budget(); b == 0 {
			full = true
		} else if full {
			t.Fatalf("budget cut to %v while calm", b)
		}
	}
	if !full {
		t.Fatal("frames narrowed while messages were still left out")
	}
	want := 0.0
	if light.shedding.Load() {
		want = 1
	}
	if got := gaugeValue(s.m.shedRooms); got != want {
		t.Fatalf("shedding_rooms %v after the heavy room recovered, want %v", got, want)
	}
}

// TestShedFramesFollowTheBudget: a room shed to a few messages a second
// costs its viewers few frames however many batches it gets, and they
// still see every seq shown or marked. Covering left-out batches on every
// shed step used to send a frame per viewer per step (an empty batch), so
// an overloaded gateway stayed overloaded at any budget: 19,000 viewers
// at 100 msg/s, cut to the 5 msg/s floor, still cost 380k writes a
// second.
func TestShedFramesFollowTheBudget(t *testing.T) {
	// Frames not merged by wide flushes (TestShedWideFlushesLess): each
	// batch posted is a frame here.
	gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 1; c.ShedFlushDelay = time.Microsecond })
	c, _ := joinRoom(t, gw, "hot")
	forceShed(gw.s, "hot", 10) // budget: the floor, 5 msg/s
	pub := gw.bus.Publisher(bus.StreamDispatch)
	var seq uint64
	start := time.Now()
	nextStep := start
	for time.Since(start) < time.Second {
		seq++
		m := protocol.Message{Seq: seq, UID: "u", Name: "n", Text: "x"}
		if err := pub.Publish(context.Background(), bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", []protocol.Message{m})}); err != nil {
			t.Fatal(err)
		}
		if now := time.Now(); !now.Before(nextStep) {
			gw.s.shedStep(now)
			nextStep = now.Add(shedStep)
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitLast(t, gw, "hot", seq)
	gw.s.shedStep(time.Now().Add(shedCoverWait)) // the tail: covered
	frames := 0
	var covered uint64
	var shown int
	for covered < seq {
		f, err := c.NextFrame(5 * time.Second)
		if err != nil {
			t.Fatalf("covered up to %d of %d: %v", covered, seq, err)
		}
		if f.Op != protocol.OpBatch {
			continue
		}
		frames++
		from, to := covers(f)
		if from > covered+1 {
			t.Fatalf("seqs %d..%d missing without a mark", covered+1, from-1)
		}
		shown += len(f.Msgs)
		covered = max(covered, to)
	}
	// About 5 shown in the second, each posting a frame, a cover when
	// nothing was posted for shedCoverWait (250ms: at most 4), the tail's
	// cover, and slack. A cover every shed step would be about 20.
	const limit = 5 + 1 + 4 + 1 + 2
	t.Logf("%d messages: %d shown in %d frames", seq, shown, frames)
	if frames > limit {
		t.Fatalf("%d frames for %d shown of %d messages at a 5 msg/s budget; want at most %d", frames, shown, seq, limit)
	}
	if shown == 0 || shown > 12 {
		t.Fatalf("%d of %d shown at a 5 msg/s budget", shown, seq)
	}
}

// TestShedWideFlushesLess: a loop that wrote a room under overload
// handling waits Config.ShedFlushDelay before its next flush, so each
// viewer gets fewer, bigger writes; a room without it waits no longer than
// its fan-out cost.
func TestShedWideFlushesLess(t *testing.T) {
	for _, wide := range []bool{false, true} {
		t.Run(fmt.Sprintf("wide=%v", wide), func(t *testing.T) {
			gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 1 })
			c, _ := joinRoom(t, gw, "hot")
			if wide {
				r := gw.s.rooms.get("hot")
				r.mu.Lock()
				gw.s.stepLocked(r, true, true, time.Now())
				r.mu.Unlock()
			}
			pub := gw.bus.Publisher(bus.StreamDispatch)
			before := time.Now()
			if err := pub.Publish(context.Background(), bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", mixed(1, 3, "x"))}); err != nil {
				t.Fatal(err)
			}
			if f := c.NextOp(protocol.OpBatch, 2*time.Second); len(f.Msgs) != 3 {
				t.Fatalf("%d messages, want all 3 (going wide leaves nothing out)", len(f.Msgs))
			}
			// The flush sets its successor's time after its writes: wait
			// for it.
			l := gw.s.loopList()[0]
			var wait time.Duration
			for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				l.out.mu.Lock()
				wait = time.Duration(l.out.notBefore - before.UnixNano())
				l.out.mu.Unlock()
				if wait > 0 {
					break
				}
			}
			if wide && wait < gw.s.cfg.ShedFlushDelay {
				t.Fatalf("next flush %v after the batch; want at least ShedFlushDelay %v", wait, gw.s.cfg.ShedFlushDelay)
			}
			if !wide && wait >= gw.s.cfg.ShedFlushDelay {
				t.Fatalf("next flush %v after the batch of a room not under overload", wait)
			}
		})
	}
}

// TestShedIgnoresMessageAge: a gateway that writes everything in time
// does not shed, however old its messages' accept timestamps look: batches
// that reach it late (a slow pipeline before it) or from a logic host whose
// clock is behind or ahead of its own. Its lateness is measured on its own
// clock, from a batch being queued on a loop to being written to every
// viewer there that lacked it.
func TestShedIgnoresMessageAge(t *testing.T) {
	// A ShedDelay far below the messages' apparent age and far above what
	// a loop writing to one viewer takes.
	gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 1; c.ShedDelay = 30 * time.Second })
	c := dialRaw(t, gw.addr)
	if st := c.Upgrade("/ws?room=hot", ""); st != 101 {
		t.Fatal(st)
	}
	c.NextOp(protocol.OpHistory, 2*time.Second)
	s := gw.s
	pub := gw.bus.Publisher(bus.StreamDispatch)
	hot := s.rooms.get("hot")
	l := s.loopList()[0]
	var seq, got uint64
	for _, skew := range []time.Duration{-time.Hour, time.Hour, -10 * time.Minute} {
		for range 5 {
			ms := mixed(seq+1, seq+20, "x")
			for i := range ms {
				ms[i].Kind, ms[i].Role = "", "" // all sheddable
				ms[i].TS = time.Now().Add(skew).UnixMilli()
			}
			if err := pub.Publish(context.Background(), bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", ms)}); err != nil {
				t.Fatal(err)
			}
			seq += 20
		}
		// Every message arrives, unthinned.
		for got < seq {
			f := c.NextOp(protocol.OpBatch, 2*time.Second)
			if f.To != 0 {
				t.Fatalf("a thinned batch %d..%d for accept times %v off", f.From, f.To, skew)
			}
			for _, m := range f.Msgs {
				if m.Seq != got+1 {
					t.Fatalf("seq %d after %d", m.Seq, got)
				}
				got = m.Seq
			}
		}
		hot.offered.Add(1 << 20) // the only room: heavy
		now := time.Now()
		if lag, _ := l.behind(now); lag >= time.Minute {
			t.Fatalf("loop lag %v for batches written at once whose accept times are %v off", lag, skew)
		}
		for range 3 {
			s.shedStep(now)
			now = now.Add(s.shedCutEvery())
		}
		if hot.shedding.Load() {
			t.Fatalf("shedding a room the gateway writes in time (accept times %v off)", skew)
		}
	}
	if got := counterValue(s.m.shed); got != 0 {
		t.Fatalf("shed metric %v", got)
	}
}

// TestLoopDelayMetric: a batch queued on a loop that is busy for 200 ms
// is written at the end of a pass that observes its wait in
// danmaku_gateway_loop_delay_seconds: the lateness ShedDelay bounds, for
// operators to see before anything is shed.
func TestLoopDelayMetric(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 1 })
	c, _ := joinRoom(t, gw, "hot")
	var before dto.Metric
	if err := gw.s.m.loopDelay.Write(&before); err != nil {
		t.Fatal(err)
	}
	l := gw.s.loopList()[0]
	held := make(chan struct{})
	l.execute(func() { close(held); time.Sleep(200 * time.Millisecond) })
	<-held
	pub := gw.bus.Publisher(bus.StreamDispatch)
	if err := pub.Publish(context.Background(), bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", mixed(1, 3, "x"))}); err != nil {
		t.Fatal(err)
	}
	if f := c.NextOp(protocol.OpBatch, 2*time.Second); len(f.Msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(f.Msgs))
	}
	var after dto.Metric
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if err := gw.s.m.loopDelay.Write(&after); err != nil {
			t.Fatal(err)
		}
		if after.GetHistogram().GetSampleCount() > before.GetHistogram().GetSampleCount() {
			break
		}
	}
	h, h0 := after.GetHistogram(), before.GetHistogram()
	if h.GetSampleCount() != h0.GetSampleCount()+1 {
		t.Fatalf("%d passes observed, want 1 more than %d", h.GetSampleCount(), h0.GetSampleCount())
	}
	// The dispatch goroutine queued the batch within the 200 ms hold.
	if d := h.GetSampleSum() - h0.GetSampleSum(); d < 0.1 || d > 2 {
		t.Errorf("observed wait %.3f s, want the loop's hold (~0.2 s)", d)
	}
}

// TestDispatchAgeMetric: a batch whose oldest message logic accepted 2 s
// ago is observed in danmaku_gateway_dispatch_age_seconds as ~2 s old
// when the gateway reads it; a room without viewers here is skipped
// unread and not observed.
func TestDispatchAgeMetric(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 1 })
	c, _ := joinRoom(t, gw, "aged")
	var before dto.Metric
	if err := gw.s.m.dispatchAge.Write(&before); err != nil {
		t.Fatal(err)
	}
	msgs := mixed(1, 3, "x")
	now := time.Now().UnixMilli()
	for i := range msgs {
		msgs[i].TS = now - 2000 + int64(i)*100
	}
	pub := gw.bus.Publisher(bus.StreamDispatch)
	if err := pub.Publish(context.Background(), bus.Record{Key: "nobody", Value: protocol.EncodeBatch("nobody", msgs)},
		bus.Record{Key: "aged", Value: protocol.EncodeBatch("aged", msgs)}); err != nil {
		t.Fatal(err)
	}
	if f := c.NextOp(protocol.OpBatch, 2*time.Second); len(f.Msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(f.Msgs))
	}
	var after dto.Metric
	if err := gw.s.m.dispatchAge.Write(&after); err != nil {
		t.Fatal(err)
	}
	h, h0 := after.GetHistogram(), before.GetHistogram()
	if h.GetSampleCount() != h0.GetSampleCount()+1 {
		t.Fatalf("%d batches observed, want 1 more than %d (the room without viewers is not read)", h.GetSampleCount(), h0.GetSampleCount())
	}
	if d := h.GetSampleSum() - h0.GetSampleSum(); d < 1.9 || d > 4 {
		t.Errorf("observed age %.3f s, want the oldest message's ~2 s", d)
	}
}

// TestShedFrameBytesOnTheWire: the frame size the shedding compares with
// shedFrameBytes is what the room's viewers get on the wire: a batch of
// repetitive chat written to a plain viewer and one with
// permessage-deflate counts as the mean of its plain and compressed
// sizes, well under the plain size alone.
func TestShedFrameBytesOnTheWire(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.manualShed = true; c.Loops = 1 })
	var cs []*wstest.Conn
	for _, extra := range []string{"", "Sec-WebSocket-Extensions: permessage-deflate\r\n"} {
		c := dialRaw(t, gw.addr)
		c.AcceptCompressed()
		if st := c.Upgrade("/ws?room=hot", extra); st != 101 {
			t.Fatal(st)
		}
		c.NextOp(protocol.OpHistory, 2*time.Second)
		cs = append(cs, c)
	}
	batch := protocol.EncodeBatch("hot", mixed(1, 200, "哈哈哈哈哈哈 233333 233333 233333"))
	if err := gw.bus.Publisher(bus.StreamDispatch).Publish(context.Background(), bus.Record{Key: "hot", Value: batch}); err != nil {
		t.Fatal(err)
	}
	for i, c := range cs {
		if shown, _, _ := compactView(t, c, 200); len(shown) != 200 {
			t.Fatalf("viewer %d: %d messages, want 200", i, len(shown))
		}
	}
	r := gw.s.rooms.get("hot")
	var got int64
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline) && got == 0; time.Sleep(time.Millisecond) {
		got = r.writeBytes.Load()
	}
	plain := int64(len(batch))
	if got <= plain/2 || got >= plain {
		t.Fatalf("frame bytes %d for a %d-byte batch to one plain and one deflate viewer: want the mean of plain and compressed, between %d and %d", got, plain, plain/2, plain)
	}
}

// covers is the seq range a batch frame covers: its from/to marks when
// it is thinned, else its first and last message.
func covers(f protocol.ServerFrame) (from, to uint64) {
	if f.To != 0 {
		return f.From, f.To
	}
	return f.Msgs[0].Seq, f.Msgs[len(f.Msgs)-1].Seq
}

// TestShedWideWaitFollowsWriteSize: after a pass over a wide room, a loop
// waits as long as the pass took only while the room's writes are below
// shedFrameBytes (a write's fixed cost is what the wait saves); with
// bigger writes it waits ShedFlushDelay alone, whatever the pass took, so
// a loop behind on a big stream does not idle.
func TestShedWideWaitFollowsWriteSize(t *testing.T) {
	const n = 600 // a pass of milliseconds: far past ShedFlushDelay
	gw, l, vs := wideBig(t, n)
	pub := gw.bus.Publisher(bus.StreamDispatch)
	seq := uint64(0)
	// pass publishes a batch of k messages, waits for every viewer to get
	// it and for the flush to set its wait, and returns that wait.
	pass := func(k int, text string) (extra time.Duration, bytes int) {
		t.Helper()
		l.wideWait.Store(-1)
		ms := mixed(seq+1, seq+uint64(k), text)
		seq += uint64(k)
		frame := protocol.EncodeBatch("big", ms)
		if err := pub.Publish(context.Background(), bus.Record{Key: "big", Value: frame}); err != nil {
			t.Fatal(err)
		}
		for _, v := range vs {
			if f := v.NextOp(protocol.OpBatch, 5*time.Second); len(f.Msgs) != k {
				t.Fatalf("%d messages, want %d", len(f.Msgs), k)
			}
		}
		for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			if w := l.wideWait.Load(); w >= 0 {
				return time.Duration(w), len(frame)
			}
		}
		t.Fatal("the flush set no wait")
		return 0, 0
	}
	passed := func() float64 { return counterValue(gw.s.m.passSeconds) }
	before := passed()
	small, sb := pass(3, "x")
	if sb >= shedFrameBytes || small < 100*time.Microsecond {
		t.Fatalf("writes of %d B: waited %v after a pass over %d viewers; want as long as the pass (ms)", sb, small, n)
	}
	// The wait was the pass's length: what write_pass_seconds_total added.
	if d := passed() - before; math.Abs(d-small.Seconds()) > 1e-6 {
		t.Fatalf("write_pass_seconds_total grew %.6f s over a pass that took %v", d, small)
	}
	big, bb := pass(400, strings.Repeat("弹", 40))
	if bb < shedFrameBytes || big > gw.s.cfg.ShedFlushDelay {
		t.Fatalf("writes of %d B: waited %v; want ShedFlushDelay %v alone (the pass took %v's order)", bb, big, gw.s.cfg.ShedFlushDelay, small)
	}
}
