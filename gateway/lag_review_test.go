// Tests from an outside review of the loop's lateness measure (lag.go).

package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// TestLagReviewDroppedAfterTake: a pass over a room of takeEvery + 1,500
// viewers takes the room's second batch early at member takeEvery, and the
// outbound budget drops the first and second batches for every viewer from
// there on (their merged frame is past SoftOutbound/16; the first batch
// alone is not). The next pass writes the second batch to all of them: to
// the first takeEvery, which lacked it, and to the 1,500 after, which
// lacked it too. Its lateness must count the second batch until it is
// written to the last of them, near the pass's end, not only until member
// takeEvery.
func TestLagReviewDroppedAfterTake(t *testing.T) {
	msg := func(seq uint64) protocol.Message {
		return protocol.Message{Seq: seq, UID: "u", Name: "n", Text: strings.Repeat("弾幕 ", 10)}
	}
	one := len(textFrame(protocol.EncodeBatch("big", []protocol.Message{msg(1)})))
	two := len(textFrame(protocol.EncodeBatch("big", []protocol.Message{msg(1), msg(2)})))
	const budget = 1 << 20
	gw := startGW(t, func(c *Config) {
		c.Loops, c.FlushRate, c.OnlineRate, c.MaxConnsPerIP = 1, -1, -1, -1
		c.SoftOutbound = 16 * (one + two) / 2 // one batch passes, two merged do not
		c.OutboundBudget = budget
	})
	const n = takeEvery + 1500
	vs := joinBig(t, gw, n)
	l := gw.s.loopList()[0]
	var second delivery
	var start, end int64 // the second pass's bounds
	held := make(chan struct{})
	l.execute(func() {
		defer close(held)
		if !waitQueued(t, l, 2) {
			return
		}
		l.out.mu.Lock()
		first := l.out.q[0]
		l.out.q = append([]delivery(nil), l.out.q[1:]...)
		l.out.mu.Unlock()
		// The first pass, over budget.
		gw.s.outbound.Add(2 * budget)
		l.deliverRoom(gw.s, []delivery{first})
		gw.s.outbound.Add(-2 * budget)
		l.out.mu.Lock()
		second = l.out.q[0]
		l.out.mu.Unlock()
		// The second pass.
		start = time.Now().UnixNano()
		l.flush(gw.s)
		end = time.Now().UnixNano()
	})
	publishSeqs(t, gw, "big", 1, 1, 1)
	publishSeqs(t, gw, "big", 2, 2, 1)
	<-held
	if t.Failed() {
		t.FailNow()
	}
	if second.first != 2 || second.takenAt != takeEvery+1 {
		t.Fatalf("after the first pass the queue's head is seq %d taken at %d, want seq 2 taken at member %d (+1)", second.first, second.takenAt, takeEvery)
	}
	dropped := 0
	for i, v := range vs {
		a := fmt.Sprint(seqsOfFrame(v.NextOp(protocol.OpBatch, 5*time.Second)))
		switch a {
		case "[2]":
			dropped++
		case "[1]":
			if b := fmt.Sprint(seqsOfFrame(v.NextOp(protocol.OpBatch, 5*time.Second))); b != "[2]" {
				t.Fatalf("viewer %d got [1] then %s, want [2]", i, b)
			}
		default:
			t.Fatalf("viewer %d got %s first, want [1] or [2]", i, a)
		}
	}
	if dropped != n-takeEvery {
		t.Fatalf("%d viewers lost seq 1 (and got seq 2 from the second pass), want the %d after the first %d", dropped, n-takeEvery, takeEvery)
	}
	// The last viewer that lacked seq 2 was written near the second pass's
	// end: three quarters of that pass's writes came after member
	// takeEvery. Half the pass is room to spare.
	lag := l.delay.Load()
	toEnd := end - second.queued
	t.Logf("second pass %v; seq 2 queued → that pass's end %v; lateness %v", time.Duration(end-start), time.Duration(toEnd), time.Duration(lag))
	if lag < toEnd-(end-start)/2 {
		t.Fatalf("lateness %v, want at least %v: seq 2 was written to %d viewers that lacked it after member %d of the second pass", time.Duration(lag), time.Duration(toEnd-(end-start)/2), dropped, takeEvery)
	}
}

// seqsOfFrame returns the seqs of a batch frame's messages.
func seqsOfFrame(b protocol.ServerFrame) []uint64 {
	var out []uint64
	for _, m := range b.Msgs {
		out = append(out, m.Seq)
	}
	return out
}

