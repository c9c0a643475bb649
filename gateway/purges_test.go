package gateway

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// TestPurgeBeforeInFlightMessage: a ban's purge reaches the gateway before
// a message the user sent just before the ban (still on its way through
// logic and dispatch). The message is never shown live nor to joiners;
// the user's messages after the purge's until, and everyone else's, are.
func TestPurgeBeforeInFlightMessage(t *testing.T) {
	gw := startGW(t, nil)
	join := func() (*wstest.Conn, protocol.ServerFrame) {
		v := dialRaw(t, gw.addr)
		if code := v.Upgrade("/ws?room=pg", ""); code != 101 {
			t.Fatal(code)
		}
		v.NextOp(protocol.OpJoined, 5*time.Second)
		return v, v.NextOp(protocol.OpHistory, 5*time.Second)
	}
	now := time.Now().UnixMilli()
	dispatch := func(msgs ...protocol.Message) {
		t.Helper()
		if err := gw.bus.Publisher(bus.StreamDispatch).Publish(context.Background(),
			bus.Record{Key: "pg", Value: protocol.EncodeBatch("pg", msgs)}); err != nil {
			t.Fatal(err)
		}
	}
	seqsOf := func(ms []protocol.Message) []uint64 {
		out := []uint64{}
		for _, m := range ms {
			out = append(out, m.Seq)
		}
		return out
	}
	v, _ := join()
	dispatch(protocol.Message{Seq: 1, UID: "ok", Text: "hi", TS: now - 500})
	if b := v.NextOp(protocol.OpBatch, 5*time.Second); !slices.Equal(seqsOf(b.Msgs), []uint64{1}) {
		t.Fatalf("first batch %v", seqsOf(b.Msgs))
	}
	ev, _ := bus.Marshal(bus.Control{Op: bus.ControlPurge, Room: "pg", UID: "bad", Until: now})
	if err := gw.bus.Publisher(bus.StreamControl).Publish(context.Background(), bus.Record{Key: "pg", Value: ev}); err != nil {
		t.Fatal(err)
	}
	if p := v.NextOp(protocol.OpPurge, 5*time.Second); p.UID != "bad" || p.Until != now {
		t.Fatalf("purge frame %+v, want uid bad until %d", p, now)
	}
	dispatch(protocol.Message{Seq: 2, UID: "bad", Text: "sent before the ban", TS: now - 100},
		protocol.Message{Seq: 3, UID: "ok", Text: "fine", TS: now - 50},
		protocol.Message{Seq: 4, UID: "bad", Text: "after the timeout", TS: now + 60000})
	b := v.NextOp(protocol.OpBatch, 5*time.Second)
	if got := seqsOf(b.Msgs); !slices.Equal(got, []uint64{3, 4}) || b.From != 2 || b.To != 4 {
		t.Fatalf("batch after the purge: seqs %v covering %d-%d; want [3 4] covering 2-4", got, b.From, b.To)
	}
	if _, h := join(); !slices.Equal(seqsOf(h.Msgs), []uint64{1, 3, 4}) {
		t.Fatalf("joiner's history %v, want [1 3 4]", seqsOf(h.Msgs))
	}
}

// TestPurgeMemoryBounds: a purge is forgotten purgeKeep after its until,
// and at most maxPurgeMarks are held.
func TestPurgeMemoryBounds(t *testing.T) {
	p := newPurgeMemory()
	t0 := time.Now()
	until := t0.UnixMilli()
	p.add("r", "bad", until, t0)
	msg := func() []protocol.Message {
		return []protocol.Message{{UID: "bad", TS: until - 1}, {UID: "bad", TS: until}}
	}
	if ms := msg(); p.mark("r", ms) != 1 || !ms[0].Deleted || ms[1].Deleted {
		t.Fatalf("mark: %+v, want only the message before until", ms)
	}
	if p.mark("other", msg()) != 0 {
		t.Fatal("a purge of room r marked a message of another room")
	}
	p.add("r2", "x", until, t0.Add(purgeKeep+time.Second)) // expires the first
	if p.mark("r", msg()) != 0 {
		t.Fatal("purge still applied after purgeKeep")
	}
	for i := range maxPurgeMarks + 10 {
		p.add("r3", "u", until, t0.Add(purgeKeep+time.Second+time.Duration(i)))
	}
	if n := p.n.Load(); n != maxPurgeMarks {
		t.Fatalf("%d marks held, want at most %d", n, maxPurgeMarks)
	}
}
