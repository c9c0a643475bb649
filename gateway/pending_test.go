package gateway

import (
	"context"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// TestCatchingJoinerMissesNothing: while a joiner's history loads from a
// slow store, more batches arrive than the gateway queues for it
// (maxPending), then a delete, a purge and a notice. The joiner still
// gets every seq once, in order, with no later batch needed to reveal a
// hole, and every control frame; so does a joiner whose history came
// from the ring fill.
func TestCatchingJoinerMissesNothing(t *testing.T) {
	mem := history.NewMemory(history.MemoryConfig{})
	appendSeqs(t, mem, "p", 1, 100)
	// The loads must outlast queueing 300 batches and 3 control frames,
	// also on a loaded machine under -race, and answer: a query past
	// HistoryTimeout (3 s by default, the store's delay) fails, and the
	// joiner then gets what the ring holds with complete:false, which is
	// right but not what this test is about.
	st := &slowStore{Store: mem, delay: 3 * time.Second}
	gw := startGW(t, func(c *Config) { c.History = st; c.Loops = 1; c.HistoryTimeout = 20 * time.Second })

	upgrade := func(query string) *wstest.Conn {
		v := dialRaw(t, gw.addr)
		if code := v.Upgrade("/ws?room=p"+query, ""); code != 101 {
			t.Fatal(code)
		}
		return v
	}
	fill := upgrade("")              // waits on the room's tail fill
	resumed := upgrade("&resume=20") // the tail fill does not serve it: a fill of its own
	for st.inflight.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	const last = 100 + maxPending + 44
	publishSeqs(t, gw, "p", 101, last, 1)
	r := gw.s.rooms.get("p")
	for {
		r.mu.Lock()
		done := r.last == last
		r.mu.Unlock()
		if done {
			break
		}
		time.Sleep(time.Millisecond)
	}
	ctl := gw.bus.Publisher(bus.StreamControl)
	for _, ev := range []bus.Control{
		{Op: bus.ControlDelete, Room: "p", Seqs: []uint64{150}},
		{Op: bus.ControlPurge, Room: "p", UID: "nobody"},
		{Op: bus.ControlNotice, Room: "p", Text: "hello"},
	} {
		b, _ := bus.Marshal(ev)
		if err := ctl.Publish(context.Background(), bus.Record{Key: "p", Value: b}); err != nil {
			t.Fatal(err)
		}
	}
	if st.inflight.Load() < 2 {
		t.Fatal("the store answered before the test queued its frames; raise the delay")
	}

	// read checks that v gets every seq from first to last once, in
	// order, in its history and batches (150 may be left out: it is
	// deleted), and the three control frames.
	read := func(who string, v *wstest.Conn, first uint64) {
		t.Helper()
		prev := first - 1
		controls := map[string]bool{}
		for prev < last || len(controls) < 3 {
			f, err := v.NextFrame(5 * time.Second)
			if err != nil {
				t.Fatalf("%s: got seqs up to %d of %d and controls %v: %v", who, prev, last, controls, err)
			}
			switch f.Op {
			case protocol.OpHistory, protocol.OpBatch:
				if f.Op == protocol.OpHistory && !f.Complete {
					t.Fatalf("%s: history %d messages, complete:false (the store's load failed)", who, len(f.Msgs))
				}
				for _, m := range f.Msgs {
					if m.Seq != prev+1 && (prev+1 != 150 || m.Seq != 151) {
						t.Fatalf("%s: seq %d after %d", who, m.Seq, prev)
					}
					prev = m.Seq
				}
			case protocol.OpDelete, protocol.OpPurge, protocol.OpNotice:
				controls[f.Op] = true
			}
		}
	}
	read("fill joiner", fill, last-49)
	read("resumed joiner", resumed, 21)
}

// TestCatchingJoinerPastTheRing: when more messages arrive during a
// joiner's history load than the ring holds, the batches past maxPending
// cannot be taken from it: the history says complete:false (the client
// resumes) instead of leaving a silent hole after the queued batches.
func TestCatchingJoinerPastTheRing(t *testing.T) {
	mem := history.NewMemory(history.MemoryConfig{})
	appendSeqs(t, mem, "q", 1, 100)
	st := &slowStore{Store: mem, delay: 1500 * time.Millisecond}
	gw := startGW(t, func(c *Config) { c.History = st; c.Loops = 1; c.RingSize = 64; c.HistoryOnJoin = 10 })
	upgrade := func(query string) *wstest.Conn {
		v := dialRaw(t, gw.addr)
		if code := v.Upgrade("/ws?room=q"+query, ""); code != 101 {
			t.Fatal(code)
		}
		return v
	}
	upgrade("") // a tail fill, so the resume below waits on a fill of its own
	resumed := upgrade("&resume=20")
	for st.inflight.Load() < 2 {
		time.Sleep(time.Millisecond)
	}
	publishSeqs(t, gw, "q", 101, 100+maxPending+44, 1)
	resumed.NextOp(protocol.OpJoined, 5*time.Second)
	h := resumed.NextOp(protocol.OpHistory, 5*time.Second)
	if h.Complete {
		t.Fatalf("history 21-%d complete although %d batches after it were not queued", h.Msgs[len(h.Msgs)-1].Seq, 44)
	}
}
