package gateway

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// TestPurgeBeforeInFlightMessage: a ban's purge reaches the gateway before
// a message the user sent just before the ban (still on its way through
// logic and dispatch). The message is never shown live nor to joiners;
// the user's messages after the purge's until, and everyone else's, are.
func TestPurgeBeforeInFlightMessage(t *testing.T) {
	gw := startGW(t, nil)
	now := time.Now().UnixMilli()
	join := func() (*wstest.Conn, protocol.ServerFrame) { return joinRoom(t, gw, "pg") }
	dispatch := func(msgs ...protocol.Message) { t.Helper(); publishBatch(t, gw, "pg", msgs...) }
	v, _ := join()
	dispatch(protocol.Message{Seq: 1, UID: "ok", Text: "hi", TS: now - 500})
	if b := v.NextOp(protocol.OpBatch, 5*time.Second); !slices.Equal(seqsOf(b.Msgs), []uint64{1}) {
		t.Fatalf("first batch %v", seqsOf(b.Msgs))
	}
	publishControl(t, gw, bus.Control{Op: bus.ControlPurge, Room: "pg", UID: "bad", Until: now})
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
// a delete purgeKeep after it arrived, and at most maxPurgeMarks marks (a
// purge, or one deleted seq) are held.
func TestPurgeMemoryBounds(t *testing.T) {
	p := newRetractMemory()
	t0 := time.Now()
	until := t0.UnixMilli()
	p.addPurge("r", "bad", until, t0)
	p.addDelete("r", []uint64{7}, t0)
	msg := func() []protocol.Message {
		return []protocol.Message{{Seq: 1, UID: "bad", TS: until - 1}, {Seq: 2, UID: "bad", TS: until}, {Seq: 7, UID: "ok", TS: until - 1}}
	}
	if ms := msg(); p.mark("r", ms) != 2 || !ms[0].Deleted || ms[1].Deleted || !ms[2].Deleted {
		t.Fatalf("mark: %+v, want only the purged message before until and the deleted seq 7", ms)
	}
	if p.mark("other", msg()) != 0 {
		t.Fatal("a retraction of room r marked a message of another room")
	}
	p.addPurge("r2", "x", until, t0.Add(purgeKeep+time.Second)) // expires the first two
	if ms := msg(); p.mark("r", ms) != 0 {
		t.Fatalf("retraction still applied after purgeKeep: %+v", ms)
	}
	for i := range maxPurgeMarks + 10 {
		p.addPurge("r3", "u", until, t0.Add(purgeKeep+time.Second+time.Duration(i)))
	}
	if n := p.n.Load(); n != maxPurgeMarks {
		t.Fatalf("%d marks held, want at most %d", n, maxPurgeMarks)
	}
	seqs := make([]uint64, 100)
	for i := range seqs {
		seqs[i] = uint64(i + 1)
	}
	p.addDelete("r4", seqs, t0.Add(purgeKeep+2*time.Second))
	if n := p.n.Load(); n != maxPurgeMarks {
		t.Fatalf("%d marks held after a delete of 100 seqs, want at most %d", n, maxPurgeMarks)
	}
	if ms := []protocol.Message{{Seq: 1}, {Seq: 100}, {Seq: 101}}; p.mark("r4", ms) != 2 || ms[2].Deleted {
		t.Fatalf("mark after the delete of seqs 1-100: %+v", ms)
	}
}

func seqsOf(ms []protocol.Message) []uint64 {
	out := []uint64{}
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

// joinRoom joins room on gw and returns the viewer and its history frame.
func joinRoom(t *testing.T, gw *testGW, room string) (*wstest.Conn, protocol.ServerFrame) {
	t.Helper()
	v := dialRaw(t, gw.addr)
	if code := v.Upgrade("/ws?room="+room, ""); code != 101 {
		t.Fatal(code)
	}
	v.NextOp(protocol.OpJoined, 5*time.Second)
	return v, v.NextOp(protocol.OpHistory, 5*time.Second)
}

// publishControl puts ev on gw's control stream.
func publishControl(t *testing.T, gw *testGW, ev bus.Control) {
	t.Helper()
	b, _ := bus.Marshal(ev)
	if err := gw.bus.Publisher(bus.StreamControl).Publish(context.Background(), bus.Record{Key: ev.Room, Value: b}); err != nil {
		t.Fatal(err)
	}
}

// publishBatch puts a batch of msgs for room on gw's dispatch stream.
func publishBatch(t *testing.T, gw *testGW, room string, msgs ...protocol.Message) {
	t.Helper()
	if err := gw.bus.Publisher(bus.StreamDispatch).Publish(context.Background(),
		bus.Record{Key: room, Value: protocol.EncodeBatch(room, msgs)}); err != nil {
		t.Fatal(err)
	}
}

// TestDeleteBeforeInFlightMessage: a moderator's delete reaches the
// gateway before the message it names (the history writer reads the
// accepted stream directly, gateways one hop later through dispatch).
// The message is never shown live nor to joiners; the others are.
func TestDeleteBeforeInFlightMessage(t *testing.T) {
	gw := startGW(t, nil)
	now := time.Now().UnixMilli()
	v, _ := joinRoom(t, gw, "dg")
	publishBatch(t, gw, "dg", protocol.Message{Seq: 1, UID: "ok", Text: "hi", TS: now - 500})
	if b := v.NextOp(protocol.OpBatch, 5*time.Second); !slices.Equal(seqsOf(b.Msgs), []uint64{1}) {
		t.Fatalf("first batch %v", seqsOf(b.Msgs))
	}
	publishControl(t, gw, bus.Control{Op: bus.ControlDelete, Room: "dg", UID: "bad", Seqs: []uint64{2}})
	if d := v.NextOp(protocol.OpDelete, 5*time.Second); !slices.Equal(d.Seqs, []uint64{2}) {
		t.Fatalf("delete frame %+v", d)
	}
	publishBatch(t, gw, "dg", protocol.Message{Seq: 2, UID: "bad", Text: "deleted already", TS: now - 100},
		protocol.Message{Seq: 3, UID: "ok", Text: "fine", TS: now - 50})
	b := v.NextOp(protocol.OpBatch, 5*time.Second)
	if got := seqsOf(b.Msgs); !slices.Equal(got, []uint64{3}) || b.From != 2 || b.To != 3 {
		t.Fatalf("batch after the delete: seqs %v covering %d-%d; want [3] covering 2-3", got, b.From, b.To)
	}
	if _, h := joinRoom(t, gw, "dg"); !slices.Equal(seqsOf(h.Msgs), []uint64{1, 3}) {
		t.Fatalf("joiner's history %v, want [1 3]", seqsOf(h.Msgs))
	}
}

// TestDeleteBeforeStoreFill: a delete reaches a gateway with no viewer of
// the room (nothing to mark), and the store does not have it applied
// (the history writer persisted the message after the delete). The first
// joiner's history, loaded from the store, does not show the message.
func TestDeleteBeforeStoreFill(t *testing.T) {
	store := history.NewMemory(history.MemoryConfig{})
	gw := startGW(t, func(c *Config) { c.History = store })
	now := time.Now().UnixMilli()
	publishControl(t, gw, bus.Control{Op: bus.ControlDelete, Room: "df", UID: "bad", Seqs: []uint64{2}})
	if err := store.Append(context.Background(), []protocol.Message{
		{Room: "df", Seq: 1, UID: "ok", Text: "hi", TS: now - 500},
		{Room: "df", Seq: 2, UID: "bad", Text: "deleted already", TS: now - 100},
		{Room: "df", Seq: 3, UID: "ok", Text: "fine", TS: now - 50}}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for i := 1; gw.s.retracts.n.Load() == 0; i++ { // the gateway reads the control stream
		if time.Now().After(deadline) {
			t.Fatal("the delete was not remembered")
		}
		time.Sleep(10 * time.Millisecond)
		if i%50 == 0 {
			// Published before the gateway's control reader was
			// subscribed (it reads from the end): again, as a
			// moderator's retry would (a delete is idempotent).
			publishControl(t, gw, bus.Control{Op: bus.ControlDelete, Room: "df", UID: "bad", Seqs: []uint64{2}})
		}
	}
	if _, h := joinRoom(t, gw, "df"); !slices.Equal(seqsOf(h.Msgs), []uint64{1, 3}) {
		t.Fatalf("joiner's history %v, want [1 3]", seqsOf(h.Msgs))
	}
}

// TestPurgeMarksRingOnlyBeforeUntil: a purge that reaches the gateway
// after the user's messages retracts from the ring only those with a ts
// before its until: a message sent once a time-out ended stays in
// joiners' history.
func TestPurgeMarksRingOnlyBeforeUntil(t *testing.T) {
	gw := startGW(t, nil)
	now := time.Now().UnixMilli()
	until := now - 1000 // the time-out ended a second ago
	v, _ := joinRoom(t, gw, "pu")
	publishBatch(t, gw, "pu", protocol.Message{Seq: 1, UID: "t", Text: "before", TS: until - 500},
		protocol.Message{Seq: 2, UID: "t", Text: "after the timeout", TS: now})
	v.NextOp(protocol.OpBatch, 5*time.Second)
	publishControl(t, gw, bus.Control{Op: bus.ControlPurge, Room: "pu", UID: "t", Until: until})
	v.NextOp(protocol.OpPurge, 5*time.Second)
	if _, h := joinRoom(t, gw, "pu"); !slices.Equal(seqsOf(h.Msgs), []uint64{2}) {
		t.Fatalf("joiner's history after the purge (until %d): %v, want [2]", until, seqsOf(h.Msgs))
	}
}

// TestUnbanEndsPurgeOnGateway: a ban's purge reaches 5 s past the ban and
// the ban is lifted at once. The user's messages sent after the unban are
// shown live and to joiners; those sent before it stay retracted, and a
// purge of another user is untouched.
func TestUnbanEndsPurgeOnGateway(t *testing.T) {
	gw := startGW(t, nil)
	join := func() (*wstest.Conn, protocol.ServerFrame) {
		v := dialRaw(t, gw.addr)
		if code := v.Upgrade("/ws?room=ub", ""); code != 101 {
			t.Fatal(code)
		}
		v.NextOp(protocol.OpJoined, 5*time.Second)
		return v, v.NextOp(protocol.OpHistory, 5*time.Second)
	}
	control := func(ev bus.Control) {
		t.Helper()
		v, _ := bus.Marshal(ev)
		if err := gw.bus.Publisher(bus.StreamControl).Publish(context.Background(), bus.Record{Key: "ub", Value: v}); err != nil {
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
	now := time.Now().UnixMilli()
	control(bus.Control{Op: bus.ControlPurge, Room: "ub", UID: "oops", Until: now + 5000})
	control(bus.Control{Op: bus.ControlPurge, Room: "ub", UID: "troll", Until: now + 5000})
	v.NextOp(protocol.OpPurge, 5*time.Second)
	v.NextOp(protocol.OpPurge, 5*time.Second)
	control(bus.Control{Op: bus.ControlUnban, Room: "ub", UID: "oops", Until: now + 1000})
	// A notice after the unban: once it is seen, the unban was applied.
	control(bus.Control{Op: bus.ControlNotice, Room: "ub", Text: "sync"})
	v.NextOp(protocol.OpNotice, 5*time.Second)
	if err := gw.bus.Publisher(bus.StreamDispatch).Publish(context.Background(), bus.Record{Key: "ub", Value: protocol.EncodeBatch("ub", []protocol.Message{
		{Seq: 1, UID: "oops", Text: "before the unban", TS: now + 500},
		{Seq: 2, UID: "oops", Text: "after the unban", TS: now + 1000},
		{Seq: 3, UID: "troll", Text: "still banned", TS: now + 1500},
	})}); err != nil {
		t.Fatal(err)
	}
	if b := v.NextOp(protocol.OpBatch, 5*time.Second); !slices.Equal(seqsOf(b.Msgs), []uint64{2}) {
		t.Fatalf("live batch after the unban %v, want [2]", seqsOf(b.Msgs))
	}
	if _, h := join(); !slices.Equal(seqsOf(h.Msgs), []uint64{2}) {
		t.Fatalf("joiner's history %v, want [2]", seqsOf(h.Msgs))
	}
}
