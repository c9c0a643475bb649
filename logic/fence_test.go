package logic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// gateBus holds the first data append to the accepted stream until gate
// is closed, telling entered when it got there: a worker stopped mid-batch
// (a GC pause, SIGSTOP, a slow broker) between deciding and publishing.
type gateBus struct {
	*bus.Memory
	once    sync.Once
	entered chan struct{}
	gate    chan struct{}
}

func (g *gateBus) Append(ctx context.Context, stream string, p int, recs ...bus.Record) (int64, error) {
	if _, marker := bus.ParseFence(recs[0].Value); stream == bus.StreamAccepted && !marker {
		first := false
		g.once.Do(func() { first = true })
		if first {
			close(g.entered)
			<-g.gate
		}
	}
	return g.Memory.Append(ctx, stream, p, recs...)
}

// roomsIn returns n room names whose records the memory bus puts in
// partitions with the given parity (of 2 members, the second owns the
// odd ones).
func roomsIn(t *testing.T, m *bus.Memory, odd bool, n int) []string {
	t.Helper()
	ctx := context.Background()
	c, err := m.Consumer("probe", bus.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var rooms []string
	for i := 0; len(rooms) < n; i++ {
		r := fmt.Sprintf("r%d", i)
		if err := m.Publisher("probe").Publish(ctx, bus.Record{Key: r}); err != nil {
			t.Fatal(err)
		}
		recs, err := c.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if (recs[0].Partition%2 == 1) == odd {
			rooms = append(rooms, r)
		}
	}
	return rooms
}

// validAccepted returns every valid accepted message by the fence rule.
func validAccepted(t *testing.T, m *bus.Memory) []protocol.Message {
	t.Helper()
	ctx := context.Background()
	n, _ := m.Partitions(ctx, bus.StreamAccepted)
	var out []protocol.Message
	for p := range n {
		recs, err := m.ReadRange(ctx, bus.StreamAccepted, p, 0, 1<<40)
		if err != nil {
			t.Fatal(err)
		}
		ff := bus.NewFenceFilter(m, bus.StreamAccepted)
		for _, r := range recs {
			if ok, err := ff.Valid(ctx, r); err != nil || !ok {
				continue
			}
			var msg protocol.Message
			if err := bus.Unmarshal(r.Value, &msg); err != nil {
				t.Fatal(err)
			}
			out = append(out, msg)
		}
	}
	return out
}

func startWorker(t *testing.T, b bus.Bus, eng Checker, cfg Config) context.CancelFunc {
	t.Helper()
	cfg.Bus, cfg.Moderation = b, eng
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	stop := func() { cancel(); <-done }
	t.Cleanup(stop)
	return cancel
}

// collectReplies gathers replies to gateway gw until stop is called.
type replyLog struct {
	mu   sync.Mutex
	byID map[string][]bus.Reply
}

func (r *replyLog) get(id string) []bus.Reply {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]bus.Reply(nil), r.byID[id]...)
}

func followReplies(t *testing.T, m *bus.Memory, gw string) *replyLog {
	t.Helper()
	return readReplies(t, m, bus.ConsumerOptions{Key: gw})
}

// readReplies records every reply b's reply stream carries for a consumer
// with opts, until the test ends.
func readReplies(t *testing.T, b bus.Bus, opts bus.ConsumerOptions) *replyLog {
	t.Helper()
	c, err := b.Consumer(bus.StreamReply, opts)
	if err != nil {
		t.Fatal(err)
	}
	rl := &replyLog{byID: map[string][]bus.Reply{}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			recs, err := c.Fetch(ctx)
			if err != nil {
				return
			}
			for _, r := range recs {
				var rp bus.Reply
				_ = bus.Unmarshal(r.Value, &rp)
				rl.mu.Lock()
				rl.byID[rp.ID] = append(rl.byID[rp.ID], rp)
				rl.mu.Unlock()
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done; _ = c.Close() })
	return rl
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	if !eventually(5*time.Second, cond) {
		t.Fatalf("timed out waiting for %s", what)
	}
}

// eventually reports whether cond held within d, asking every 5 ms.
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(5 * time.Millisecond)
	}
	return true
}

