package logic

// A second outside review's attempts to break the fence (claim.go).

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/bus"
)

// TestReview2RedoChargesModerationTwice: a worker fenced by a marker that
// is not the owner's (here its own timed-out marker landing late; the same
// happens when a stale worker's claim lands after the owner's) but still
// owning the partition decides the batch again with the moderation state
// its first, never-announced decision already changed: with the builtin
// room settings (duplicate window 30 s) every viewer send of the redone
// batch is rejected as a duplicate of itself.
func TestReview2RedoChargesModerationTwice(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	room := roomsIn(t, mem, false, 1)[0]
	lb := &lateBus{Memory: mem, marker: true}
	replies := followReplies(t, mem, "gw1")
	eng, _ := moderation.New(moderation.Config{})
	startWorker(t, lb, eng, Config{ID: "A"})
	sendIngest(t, mem, bus.Ingest{Room: room, ID: "X", UID: "ux", Text: "hi", Role: "viewer", Gateway: "gw1", Conn: 1})
	waitUntil(t, "X's ack", func() bool { return len(replies.get("X")) == 1 })
	lb.land(t) // the timed-out marker request lands now: Y's write is fenced, Y redone
	sendIngest(t, mem, bus.Ingest{Room: room, ID: "Y", UID: "uy", Text: "hello there", Role: "viewer", Gateway: "gw1", Conn: 2})
	waitUntil(t, "Y's answer", func() bool { return len(replies.get("Y")) == 1 })
	if got := replies.get("Y")[0]; got.Seq == 0 {
		t.Fatalf("Y, sent once, answered %+v: rejected by the worker's own discarded first decision", got)
	}
}

// TestReview2StaleClaimRedoRejectsOwnersBatch: the SIGSTOP case of issue
// 14. A is paused before its claim marker lands; B owns the partition and
// serves it. A resumes, its marker lands and its proof fails; B's next
// write is fenced by A's marker, B still owns the partition and redoes
// the batch with the moderation state its first decision changed: the
// viewer's one send is rejected as a duplicate of itself.
func TestReview2StaleClaimRedoRejectsOwnersBatch(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 4})
	room := roomsIn(t, mem, true, 1)[0] // B, the second member, will own it
	mg := &markerGate{Memory: mem, entered: make(chan struct{}), gate: make(chan struct{})}
	gb := &gateBus{Memory: mem, entered: make(chan struct{}), gate: make(chan struct{})}
	replies := followReplies(t, mem, "gw1")
	engA, _ := moderation.New(moderation.Config{})
	startWorker(t, mg, engA, Config{ID: "A"})
	sendIngest(t, mem, bus.Ingest{Room: room, ID: "W", UID: "uw", Text: "first", Role: "viewer", Gateway: "gw1", Conn: 1})
	select {
	case <-mg.entered: // A is paused before its claim marker lands
	case <-time.After(5 * time.Second):
		t.Fatal("A never claimed")
	}
	engB, _ := moderation.New(moderation.Config{})
	startWorker(t, gb, engB, Config{ID: "B"})
	// B claims, decides W, and is held on its first data write; A's marker
	// lands now, after B's.
	select {
	case <-gb.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("B never wrote")
	}
	close(mg.gate)
	time.Sleep(100 * time.Millisecond) // A's marker landed, A's proof failed
	close(gb.gate)
	waitUntil(t, "W's answer", func() bool { return len(replies.get("W")) > 0 })
	time.Sleep(200 * time.Millisecond)
	got := replies.get("W")
	t.Logf("replies to W: %+v", got)
	if len(got) != 1 || got[0].Seq == 0 {
		t.Fatalf("W, sent once, answered %+v; want one ack", got)
	}
}

// failCommitBus makes the first ingest Commit fail with a plain error (a
// broken coordinator connection, a timeout): not bus.ErrNotOwner.
type failCommitBus struct {
	*bus.Memory
	once sync.Once
}

type failCommitConsumer struct {
	bus.Consumer
	b *failCommitBus
}

func (c failCommitConsumer) Generation() int64 { return c.Consumer.(bus.Rebalancer).Generation() }

