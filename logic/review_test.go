package logic

// Tests an outside review wrote to break the fence (claim.go, pkg/bus/
// fence.go); each failed on the first version of it and passes now. Their
// comments tell the interleaving each one drives.

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/presence"
)

// markerGate holds the first fence-marker append to accepted until gate
// is closed: a worker paused between Fetch and its claim (GC, SIGSTOP, or
// simply claiming many partitions one after another at startup).
type markerGate struct {
	*bus.Memory
	once    sync.Once
	entered chan struct{}
	gate    chan struct{}
}

func (g *markerGate) Append(ctx context.Context, stream string, p int, recs ...bus.Record) (int64, error) {
	if _, marker := bus.ParseFence(recs[0].Value); stream == bus.StreamAccepted && marker {
		first := false
		g.once.Do(func() { first = true })
		if first {
			close(g.entered)
			<-g.gate
		}
	}
	return g.Memory.Append(ctx, stream, p, recs...)
}

func sendIngest(t *testing.T, m *bus.Memory, in bus.Ingest) {
	t.Helper()
	v, _ := bus.Marshal(in)
	if err := m.Publisher(bus.StreamIngest).Publish(context.Background(), bus.Record{Key: in.Room, Value: v}); err != nil {
		t.Fatal(err)
	}
}

// TestReviewStaleClaimAfterNewOwner: A fetched X in generation 1 and is
// paused before its claim marker lands; B joins (generation 2), claims p,
// rejects X, commits, answers. Then A's marker lands after B's: the latest
// marker wins, so A's records are the valid ones and B's are not. A
// accepts X (its moderation differs) and acks it: one send, reject then
// ack. B then loses p on its next write and, with no further rebalance,
// never serves p again.
func TestReviewStaleClaimAfterNewOwner(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 4})
	room := roomsIn(t, mem, true, 1)[0] // B, the second member, will own it
	mg := &markerGate{Memory: mem, entered: make(chan struct{}), gate: make(chan struct{})}
	replies := followReplies(t, mem, "gw1")

	lenient, _ := moderation.New(moderation.Config{})
	startWorker(t, mg, lenient, Config{ID: "A"})
	sendIngest(t, mem, bus.Ingest{Room: room, ID: "X", UID: "ux", Text: "blockme please", Role: "viewer", Gateway: "gw1", Conn: 1})
	select {
	case <-mg.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("A never claimed")
	}
	strict, _ := moderation.New(moderation.Config{})
	if err := strict.SetRoomKeywords(room, moderation.KeywordList{Words: []string{"blockme"}}); err != nil {
		t.Fatal(err)
	}
	startWorker(t, mem, strict, Config{ID: "B"})
	waitUntil(t, "B's answer to X", func() bool { return len(replies.get("X")) > 0 })
	close(mg.gate) // A's claim marker lands after B's
	time.Sleep(300 * time.Millisecond)

	if got := replies.get("X"); len(got) != 1 {
		t.Errorf("replies to X = %+v; want exactly one answer", got)
	}
	sendIngest(t, mem, bus.Ingest{Room: room, ID: "Y", UID: "uy", Text: "hello", Role: "viewer", Gateway: "gw1", Conn: 2})
	if !eventually(3*time.Second, func() bool { return len(replies.get("Y")) > 0 }) {
		t.Errorf("Y (sent after the race) got no answer in 3 s: the partition stalls")
	}
}

