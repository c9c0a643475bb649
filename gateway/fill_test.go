package gateway

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// countingStore counts Range calls.
type countingStore struct {
	history.Store
	ranges atomic.Int64
}

func (s *countingStore) Range(ctx context.Context, room string, f history.Filter) ([]protocol.Message, error) {
	s.ranges.Add(1)
	return s.Store.Range(ctx, room, f)
}

// dialAtOnce runs dial(i) for n viewers at the same time and returns them
// in order.
func dialAtOnce(n int, dial func(i int) *wstest.Conn) []*wstest.Conn {
	vs := make([]*wstest.Conn, n)
	var wg sync.WaitGroup
	for i := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			vs[i] = dial(i)
		}()
	}
	wg.Wait()
	return vs
}

// appendSeqs stores messages from..to of room in st.
func appendSeqs(t *testing.T, st history.Store, room string, from, to uint64) {
	var msgs []protocol.Message
	for seq := from; seq <= to; seq++ {
		msgs = append(msgs, protocol.Message{Room: room, Seq: seq, UID: "u", Text: fmt.Sprint(seq)})
	}
	if err := st.Append(context.Background(), msgs); err != nil {
		t.Error(err)
	}
}

// TestResumeStormSharesOneStoreLoad checks that resumes a fresh gateway's
// ring does not reach (a restart) are answered from one store load per
// room, completely, and that the ring then serves later resumes, older
// ones extend it, and batches continue after the history.
func TestResumeStormSharesOneStoreLoad(t *testing.T) {
	mem := history.NewMemory(history.MemoryConfig{})
	appendSeqs(t, mem, "s", 1, 300)
	store := &countingStore{Store: mem}
	gw := startGW(t, func(c *Config) { c.History = store })

	resume := func(from uint64) *wstest.Conn {
		v := dialRaw(t, gw.addr)
		if st := v.Upgrade(fmt.Sprintf("/ws?room=s&resume=%d", from), ""); st != 101 {
			t.Errorf("upgrade: %d", st)
		}
		return v
	}
	check := func(v *wstest.Conn, from uint64) {
		j := v.NextOp(protocol.OpJoined, 5*time.Second)
		h := v.NextOp(protocol.OpHistory, 5*time.Second)
		if !h.Complete || j.Seq != 300 {
			t.Errorf("resume from %d: joined seq %d, complete %v", from, j.Seq, h.Complete)
		}
		want := from + 1
		for _, m := range h.Msgs {
			if m.Seq != want {
				t.Fatalf("resume from %d: seq %d, want %d", from, m.Seq, want)
			}
			want++
		}
		if want != 301 {
			t.Fatalf("resume from %d: history ends before %d", from, want)
		}
	}

	const n = 30
	viewers := dialAtOnce(n, func(i int) *wstest.Conn {
		return resume(200 + uint64(i%3)) // about the same point
	})
	for i, v := range viewers {
		check(v, 200+uint64(i%3))
	}
	if got := store.ranges.Load(); got > 3 {
		t.Fatalf("%d resumes made %d store loads, want one (a few if they raced the first)", n, got)
	}
	before := store.ranges.Load()
	check(resume(250), 250) // inside the filled ring: no load
	if got := store.ranges.Load(); got != before {
		t.Fatalf("a resume inside the filled ring loaded from the store (%d → %d)", before, got)
	}
	old := resume(10) // below the ring: one load extends it
	check(old, 10)
	check(resume(15), 15)
	if got := store.ranges.Load(); got != before+1 {
		t.Fatalf("resumes below the ring made %d loads, want 1", got-before)
	}

	publishSeqs(t, gw, "s", 301, 305, 5)
	collect(t, viewers[0], nil, 301, 305, false)
	collect(t, old, nil, 301, 305, false)
}

// TestFillWaitsForALaggingStore checks that a fill whose store answer
// ends below the ring (the history writer has not persisted the messages
// just below it yet) asks again instead of joining the two across a gap.
func TestFillWaitsForALaggingStore(t *testing.T) {
	mem := history.NewMemory(history.MemoryConfig{})
	appendSeqs(t, mem, "l", 1, 280)
	gw := startGW(t, func(c *Config) { c.History = mem })
	live := dialRaw(t, gw.addr)
	if st := live.Upgrade("/ws?room=l", ""); st != 101 {
		t.Fatal(st)
	}
	live.NextOp(protocol.OpHistory, 5*time.Second)
	publishSeqs(t, gw, "l", 291, 300, 10) // the ring: 291-300
	collect(t, live, nil, 291, 300, false)

	time.AfterFunc(300*time.Millisecond, func() { appendSeqs(t, mem, "l", 281, 290) })
	v := dialRaw(t, gw.addr)
	if st := v.Upgrade("/ws?room=l&resume=200", ""); st != 101 {
		t.Fatal(st)
	}
	v.NextOp(protocol.OpJoined, 5*time.Second)
	h := v.NextOp(protocol.OpHistory, 5*time.Second)
	if !h.Complete || len(h.Msgs) != 100 || h.Msgs[0].Seq != 201 || h.Msgs[99].Seq != 300 {
		t.Fatalf("history complete=%v with %d msgs (%v…), want 201-300 complete", h.Complete, len(h.Msgs), h.Msgs[:min(3, len(h.Msgs))])
	}
}

// TestJoinStormSharesOneTailLoad checks that joins without resume to a
// room the gateway has no ring for share one store load of its newest
// messages, and that a room the store has nothing of is then known empty.
func TestJoinStormSharesOneTailLoad(t *testing.T) {
	mem := history.NewMemory(history.MemoryConfig{})
	appendSeqs(t, mem, "t", 1, 300)
	store := &countingStore{Store: mem}
	gw := startGW(t, func(c *Config) { c.History = store })

	join := func(room string, n int) []*wstest.Conn {
		return dialAtOnce(n, func(int) *wstest.Conn {
			v := dialRaw(t, gw.addr)
			if st := v.Upgrade("/ws?room="+room, ""); st != 101 {
				t.Errorf("upgrade: %d", st)
			}
			return v
		})
	}
	for _, v := range join("t", 30) {
		j := v.NextOp(protocol.OpJoined, 5*time.Second)
		h := v.NextOp(protocol.OpHistory, 5*time.Second)
		if j.Seq != 300 || !h.Complete || len(h.Msgs) != 50 || h.Msgs[0].Seq != 251 || h.Msgs[49].Seq != 300 {
			t.Fatalf("joined %d, history complete=%v with %d msgs, want 251-300", j.Seq, h.Complete, len(h.Msgs))
		}
	}
	if got := store.ranges.Load(); got > 3 {
		t.Fatalf("30 joins made %d store loads, want one (a few if they raced the first)", got)
	}

	before := store.ranges.Load()
	empty := join("e", 10)
	for _, v := range empty {
		if j := v.NextOp(protocol.OpJoined, 5*time.Second); j.Seq != 0 {
			t.Fatalf("joined seq %d in an empty room", j.Seq)
		}
		if h := v.NextOp(protocol.OpHistory, 5*time.Second); !h.Complete || len(h.Msgs) != 0 {
			t.Fatalf("empty room: history complete=%v with %d msgs", h.Complete, len(h.Msgs))
		}
	}
	join("e", 1)[0].NextOp(protocol.OpHistory, 5*time.Second)
	if got := store.ranges.Load() - before; got > 3 {
		t.Fatalf("11 joins of an empty room made %d store loads", got)
	}
	publishSeqs(t, gw, "e", 1, 2, 2)
	collect(t, empty[0], nil, 1, 2, false)
}