func (c failCommitConsumer) Prove(ctx context.Context, p int, off int64) error {
	return c.Consumer.(bus.Prover).Prove(ctx, p, off)
}

func (c failCommitConsumer) Commit(ctx context.Context, recs ...bus.Record) error {
	first := false
	c.b.once.Do(func() { first = true })
	if first {
		return errors.New("commit: i/o timeout")
	}
	return c.Consumer.Commit(ctx, recs...)
}

func (b *failCommitBus) Consumer(stream string, opts bus.ConsumerOptions) (bus.Consumer, error) {
	c, err := b.Memory.Consumer(stream, opts)
	if err != nil || stream != bus.StreamIngest {
		return c, err
	}
	return failCommitConsumer{Consumer: c, b: b}, nil
}

// TestReview2FailedCommitLosesRejects: a commit that fails with anything
// but bus.ErrNotOwner withholds the batch's rejects and held answers
// ("the partition's next owner decides those records again"), but there
// is no next owner: the same worker goes on, its next commit moves the
// offset past them, and the send is never answered (a held message never
// reaches the moderators either).
func TestReview2FailedCommitLosesRejects(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	room := roomsIn(t, mem, false, 1)[0]
	fb := &failCommitBus{Memory: mem}
	replies := followReplies(t, mem, "gw1")
	eng, _ := moderation.New(moderation.Config{})
	if err := eng.SetRoomKeywords(room, moderation.KeywordList{Words: []string{"blockme"}}); err != nil {
		t.Fatal(err)
	}
	startWorker(t, fb, eng, Config{ID: "A"})
	sendIngest(t, mem, bus.Ingest{Room: room, ID: "R", UID: "ur", Text: "blockme", Role: "viewer", Gateway: "gw1", Conn: 1})
	time.Sleep(300 * time.Millisecond)
	sendIngest(t, mem, bus.Ingest{Room: room, ID: "Z", UID: "uz", Text: "fine", Role: "viewer", Gateway: "gw1", Conn: 2})
	waitUntil(t, "Z's answer", func() bool { return len(replies.get("Z")) == 1 })
	time.Sleep(300 * time.Millisecond)
	if got := replies.get("R"); len(got) != 1 {
		t.Fatalf("R answered %+v; want its reject once", got)
	}
}

// TestReview2RefusedCommitRedecidesHeldAsDuplicate: no fence involved. A
// holds X (keyword hold) while B joins the group; A's commit is refused
// (bus.ErrNotOwner), so "held" is not announced and the record comes again
// in the new generation, where the partition is still A's. A decides it
// again with the engine that already remembered the text: the viewer gets
// "blocked: duplicate" and no moderator ever sees the held card. The same
// happens to every held or rate-limited send in flight at a rebalance that
// leaves its partition where it was.
func TestReview2RefusedCommitRedecidesHeldAsDuplicate(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 4})
	room := roomsIn(t, mem, false, 1)[0] // stays with A, the first member
	replies := followReplies(t, mem, "gw1")
	eng, _ := moderation.New(moderation.Config{})
	if err := eng.SetRoomKeywords(room, moderation.KeywordList{Words: []string{"holdme"}, Action: moderation.ActionHold}); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	var once sync.Once
	slow := checkerFunc(func(in moderation.Input) moderation.Verdict {
		once.Do(func() { <-gate })
		return eng.Check(in)
	})
	a, err := New(Config{Bus: mem, Moderation: slow, ID: "A", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	sendIngest(t, mem, bus.Ingest{Room: room, ID: "X", UID: "ux", Text: "holdme please", Role: "viewer", Gateway: "gw1", Conn: 1})
	time.Sleep(100 * time.Millisecond) // A fetched X and waits in moderation
	engB, _ := moderation.New(moderation.Config{})
	startWorker(t, mem, engB, Config{ID: "B"})
	time.Sleep(100 * time.Millisecond)
	close(gate)
	waitUntil(t, "X's answer", func() bool { return len(replies.get("X")) > 0 })
	time.Sleep(200 * time.Millisecond)
	if got := replies.get("X"); len(got) != 1 || !got[0].Held {
		t.Fatalf("X, sent once, answered %+v; want held", got)
	}
}