// TestReviewStaleHeldEntryDoubleBroadcast: A holds X; the partition moves
// to B, where the moderator's approval (a trusted re-send) is accepted
// with seq 1 and stored in the durable dedupe; the partition comes back to
// A. A's memory still says "held", so lookupDurable is skipped and the
// takeover scan does not overwrite it: a second approval (the first one
// timed out and was requeued) is decided anew and X is broadcast twice.
func TestReviewStaleHeldEntryDoubleBroadcast(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	room := roomsIn(t, mem, true, 1)[0] // the second member owns it
	replies := followReplies(t, mem, "gw1")
	store := presence.NewMemoryDedupe(0)
	engA, _ := moderation.New(moderation.Config{})
	if err := engA.SetRoomKeywords(room, moderation.KeywordList{Words: []string{"holdme"}, Action: moderation.ActionHold}); err != nil {
		t.Fatal(err)
	}
	startWorker(t, mem, engA, Config{ID: "A", Dedupe: store})
	x := bus.Ingest{Room: room, ID: "X", UID: "ux", Text: "holdme", Role: "viewer", Gateway: "gw1", Conn: 1}
	sendIngest(t, mem, x)
	waitUntil(t, "X held", func() bool { r := replies.get("X"); return len(r) == 1 && r[0].Held })

	engB, _ := moderation.New(moderation.Config{})
	stopB := startWorker(t, mem, engB, Config{ID: "B", Dedupe: store})
	time.Sleep(200 * time.Millisecond) // B joined: the room's partition is B's
	approved := x
	approved.Trusted = true
	sendIngest(t, mem, approved) // the moderator approves
	waitUntil(t, "approval answered", func() bool { return len(replies.get("X")) == 2 })
	stopB() // the partition goes back to A
	time.Sleep(200 * time.Millisecond)
	sendIngest(t, mem, approved) // the approval is retried (first timed out, requeued)
	waitUntil(t, "second approval answered", func() bool { return len(replies.get("X")) == 3 })

	got := replies.get("X")
	t.Logf("replies to X: %+v", got)
	n := 0
	for _, m := range validAccepted(t, mem) {
		if m.ID == "X" {
			n++
		}
	}
	if n != 1 || got[1].Seq != got[2].Seq {
		t.Fatalf("X accepted %d times (valid records); approval seqs %d then %d", n, got[1].Seq, got[2].Seq)
	}
}

// lateBus makes the first append of a kind fail with a timeout: for data
// records it lands first (the broker wrote it, the response was lost); for
// a marker it lands only when land is called (a request delayed past the
// client's timeout).
type lateBus struct {
	*bus.Memory
	marker  bool // which kind to disturb
	once    sync.Once
	mu      sync.Mutex
	pending []bus.Record
	part    int
}

func (b *lateBus) Append(ctx context.Context, stream string, p int, recs ...bus.Record) (int64, error) {
	_, marker := bus.ParseFence(recs[0].Value)
	if stream == bus.StreamAccepted && marker == b.marker {
		first := false
		b.once.Do(func() { first = true })
		if first {
			if !marker {
				if _, err := b.Memory.Append(ctx, stream, p, recs...); err != nil {
					return 0, err
				}
			} else {
				b.mu.Lock()
				b.pending, b.part = recs, p
				b.mu.Unlock()
			}
			return 0, context.DeadlineExceeded
		}
	}
	return b.Memory.Append(ctx, stream, p, recs...)
}

func (b *lateBus) land(t *testing.T) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if _, err := b.Memory.Append(context.Background(), bus.StreamAccepted, b.part, b.pending...); err != nil {
		t.Fatal(err)
	}
}

// TestReviewTimedOutAppendLeavesValidDuplicate: an append whose response
// is lost is retried under the same claim; verify calls the first copy
// "stale records of older claims, invalid anyway", but both copies are
// valid: one message stands twice, and valid seqs of the room are not
// strictly increasing in log order (docs/deployment.md, fence.go).
func TestReviewTimedOutAppendLeavesValidDuplicate(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	room := roomsIn(t, mem, false, 1)[0]
	lb := &lateBus{Memory: mem}
	replies := followReplies(t, mem, "gw1")
	eng, _ := moderation.New(moderation.Config{})
	startWorker(t, lb, eng, Config{ID: "A"})
	sendIngest(t, mem, bus.Ingest{Room: room, ID: "X", UID: "ux", Text: "hi", Role: "viewer", Gateway: "gw1", Conn: 1})
	waitUntil(t, "X's ack", func() bool { return len(replies.get("X")) == 1 })
	var seqs []uint64
	for _, m := range validAccepted(t, mem) {
		seqs = append(seqs, m.Seq)
	}
	if len(seqs) != 1 {
		t.Fatalf("valid accepted seqs of the room = %v; want one record", seqs)
	}
}

// TestReviewLateMarkerStallsOwner: the first marker append times out and
// lands only after the retried marker and the first batch; the owner then
// finds "another worker's marker" (its own) and skips the partition until
// the next generation, which on a steady group never comes.
func TestReviewLateMarkerStallsOwner(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	room := roomsIn(t, mem, false, 1)[0]
	lb := &lateBus{Memory: mem, marker: true}
	replies := followReplies(t, mem, "gw1")
	eng, _ := moderation.New(moderation.Config{})
	startWorker(t, lb, eng, Config{ID: "A"})
	sendIngest(t, mem, bus.Ingest{Room: room, ID: "X", UID: "ux", Text: "hi", Role: "viewer", Gateway: "gw1", Conn: 1})
	waitUntil(t, "X's ack", func() bool { return len(replies.get("X")) == 1 })
	lb.land(t) // the timed-out marker request lands now
	sendIngest(t, mem, bus.Ingest{Room: room, ID: "Y", UID: "uy", Text: "hi", Role: "viewer", Gateway: "gw1", Conn: 2})
	if !eventually(5*time.Second, func() bool { return len(replies.get("Y")) > 0 }) {
		t.Fatalf("Y got no answer in 5 s: the only worker gave its partition up and nothing rebalances")
	}
}