// TestLagReviewLacking: past a reached mark, a member whose from is below
// the mark's batch lacked it (its write was dropped when the batch was
// taken): the batch counts until that member is written. A member lacking
// only a mark not reached yet, or catching up, does not count.
func TestLagReviewLacking(t *testing.T) {
	var p passLag
	p.reset()
	// B (seq 2) taken at member 512, C (seq 3) at member 1024.
	p.room([]delivery{{queued: 100, first: 2, last: 2, takenAt: 513}, {queued: 200, first: 3, last: 3, takenAt: 1025}})
	if p.lacks(&member{from: 1}) {
		t.Fatal("a member lacks a reached mark before any is reached")
	}
	p.reached(512, 1000) // B: 900
	if p.lacks(&member{from: 2}) || p.lacks(&member{from: 1, catching: true}) {
		t.Fatal("a member with seq 2, or a catching one, lacks a reached mark")
	}
	if !p.lacks(&member{from: 1}) {
		t.Fatal("a member from seq 1 past member 512 does not lack B")
	}
	p.wrote(1, 1500) // B: 1400
	if p.lag != 1400 || p.head != 100 {
		t.Fatalf("lag %d head %d, want 1400 and 100 (B until the member that lacked it)", p.lag, p.head)
	}
	p.reached(1024, 1600) // C: 1400
	p.wrote(2, 1900)      // C: 1700
	if p.lag != 1700 || p.head != 200 {
		t.Fatalf("lag %d head %d, want 1700 and 200 (C until the member that lacked it)", p.lag, p.head)
	}
}

// TestLagReviewTakenCountsToTakePoint: a pass over a room of takeEvery +
// 1,500 viewers takes the room's second batch at member takeEvery; a third
// comes 300 ms later, and the next pass writes the second to the first
// takeEvery viewers and the third to all. Its lateness is the second
// batch's wait until member takeEvery or the third's until the pass's end,
// both well below the second's wait until the pass's end (what counting a
// taken batch until its room's pass ends would say). The pass after that,
// of one batch written at once, is not as late (each flush starts over).
func TestLagReviewTakenCountsToTakePoint(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.Loops, c.FlushRate, c.OnlineRate, c.MaxConnsPerIP = 1, -1, -1, -1 })
	const n = takeEvery + 1500
	vs := joinBig(t, gw, n)
	l := gw.s.loopList()[0]
	queued := func(want int) bool { return waitQueued(t, l, want) }
	var second delivery
	var start, end int64 // the second pass's bounds
	passed, held := make(chan struct{}), make(chan struct{})
	l.execute(func() {
		defer close(held)
		if !queued(2) {
			close(passed)
			return
		}
		l.out.mu.Lock()
		first := l.out.q[0]
		l.out.q = append([]delivery(nil), l.out.q[1:]...)
		l.out.mu.Unlock()
		l.deliverRoom(gw.s, []delivery{first})
		l.out.mu.Lock()
		second = l.out.q[0]
		l.out.mu.Unlock()
		close(passed)
		if !queued(2) {
			return
		}
		start = time.Now().UnixNano()
		l.flush(gw.s)
		end = time.Now().UnixNano()
	})
	publishSeqs(t, gw, "big", 1, 1, 1)
	publishSeqs(t, gw, "big", 2, 2, 1)
	<-passed
	time.Sleep(300 * time.Millisecond)
	publishSeqs(t, gw, "big", 3, 3, 1)
	<-held
	if t.Failed() {
		t.FailNow()
	}
	if second.first != 2 || second.takenAt != takeEvery+1 {
		t.Fatalf("after the first pass the queue's head is seq %d taken at %d, want seq 2 taken at member %d (+1)", second.first, second.takenAt, takeEvery)
	}
	early := 0
	for i, v := range vs {
		a, b := fmt.Sprint(seqsOfFrame(v.NextOp(protocol.OpBatch, 5*time.Second))), fmt.Sprint(seqsOfFrame(v.NextOp(protocol.OpBatch, 5*time.Second)))
		switch a + " " + b {
		case "[1 2] [3]":
			early++
		case "[1] [2 3]":
		default:
			t.Fatalf("viewer %d got %s then %s, want [1 2] [3] or [1] [2 3]", i, a, b)
		}
	}
	if early != n-takeEvery {
		t.Fatalf("%d viewers got seqs 1-2 in one frame, want the %d after the first %d", early, n-takeEvery, takeEvery)
	}
	lag := l.delay.Load()
	toEnd := end - second.queued
	t.Logf("second pass %v; seq 2 queued → that pass's end %v; lateness %v", time.Duration(end-start), time.Duration(toEnd), time.Duration(lag))
	if lag <= 0 || lag > toEnd-(end-start)/3 {
		t.Fatalf("lateness %v, want above 0 and at most %v: seq 2 was done at member %d, three quarters of the pass before its end", time.Duration(lag), time.Duration(toEnd-(end-start)/3), takeEvery)
	}
	publishSeqs(t, gw, "big", 4, 4, 1)
	for i, v := range vs {
		if got := fmt.Sprint(seqsOfFrame(v.NextOp(protocol.OpBatch, 5*time.Second))); got != "[4]" {
			t.Fatalf("viewer %d: next batch %s, want [4]", i, got)
		}
	}
	if next := l.delay.Load(); next >= lag {
		t.Fatalf("the next pass's lateness %v, want below the second pass's %v: seq 4 was written at once", time.Duration(next), time.Duration(lag))
	}
}
