package gateway

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// wideBig starts a gateway with one loop, shed steps run by the test, a
// ShedFlushDelay of 1 µs and a ShedDelay far above any pass, with n
// viewers of room "big", made wide.
func wideBig(t *testing.T, n int) (*testGW, *loop, []*wstest.Conn) {
	t.Helper()
	gw := startGW(t, func(c *Config) {
		c.manualShed, c.Loops, c.FlushRate, c.OnlineRate, c.MaxConnsPerIP = true, 1, -1, -1, -1
		c.ShedFlushDelay, c.ShedDelay = time.Microsecond, 10*time.Second
	})
	vs := joinBig(t, gw, n)
	makeWide(gw, "big")
	return gw, gw.s.loopList()[0], vs
}

// makeWide puts room name under overload handling (wide, full delivery).
func makeWide(gw *testGW, name string) {
	r := gw.s.rooms.get(name)
	r.mu.Lock()
	gw.s.stepLocked(r, true, true, time.Now())
	r.mu.Unlock()
}

// waitAfter returns, once l's flush is done, the wait it set for wide
// rooms and how long its pass took (write_pass_seconds_total past
// before), failing the test if the pass was too short to tell the waits
// apart.
func waitAfter(t *testing.T, gw *testGW, l *loop, before float64) (wait, took time.Duration) {
	t.Helper()
	onLoop(l, func() { wait = time.Duration(l.wideWait.Load()) })
	took = time.Duration((counterValue(gw.s.m.passSeconds) - before) * 1e9)
	if took < 200*time.Microsecond {
		t.Fatalf("the pass took %v: too short to tell the waits apart", took)
	}
	return wait, took
}

// onLoop runs f on l and waits for it: everything the loop ran before
// (a flush) is done by then.
func onLoop(l *loop, f func()) {
	done := make(chan struct{})
	l.execute(func() {
		defer close(done)
		f()
	})
	<-done
}

// publishRoom puts a batch of ms of room on the dispatch stream.
func publishRoom(t *testing.T, gw *testGW, room string, ms []protocol.Message) {
	t.Helper()
	if err := gw.bus.Publisher(bus.StreamDispatch).Publish(context.Background(), bus.Record{Key: room, Value: protocol.EncodeBatch(room, ms)}); err != nil {
		t.Fatal(err)
	}
}

// TestWideReviewSmallRoomBesideBigStream: one flush writes two wide rooms
// on a loop: a big stream (writes far above shedFrameBytes to hundreds of
// viewers, nearly all of the pass) and a room of one viewer with a write
// of a few hundred bytes. The pass's writes cost their bytes, which no
// wait saves, so the loop waits ShedFlushDelay, not the pass's length: a
// small room beside it must not make the loop behind on the big stream
// idle half its time (what the change set out to stop).
func TestWideReviewSmallRoomBesideBigStream(t *testing.T) {
	gw, l, vs := wideBig(t, 600)
	tiny, _ := joinRoom(t, gw, "tiny")
	makeWide(gw, "tiny")
	before := counterValue(gw.s.m.passSeconds)
	// Hold the loop until both rooms' batches are queued: one flush
	// writes them both.
	held := make(chan struct{})
	l.execute(func() {
		defer close(held)
		waitQueued(t, l, 2)
	})
	publishRoom(t, gw, "big", mixed(1, 400, strings.Repeat("弹", 40)))
	publishRoom(t, gw, "tiny", mixed(1, 3, "x"))
	<-held
	for _, v := range vs {
		if f := v.NextOp(protocol.OpBatch, 5*time.Second); len(f.Msgs) != 400 {
			t.Fatalf("%d messages, want 400", len(f.Msgs))
		}
	}
	if f := tiny.NextOp(protocol.OpBatch, 5*time.Second); len(f.Msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(f.Msgs))
	}
	wait, took := waitAfter(t, gw, l, before)
	if wait > gw.s.cfg.ShedFlushDelay {
		t.Fatalf("after a pass of %v, nearly all of it writes of 400 big messages to %d viewers, the loop waits %v; want ShedFlushDelay %v (one viewer's small write beside them stretched the wait to the pass)", took, len(vs), wait, gw.s.cfg.ShedFlushDelay)
	}
}