// TestReviewHeldRetryAfterTakeover: docs/protocol.md promises a retry of a
// held id the same answer (held) for 10 minutes. Held ids are neither in
// the accepted stream (scan) nor in the durable dedupe, so after a
// takeover a retry is decided afresh by the new owner, whose moderation
// state differs (flood and spam holds are per-worker state): the held
// message is published while its card waits for a moderator.
func TestReviewHeldRetryAfterTakeover(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	room := roomsIn(t, mem, true, 1)[0]
	replies := followReplies(t, mem, "gw1")
	store := presence.NewMemoryDedupe(0)
	engA, _ := moderation.New(moderation.Config{})
	if err := engA.SetRoomKeywords(room, moderation.KeywordList{Words: []string{"holdme"}, Action: moderation.ActionHold}); err != nil {
		t.Fatal(err)
	}
	startWorker(t, mem, engA, Config{ID: "A", Dedupe: store})
	x := bus.Ingest{Room: room, ID: "X", UID: "ux", Text: "holdme", Role: "viewer", Gateway: "gw1", Conn: 1}
	sendIngest(t, mem, x)
	waitUntil(t, "X held", func() bool { r := replies.get("X"); return len(r) == 1 && r[0].Held })
	engB, _ := moderation.New(moderation.Config{})
	startWorker(t, mem, engB, Config{ID: "B", Dedupe: store})
	time.Sleep(200 * time.Millisecond)
	sendIngest(t, mem, x) // the sender's retry
	waitUntil(t, "the retry's answer", func() bool { return len(replies.get("X")) == 2 })
	if got := replies.get("X"); !got[1].Held || got[1].Seq != 0 {
		t.Fatalf("retry of a held id answered %+v; want held again", got[1])
	}
}

// commitGate holds the first ingest Commit of the worker using it until
// gate is closed: a worker paused after its accepted write, before its
// commit.
type commitGate struct {
	*bus.Memory
	once    sync.Once
	entered chan struct{}
	gate    chan struct{}
}

type gatedConsumer struct {
	bus.Consumer
	g *commitGate
}

func (c gatedConsumer) Generation() int64 { return c.Consumer.(bus.Rebalancer).Generation() }

func (c gatedConsumer) Commit(ctx context.Context, recs ...bus.Record) error {
	first := false
	c.g.once.Do(func() { first = true })
	if first {
		close(c.g.entered)
		<-c.g.gate
	}
	return c.Consumer.Commit(ctx, recs...)
}

func (g *commitGate) Consumer(stream string, opts bus.ConsumerOptions) (bus.Consumer, error) {
	c, err := g.Memory.Consumer(stream, opts)
	if err != nil || stream != bus.StreamIngest {
		return c, err
	}
	return gatedConsumer{Consumer: c, g: g}, nil
}

// TestReviewEmptyIDBroadcastTwice: logic's package comment says a record
// redelivered after its accepted write "is answered from dedupe (same
// seq) ... nothing is broadcast twice". A send without an id (a raw
// ingest producer) is not: A wrote it, its commit is refused because B
// joined, B decides it again with the next seq, although the accepted
// record carries its ingest offset ("in") that would tell.
func TestReviewEmptyIDBroadcastTwice(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 4})
	room := roomsIn(t, mem, true, 1)[0]
	cg := &commitGate{Memory: mem, entered: make(chan struct{}), gate: make(chan struct{})}
	eng, _ := moderation.New(moderation.Config{})
	startWorker(t, cg, eng, Config{ID: "A"})
	sendIngest(t, mem, bus.Ingest{Room: room, UID: "u", Text: "once", Role: "service", Trusted: true})
	select {
	case <-cg.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("A never committed")
	}
	eng2, _ := moderation.New(moderation.Config{})
	startWorker(t, mem, eng2, Config{ID: "B"})
	time.Sleep(2 * time.Second) // B has claimed and decided
	close(cg.gate)
	time.Sleep(200 * time.Millisecond)
	var seqs []uint64
	for _, m := range validAccepted(t, mem) {
		seqs = append(seqs, m.Seq)
	}
	if len(seqs) != 1 {
		t.Fatalf("one send without id stands at seqs %v", seqs)
	}
}