// TestStaleOwnerMidBatchIsFenced is issue 14's first finding, on the
// memory bus: worker A decides a batch (its moderation blocks X, so Y gets
// seq 1) and stalls before publishing; worker B joins, takes the partition
// over from the committed offset and decides the same records with its own
// state (X seq 1, Y seq 2); then A's write lands. The fence must make A's
// write invisible and A silent: one seq names one message, and each send
// gets exactly one answer, B's.
func TestStaleOwnerMidBatchIsFenced(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 4})
	room := roomsIn(t, mem, true, 1)[0] // B, the second member, will own it
	gb := &gateBus{Memory: mem, entered: make(chan struct{}), gate: make(chan struct{})}
	replies := followReplies(t, mem, "gw1")

	strict, _ := moderation.New(moderation.Config{})
	if err := strict.SetRoomKeywords(room, moderation.KeywordList{Words: []string{"blockme"}}); err != nil {
		t.Fatal(err)
	}
	startWorker(t, gb, strict, Config{ID: "A", Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)).With("w", "A")})
	// One publish: A fetches both records in one batch.
	var recs []bus.Record
	for _, in := range []bus.Ingest{
		{Room: room, ID: "X", UID: "ux", Text: "blockme please", Role: "viewer", Gateway: "gw1", Conn: 1},
		{Room: room, ID: "Y", UID: "uy", Text: "hello", Role: "viewer", Gateway: "gw1", Conn: 2},
	} {
		v, _ := bus.Marshal(in)
		recs = append(recs, bus.Record{Key: room, Value: v})
	}
	if err := mem.Publisher(bus.StreamIngest).Publish(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	select {
	case <-gb.entered: // A decided X rejected, Y seq 1, and is stuck publishing
	case <-time.After(5 * time.Second):
		t.Fatal("worker A never published")
	}

	lenient, _ := moderation.New(moderation.Config{})
	startWorker(t, mem, lenient, Config{ID: "B", Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)).With("w", "B")})
	waitUntil(t, "B's answers", func() bool { return len(replies.get("X")) > 0 && len(replies.get("Y")) > 0 })
	close(gb.gate) // A's write lands now, after B's claim
	time.Sleep(300 * time.Millisecond)

	for id, want := range map[string]uint64{"X": 1, "Y": 2} {
		got := replies.get(id)
		if len(got) != 1 || got[0].Seq != want || got[0].Code != "" {
			t.Errorf("replies to %s = %+v; want exactly one ack with seq %d (B's)", id, got, want)
		}
	}
	bySeq := map[uint64]string{}
	for _, m := range validAccepted(t, mem) {
		if prev, ok := bySeq[m.Seq]; ok && prev != m.ID {
			t.Errorf("seq %d names two messages: %s and %s", m.Seq, prev, m.ID)
		}
		bySeq[m.Seq] = m.ID
	}
	if bySeq[1] != "X" || bySeq[2] != "Y" || len(bySeq) != 2 {
		t.Errorf("valid accepted messages by seq = %v; want 1:X 2:Y", bySeq)
	}
}

