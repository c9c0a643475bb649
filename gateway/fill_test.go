package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
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

// TestEmptyStoreAnswerIsNotTheRoomsEnd checks that a store answer with
// nothing in it, for a room this gateway has no memory of, is not taken
// as the room's end for good: the store may only lag (the history writer
// persists in batches, and falls behind for seconds after a broker
// restart), so joins after emptyFor ask it again and get the messages it
// has caught up with.
func TestEmptyStoreAnswerIsNotTheRoomsEnd(t *testing.T) {
	mem := history.NewMemory(history.MemoryConfig{})
	gw := startGW(t, func(c *Config) { c.History = mem })
	// Seqs 1-5 went out before any viewer of the room was on this
	// gateway; the history writer has not stored them yet.
	publishSeqs(t, gw, "n", 1, 5, 5)
	if _, j, h := joinURL(t, gw, "n", "&resume=3"); j.Seq != 0 || !h.Complete || len(h.Msgs) != 0 {
		t.Fatalf("resume=3 while the store has nothing: joined %d, history complete=%v with %d msgs", j.Seq, h.Complete, len(h.Msgs))
	}
	appendSeqs(t, mem, "n", 1, 5) // the writer catches up
	time.Sleep(emptyFor + 100*time.Millisecond)
	fresh := joinAt(t, gw, "n", "", "fresh join after the store caught up", 5, 1, 5)
	joinAt(t, gw, "n", "&resume=3", "resume after the store caught up", 5, 4, 5)
	publishSeqs(t, gw, "n", 6, 6, 1)
	collect(t, fresh, nil, 6, 6, false)
}

// gatedStore holds every Range until gate is closed, and counts them.
type gatedStore struct {
	history.Store
	gate  chan struct{}
	calls atomic.Int64
}