// TestWideReviewLateNetOfItsWait: a wide loop's pass with small writes
// makes the next flush wait as long as it took; a batch queued as that
// wait began is written by a pass with big writes, after which the loop
// waits ShedFlushDelay alone. The lateness the shed goroutine reads of
// that pass leaves out the wait the batch sat through, not the shorter
// one that follows the pass: else the loop looks late by the difference
// (up to ShedDelay - ShedFlushDelay), and a wide room with big writes
// is cut for a wait that is not lateness.
func TestWideReviewLateNetOfItsWait(t *testing.T) {
	gw, l, vs := wideBig(t, 600)
	publishRoom(t, gw, "big", mixed(1, 3, "x"))
	for _, v := range vs {
		v.NextOp(protocol.OpBatch, 5*time.Second)
	}
	held := make(chan struct{})
	var waited time.Duration
	l.execute(func() {
		defer close(held)
		// The small pass is done: its wait is set.
		l.out.mu.Lock()
		waitEnd := l.out.notBefore
		l.out.mu.Unlock()
		waited = time.Duration(l.wideWait.Load())
		if !waitQueued(t, l, 1) {
			return
		}
		// The big batch was queued as the wait began.
		l.out.mu.Lock()
		l.out.q[0].queued = waitEnd - int64(waited)
		l.out.mu.Unlock()
	})
	publishRoom(t, gw, "big", mixed(4, 403, strings.Repeat("弹", 40)))
	<-held
	if t.Failed() {
		t.FailNow()
	}
	if waited < 200*time.Microsecond {
		t.Fatalf("the small pass's wait %v: too short to tell", waited)
	}
	for _, v := range vs {
		if f := v.NextOp(protocol.OpBatch, 5*time.Second); len(f.Msgs) != 400 {
			t.Fatalf("%d messages, want 400", len(f.Msgs))
		}
	}
	var after time.Duration
	onLoop(l, func() { after = time.Duration(l.wideWait.Load()) })
	if after > gw.s.cfg.ShedFlushDelay {
		t.Fatalf("after the big pass the loop waits %v, want ShedFlushDelay", after)
	}
	end, head := l.delayAt.Load(), l.delayHead.Load()
	lag, _ := l.behind(time.Unix(0, end))
	// The batch waited from head to at most end, waited of it in the
	// wide wait.
	if most := time.Duration(end-head) - waited; lag > most {
		t.Fatalf("the loop reads %v late after a pass whose batch waited %v, %v of it in the wide wait: want at most %v", lag, time.Duration(end-head), waited, most)
	}
}

// TestWideReviewCoverPassStretches: a pass over a wide room that writes
// its viewers only a batch of no messages (the from/to marks covering
// what shedding left out) makes writes of a few dozen bytes: a write's
// fixed cost is all of the pass, and the loop waits as long as the pass
// took, as after any pass of small writes (the wait stretched only when
// the room's writes held messages).
func TestWideReviewCoverPassStretches(t *testing.T) {
	gw, l, vs := wideBig(t, 600)
	r := gw.s.rooms.get("big")
	before := counterValue(gw.s.m.passSeconds)
	payload := protocol.EncodeThinned("big", 1, 5, nil)
	r.mu.Lock()
	gw.s.post(r.loopsLocked(nil), delivery{room: "big", frame: textFrame(payload), first: 1, last: 5, batch: []protocol.Message{}})
	r.mu.Unlock()
	for _, v := range vs {
		if f := v.NextOp(protocol.OpBatch, 5*time.Second); len(f.Msgs) != 0 {
			t.Fatalf("%d messages, want none (a cover)", len(f.Msgs))
		}
	}
	wait, took := waitAfter(t, gw, l, before)
	if wait < took {
		t.Fatalf("after a pass of %v writing %d viewers a cover of %d B, the loop waits %v; want the pass's length", took, len(vs), len(payload), wait)
	}
}