// TestStaleRejectIsNotAnnounced: a worker that rejects a send (its rate
// limit was spent) while the partition moves must not send the reject,
// because the new owner decides the record again and accepts it: one send,
// one answer.
func TestStaleRejectIsNotAnnounced(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 4})
	room := roomsIn(t, mem, true, 1)[0]
	replies := followReplies(t, mem, "gw1")
	strict, _ := moderation.New(moderation.Config{})
	if err := strict.SetRoomKeywords(room, moderation.KeywordList{Words: []string{"blockme"}}); err != nil {
		t.Fatal(err)
	}
	// A's moderation holds the batch until B has joined: the batch is
	// decided in the old generation and committed after the new one began.
	held := make(chan struct{})
	slow := checkerFunc(func(in moderation.Input) moderation.Verdict {
		<-held
		return strict.Check(in)
	})
	a, err := New(Config{Bus: mem, Moderation: slow, ID: "A", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = a.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	v, _ := bus.Marshal(bus.Ingest{Room: room, ID: "Z", UID: "uz", Text: "blockme", Role: "viewer", Gateway: "gw1", Conn: 1})
	if err := mem.Publisher(bus.StreamIngest).Publish(context.Background(), bus.Record{Key: room, Value: v}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // A fetched Z and waits in moderation
	lenient, _ := moderation.New(moderation.Config{})
	startWorker(t, mem, lenient, Config{ID: "B"})
	waitUntil(t, "B's answer", func() bool { return len(replies.get("Z")) > 0 })
	close(held)
	time.Sleep(300 * time.Millisecond)
	if got := replies.get("Z"); len(got) != 1 || got[0].Seq != 1 {
		t.Fatalf("replies to Z = %+v; want only B's ack (seq 1)", got)
	}
}

type checkerFunc func(moderation.Input) moderation.Verdict

func (f checkerFunc) Check(in moderation.Input) moderation.Verdict { return f(in) }

// TestDedupeOutlivesTakeoverScan is issue 14's third finding: a retry of
// an accepted id that arrives after the partition changed owner, beyond
// what the new owner's takeover scan reads, must get its first seq back,
// not a new one. The shared dedupe store carries it.
func TestDedupeOutlivesTakeoverScan(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	room := roomsIn(t, mem, false, 1)[0]
	replies := followReplies(t, mem, "gw1")
	store := presence.NewMemoryDedupe(0)
	eng, _ := moderation.New(moderation.Config{})
	cfg := Config{Dedupe: store, ScanWindow: 8, SeqGroup: "hw-" + t.Name()}
	stopA := startWorker(t, mem, eng, cfg)
	pub := mem.Publisher(bus.StreamIngest)
	send := func(id, text string) {
		v, _ := bus.Marshal(bus.Ingest{Room: room, ID: id, UID: "u1", Text: text, Role: "service", Gateway: "gw1", Conn: 1})
		if err := pub.Publish(context.Background(), bus.Record{Key: room, Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	send("first", "the original")
	waitUntil(t, "the first ack", func() bool { return len(replies.get("first")) == 1 })
	for i := range 50 {
		send(fmt.Sprintf("m%d", i), "filler")
	}
	waitUntil(t, "the fillers", func() bool { return len(replies.get("m49")) == 1 })
	stopA()
	historyHas(t, mem, cfg.SeqGroup, 51) // the takeover scan starts after the retried id

	eng2, _ := moderation.New(moderation.Config{})
	startWorker(t, mem, eng2, cfg)
	send("first", "the original") // the sender's late retry
	waitUntil(t, "the retry's answer", func() bool { return len(replies.get("first")) == 2 })
	got := replies.get("first")
	if got[1].Seq != got[0].Seq {
		t.Fatalf("retry answered seq %d, first answer seq %d", got[1].Seq, got[0].Seq)
	}
	n := 0
	for _, m := range validAccepted(t, mem) {
		if m.ID == "first" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("id accepted %d times", n)
	}
}

// downDedupe is a dedupe store that fails while down is set.
type downDedupe struct {
	presence.Dedupe
	down atomic.Bool
}

func (d *downDedupe) Remember(ctx context.Context, key string, val []byte, ttl time.Duration) ([]byte, bool, error) {
	if d.down.Load() {
		return nil, false, errors.New("redis down")
	}
	return d.Dedupe.Remember(ctx, key, val, ttl)
}

func (d *downDedupe) Lookup(ctx context.Context, keys ...string) ([][]byte, error) {
	if d.down.Load() {
		return nil, errors.New("redis down")
	}
	return d.Dedupe.Lookup(ctx, keys...)
}

// TestDedupeWrittenAfterStoreOutage: an id acked while the dedupe store is
// down is written there once it is back, so a retry after a takeover
// beyond the scan still gets its first seq (the fault-schedule checker
// found ids acked during a Redis outage sequenced again).
func TestDedupeWrittenAfterStoreOutage(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	room := roomsIn(t, mem, false, 1)[0]
	replies := followReplies(t, mem, "gw1")
	store := &downDedupe{Dedupe: presence.NewMemoryDedupe(0)}
	store.down.Store(true)
	eng, _ := moderation.New(moderation.Config{})
	cfg := Config{Dedupe: store, ScanWindow: 8, SeqGroup: "hw-" + t.Name()}
	stopA := startWorker(t, mem, eng, cfg)
	send := func(id string) {
		v, _ := bus.Marshal(bus.Ingest{Room: room, ID: id, UID: "u1", Text: id, Role: "service", Gateway: "gw1", Conn: 1})
		if err := mem.Publisher(bus.StreamIngest).Publish(context.Background(), bus.Record{Key: room, Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	send("during-outage")
	waitUntil(t, "the ack", func() bool { return len(replies.get("during-outage")) == 1 })
	store.down.Store(false)
	key := dedupeKey(bus.Ingest{Room: room, UID: "u1", ID: "during-outage"})
	deadline := time.Now().Add(5 * time.Second)
	for {
		vals, _ := store.Lookup(context.Background(), key)
		if vals[0] != nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the entry missed during the outage was never written")
		}
		time.Sleep(50 * time.Millisecond)
	}
	for i := range 50 {
		send(fmt.Sprintf("m%d", i))
	}
	waitUntil(t, "the fillers", func() bool { return len(replies.get("m49")) == 1 })
	stopA()
	historyHas(t, mem, cfg.SeqGroup, 51) // the takeover scan starts after the retried id
	eng2, _ := moderation.New(moderation.Config{})
	startWorker(t, mem, eng2, cfg)
	send("during-outage")
	waitUntil(t, "the retry's answer", func() bool { return len(replies.get("during-outage")) == 2 })
	if got := replies.get("during-outage"); got[1].Seq != got[0].Seq {
		t.Fatalf("retry answered seq %d, first answer seq %d", got[1].Seq, got[0].Seq)
	}
}