func (s *gatedStore) Range(ctx context.Context, room string, f history.Filter) ([]protocol.Message, error) {
	s.calls.Add(1)
	select {
	case <-s.gate:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Store.Range(ctx, room, f)
}

// TestConcurrentJoinsDuringFill: while the room's first fill is held in
// flight, viewers join with different needs — resumes inside its window,
// a cluster of older resumes it does not serve, joins without resume
// before and after the first live batches, resumes past the room's end —
// and live batches arrive before and after the store answers. Every
// viewer gets exactly the history it asked for, complete, and then the
// live batches: over history and batches together every seq once, in
// order, with no gap, each message the store's; the joins share a few
// store loads (one per request), not one each.
func TestConcurrentJoinsDuringFill(t *testing.T) {
	const room, stored, last = "cj", 300, 400
	mem := history.NewMemory(history.MemoryConfig{})
	st := &gatedStore{Store: mem, gate: make(chan struct{})}
	gw := startGW(t, func(c *Config) { c.History = st; c.HistoryTimeout = 30 * time.Second })
	msg := func(seq uint64) protocol.Message {
		return protocol.Message{Room: room, Seq: seq, UID: "u", Text: fmt.Sprint(seq)}
	}
	for seq := uint64(1); seq <= stored; seq++ {
		if err := mem.Append(context.Background(), []protocol.Message{msg(seq)}); err != nil {
			t.Fatal(err)
		}
	}
	// live stores messages from..to (the history writer) and publishes
	// them to dispatch in batches of 3.
	live := func(from, to uint64) {
		for seq := from; seq <= to; seq += 3 {
			var b []protocol.Message
			for s := seq; s <= min(seq+2, to); s++ {
				b = append(b, msg(s))
			}
			if err := mem.Append(context.Background(), b); err != nil {
				t.Error(err)
			}
			for i := range b {
				b[i].Room = ""
			}
			if err := gw.bus.Publisher(bus.StreamDispatch).Publish(context.Background(), bus.Record{Key: room, Value: protocol.EncodeBatch(room, b)}); err != nil {
				t.Error(err)
			}
		}
	}
	type viewer struct {
		who    string
		resume uint64 // 0: none
		v      *wstest.Conn
	}
	join := func(who string, resumes ...uint64) []viewer {
		vs := make([]viewer, len(resumes))
		conns := dialAtOnce(len(resumes), func(i int) *wstest.Conn {
			q := "/ws?room=" + room
			if resumes[i] != 0 {
				q += fmt.Sprintf("&resume=%d", resumes[i])
			}
			v := dialRaw(t, gw.addr)
			if st := v.Upgrade(q, ""); st != 101 {
				t.Errorf("upgrade %s: %d", q, st)
			}
			return v
		})
		for i := range vs {
			vs[i] = viewer{fmt.Sprintf("%s resume=%d", who, resumes[i]), resumes[i], conns[i]}
		}
		return vs
	}

	// The first resume starts the fill (from 136); the gate holds it.
	all := join("first", 200)
	all = append(all, join("in its window", 140, 180, 230, 260, 264)...)
	// Within fillMargin of each other: whichever joins first, its fill
	// serves the others.
	all = append(all, join("older cluster", 20, 28, 36, 44, 52, 60, 68, 76)...)
	all = append(all, join("no resume, room unknown", 0, 0, 0)...)
	all = append(all, join("past the end, room unknown", 100000)...)
	live(stored+1, stored+20)
	r := gw.s.rooms.get(room)
	waitLast := func(seq uint64) {
		for {
			r.mu.Lock()
			l := r.last
			r.mu.Unlock()
			if l >= seq {
				return
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitLast(stored + 20)
	all = append(all, join("no resume, ring too short", 0, 0, 0)...)
	all = append(all, join("past the end, room known", 100000)...)
	r.mu.Lock()
	fills := len(r.fills)
	r.mu.Unlock()
	if fills < 3 {
		t.Fatalf("%d fills in flight before the store answers, want one per request (at least 3)", fills)
	}
	// The store answers while more batches arrive.
	done := make(chan struct{})
	go func() {
		defer close(done)
		live(stored+21, last)
	}()
	close(st.gate)
	<-done

	var wg sync.WaitGroup
	for _, vw := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := checkJoinStream(vw.v, vw.resume, last); err != nil {
				t.Errorf("%s: %v", vw.who, err)
			}
		}()
	}
	wg.Wait()
	if n := st.calls.Load(); n > 6 {
		t.Errorf("%d viewers made %d store loads, want at most 6 (one per request)", len(all), n)
	}
}

// checkJoinStream reads a joined viewer's joined, history and batches up
// to seq last and checks them: the history is complete, starts right
// after resume (without resume: holds the newest 50 up to the joined
// seq; past the room's end: is empty) and ends at the joined seq, and
// history and batches together carry every seq from there to last once,
// in order, each message as stored (Text is its seq).
func checkJoinStream(v *wstest.Conn, resume, last uint64) error {
	f, err := v.NextFrame(10 * time.Second)
	if err != nil || f.Op != protocol.OpJoined {
		return fmt.Errorf("first frame %q, %v; want joined", f.Op, err)
	}
	joined := f.Seq
	h, err := v.NextFrame(10 * time.Second)
	if err != nil || h.Op != protocol.OpHistory || !h.Complete {
		return fmt.Errorf("second frame %q complete=%v, %v; want a complete history", h.Op, h.Complete, err)
	}
	prev := resume
	switch {
	case resume > joined:
		if len(h.Msgs) != 0 {
			return fmt.Errorf("resume past the end (joined %d): history has %d msgs", joined, len(h.Msgs))
		}
		prev = joined
	case resume == 0:
		if len(h.Msgs) != 50 {
			return fmt.Errorf("join without resume: %d msgs, want 50", len(h.Msgs))
		}
		prev = h.Msgs[0].Seq - 1
	}
	if n := len(h.Msgs); n > 0 && h.Msgs[n-1].Seq != joined {
		return fmt.Errorf("history ends at %d, joined %d", h.Msgs[n-1].Seq, joined)
	}
	msgs := h.Msgs
	for {
		for _, m := range msgs {
			if m.Seq != prev+1 || m.Text != fmt.Sprint(m.Seq) {
				return fmt.Errorf("seq %d (%q) after %d", m.Seq, m.Text, prev)
			}
			prev = m.Seq
		}
		if prev >= last {
			return nil
		}
		b, err := v.NextFrame(10 * time.Second)
		if err != nil {
			return fmt.Errorf("got seqs up to %d of %d: %v", prev, last, err)
		}
		msgs = nil
		if b.Op == protocol.OpBatch {
			msgs = b.Msgs
		}
	}
}

// TestLoadUntilStoreTries: a load asks a failing store
// Config.HistoryStoreTries times (3 by default), a store without shared
// history once, and a lagging one HistoryRetries times more; a negative
// HistoryStoreTries is refused.
func TestLoadUntilStoreTries(t *testing.T) {
	down := errors.New("store down")
	for _, tc := range []struct {
		name  string
		tries int
		err   error
		done  bool
		want  int
	}{
		{"failing, default", 0, down, false, 3},
		{"failing, 5 tries", 5, down, false, 5},
		{"failing, 1 try", 1, down, false, 1},
		{"no shared store", 5, history.ErrNoShared, false, 1},
		{"lagging", 2, nil, false, 1 + 4},
		{"answered", 3, nil, true, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Retries are also capped in time (HistoryRetries ×
			// HistoryRetryEvery): a period long against a sleep's
			// overshoot on a loaded machine keeps the count what it
			// tests (at 1ms, 3 of 4 retries fitted under -race).
			cfg := Config{HistoryStoreTries: tc.tries, HistoryRetries: 4, HistoryRetryEvery: 50 * time.Millisecond, HistoryTimeout: time.Second}
			cfg.setDefaults()
			s := &Server{cfg: cfg, ctx: context.Background()}
			calls := 0
			s.loadUntil(func(context.Context) (bool, error) { calls++; return tc.done, tc.err })
			if calls != tc.want {
				t.Fatalf("%d calls, want %d", calls, tc.want)
			}
		})
	}
	cfg := Config{HistoryStoreTries: -1}
	cfg.setDefaults()
	b := bus.NewMemory(bus.MemoryConfig{})
	defer b.Close()
	cfg.Bus, cfg.History, cfg.Signer = b, history.NewMemory(history.MemoryConfig{}), &auth.Signer{}
	if err := cfg.Validate(); err == nil || !strings.Contains(err.Error(), "HistoryStoreTries") {
		t.Fatalf("Validate with HistoryStoreTries -1: %v, want an error naming it", err)
	}
}
