package historywriter_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/logic/historywriter"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

var errDown = errors.New("store down")

// flakyStore fails Append while down or while fails > 0 (counting down).
type flakyStore struct {
	history.Store
	fails   atomic.Int64
	down    atomic.Bool
	appends atomic.Int64
}

func (s *flakyStore) Append(ctx context.Context, msgs []protocol.Message) error {
	s.appends.Add(1)
	if s.down.Load() || s.fails.Add(-1) >= 0 {
		return errDown
	}
	return s.Store.Append(ctx, msgs)
}

// checkBus wraps a bus so every Commit checks that the committed records'
// messages are already in the store.
type checkBus struct {
	bus.Bus
	store   history.Store
	mu      sync.Mutex
	bad     []string
	commits atomic.Int64
}

func (b *checkBus) Consumer(stream string, opts bus.ConsumerOptions) (bus.Consumer, error) {
	c, err := b.Bus.Consumer(stream, opts)
	return &checkConsumer{Consumer: c, b: b}, err
}

func (b *checkBus) violations() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return slices.Clone(b.bad)
}

type checkConsumer struct {
	bus.Consumer
	b *checkBus
}

func (c *checkConsumer) Commit(ctx context.Context, recs ...bus.Record) error {
	c.b.commits.Add(1)
	for _, r := range recs {
		var m protocol.Message
		if bus.Unmarshal(r.Value, &m) != nil || m.Room == "" {
			continue
		}
		got, err := c.b.store.Range(ctx, m.Room, history.Filter{AfterSeq: m.Seq - 1, Limit: 1})
		if err != nil || len(got) != 1 || got[0].Seq != m.Seq {
			c.b.mu.Lock()
			c.b.bad = append(c.b.bad, fmt.Sprintf("%s/%d committed before it was stored", m.Room, m.Seq))
			c.b.mu.Unlock()
		}
	}
	return c.Consumer.Commit(ctx, recs...)
}

func publish(t *testing.T, b bus.Bus, rooms, perRoom int) {
	t.Helper()
	var recs []bus.Record
	for seq := 1; seq <= perRoom; seq++ {
		for r := range rooms {
			m := protocol.Message{Room: fmt.Sprintf("room-%d", r), Seq: uint64(seq), UID: "u", Text: "hi", TS: int64(seq)}
			v, err := bus.Marshal(m)
			if err != nil {
				t.Fatal(err)
			}
			recs = append(recs, bus.Record{Key: m.Room, Value: v})
		}
	}
	if err := b.Publisher(bus.StreamAccepted).Publish(context.Background(), recs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// stored reports whether every room holds exactly seqs 1..perRoom.
func stored(t *testing.T, s history.Store, rooms, perRoom int) bool {
	for r := range rooms {
		got, err := s.Range(context.Background(), fmt.Sprintf("room-%d", r), history.Filter{})
		if err != nil {
			t.Fatalf("Range: %v", err)
		}
		if len(got) != perRoom {
			return false
		}
		for i, m := range got {
			if m.Seq != uint64(i+1) {
				t.Fatalf("room-%d: seqs out of order or duplicated at %d: %d", r, i, m.Seq)
			}
		}
	}
	return true
}

type writerRig struct {
	bus   *bus.Memory
	check *checkBus
	mem   *history.Memory
	store *flakyStore
}

func newRig() *writerRig {
	mb := bus.NewMemory(bus.MemoryConfig{Partitions: 4, MaxFetch: 64})
	mem := history.NewMemory(history.MemoryConfig{})
	fs := &flakyStore{Store: mem}
	return &writerRig{bus: mb, check: &checkBus{Bus: mb, store: mem}, mem: mem, store: fs}
}

func (r *writerRig) writer(t *testing.T, cfg historywriter.Config) *historywriter.Writer {
	t.Helper()
	cfg.Bus, cfg.Store = r.check, r.store
	if cfg.FlushInterval == 0 {
		cfg.FlushInterval = 10 * time.Millisecond
	}
	cfg.MinBackoff, cfg.MaxBackoff = time.Millisecond, 8*time.Millisecond
	cfg.Logger = slog.New(slog.DiscardHandler)
	w, err := historywriter.New(cfg)
	if err != nil {
		t.Fatalf("NewWriter: %v", err)
	}
	return w
}

// run starts w and returns a func that stops it and returns Run's error.
func run(w *historywriter.Writer) (stop func() error) {
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() { errc <- w.Run(ctx) }()
	return sync.OnceValue(func() error {
		cancel()
		return <-errc
	})
}

// pending returns how many records group would read next.
func pending(t *testing.T, b bus.Bus, group string) int {
	t.Helper()
	c, err := b.Consumer(bus.StreamAccepted, bus.ConsumerOptions{Group: group})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	n := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		recs, err := c.Fetch(ctx)
		cancel()
		if err != nil {
			return n
		}
		n += len(recs)
	}
}

func TestNewWriterValidates(t *testing.T) {
	cases := []struct {
		name string
		cfg  historywriter.Config
		want error
	}{
		{"noBus", historywriter.Config{Store: history.NewMemory(history.MemoryConfig{})}, historywriter.ErrNoBus},
		{"noStore", historywriter.Config{Bus: bus.NewMemory(bus.MemoryConfig{})}, historywriter.ErrNoStore},
		{"ok", historywriter.Config{Bus: bus.NewMemory(bus.MemoryConfig{}), Store: history.NewMemory(history.MemoryConfig{})}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if _, err := historywriter.New(c.cfg); !errors.Is(err, c.want) {
				t.Fatalf("NewWriter = %v, want %v", err, c.want)
			}
		})
	}
}

func TestWriterRetriesAndCommitsAfterStore(t *testing.T) {
	const rooms, perRoom = 5, 300
	r := newRig()
	r.store.fails.Store(3)
	publish(t, r.bus, rooms, perRoom)
	// Redeliveries and junk: a duplicate of everything, one malformed record.
	publish(t, r.bus, rooms, perRoom)
	if err := r.bus.Publisher(bus.StreamAccepted).Publish(context.Background(), bus.Record{Key: "room-0", Value: []byte("{not json")}); err != nil {
		t.Fatal(err)
	}
	w := r.writer(t, historywriter.Config{BatchSize: 100})
	stop := run(w)
	waitFor(t, "every message stored", 10*time.Second, func() bool { return stored(t, r.mem, rooms, perRoom) })
	waitFor(t, "the buffer to drain", 5*time.Second, func() bool { return w.Lag() == 0 })
	if err := stop(); err != nil {
		t.Fatalf("Run = %v, want nil", err)
	}
	if bad := r.check.violations(); len(bad) > 0 {
		t.Fatalf("commits before store: %v", bad[:min(5, len(bad))])
	}
	st := w.Stats()
	if st.Retries != 3 {
		t.Errorf("Retries = %d, want 3", st.Retries)
	}
	if st.Inserted != 2*rooms*perRoom {
		t.Errorf("Inserted = %d, want %d (duplicates are appended, the store collapses them)", st.Inserted, 2*rooms*perRoom)
	}
	if st.Malformed != 1 {
		t.Errorf("Malformed = %d, want 1", st.Malformed)
	}
	if n := pending(t, r.bus, "history"); n != 0 {
		t.Errorf("%d records left uncommitted after a clean stop", n)
	}
}

func TestWriterHoldsWhileStoreDown(t *testing.T) {
	const rooms, perRoom = 4, 1000
	r := newRig()
	r.store.down.Store(true)
	publish(t, r.bus, rooms, perRoom)
	w := r.writer(t, historywriter.Config{BatchSize: 100, MaxBuffered: 500})
	stop := run(w)
	defer stop()
	waitFor(t, "retries", 5*time.Second, func() bool { return w.Stats().Retries >= 5 })
	time.Sleep(50 * time.Millisecond)
	if lag := w.Lag(); lag < 100 || lag > 500+64 {
		t.Errorf("Lag = %d while the store is down, want between one batch and MaxBuffered + one fetch", lag)
	}
	if n := r.check.commits.Load(); n != 0 {
		t.Fatalf("%d commits while the store was down", n)
	}
	r.store.down.Store(false)
	waitFor(t, "every message stored", 10*time.Second, func() bool { return stored(t, r.mem, rooms, perRoom) })
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if bad := r.check.violations(); len(bad) > 0 {
		t.Fatalf("commits before store: %v", bad[:min(5, len(bad))])
	}
	if n := pending(t, r.bus, "history"); n != 0 {
		t.Errorf("%d records left uncommitted", n)
	}
}

func TestWriterFlushesOnShutdown(t *testing.T) {
	r := newRig()
	w := r.writer(t, historywriter.Config{BatchSize: 1000, FlushInterval: time.Hour})
	stop := run(w)
	publish(t, r.bus, 2, 5)
	waitFor(t, "the writer to buffer", 5*time.Second, func() bool { return w.Lag() == 10 })
	if got, _ := r.mem.Range(context.Background(), "room-0", history.Filter{}); len(got) != 0 {
		t.Fatalf("stored %d messages before the batch filled or the interval passed", len(got))
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if !stored(t, r.mem, 2, 5) {
		t.Fatal("buffered messages not stored on shutdown")
	}
	if n := pending(t, r.bus, "history"); n != 0 {
		t.Errorf("%d records left uncommitted after shutdown", n)
	}
}

func TestWriterShutdownWithStoreDownCommitsNothing(t *testing.T) {
	r := newRig()
	r.store.down.Store(true)
	w := r.writer(t, historywriter.Config{BatchSize: 10, ShutdownTimeout: 50 * time.Millisecond})
	stop := run(w)
	publish(t, r.bus, 2, 50)
	waitFor(t, "retries", 5*time.Second, func() bool { return w.Stats().Retries > 0 })
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("shutdown took %v with the store down, want about ShutdownTimeout", d)
	}
	if n := r.check.commits.Load(); n != 0 {
		t.Fatalf("%d commits while the store was down", n)
	}
	// A new writer of the group picks everything up again.
	r.store.down.Store(false)
	stop = run(r.writer(t, historywriter.Config{BatchSize: 10}))
	waitFor(t, "every message stored by the next writer", 10*time.Second, func() bool { return stored(t, r.mem, 2, 50) })
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// TestWriterAppliesFenceRule: records a logic worker wrote after another
// worker's fence marker never reach the store (pkg/bus/fence.go).
func TestWriterAppliesFenceRule(t *testing.T) {
	mb := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	mem := history.NewMemory(history.MemoryConfig{})
	rec := func(seq uint64, text, claim string) bus.Record {
		v, _ := bus.Marshal(struct {
			protocol.Message
			F string `json:"f"`
		}{protocol.Message{Room: "x", Seq: seq, UID: "u", Text: text}, claim})
		return bus.Record{Key: "x", Value: v}
	}
	if _, err := mb.Append(context.Background(), bus.StreamAccepted, 1,
		bus.Record{Value: bus.FenceMarker("A", "")}, rec(1, "one", "A"),
		bus.Record{Value: bus.FenceMarker("B", "")}, rec(2, "stale two", "A"), rec(2, "two", "B")); err != nil {
		t.Fatal(err)
	}
	w, err := historywriter.New(historywriter.Config{Bus: mb, Store: mem, FlushInterval: 5 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	stop := run(w)
	defer stop()
	waitFor(t, "both messages stored", 5*time.Second, func() bool {
		msgs, _ := mem.Range(context.Background(), "x", history.Filter{})
		return len(msgs) == 2
	})
	msgs, _ := mem.Range(context.Background(), "x", history.Filter{})
	if msgs[0].Text != "one" || msgs[1].Text != "two" {
		t.Fatalf("stored %+v", msgs)
	}
	if n := w.Stats().Fenced; n != 1 {
		t.Fatalf("Stats().Fenced = %d, want 1", n)
	}
}

// TestWriterPurgeBeforeWrite: a ban's purge lands while the writer holds
// the user's accepted messages (the store is down, so they wait); when
// they are written, and when they come again to a writer started anew,
// the purged ones stay out of history.
func TestWriterPurgeBeforeWrite(t *testing.T) {
	r := newRig()
	r.store.down.Store(true)
	w := r.writer(t, historywriter.Config{})
	stop := run(w)
	defer stop()
	publish(t, r.bus, 1, 5) // room-0, seqs 1..5 of "u" at ts 1..5
	waitFor(t, "the writer to hold the messages", 5*time.Second, func() bool { return w.Lag() == 5 })
	if _, err := r.mem.Purge(context.Background(), "room-0", "u", 0, 4); err != nil { // ts < 4
		t.Fatalf("Purge: %v", err)
	}
	r.store.down.Store(false)
	live := func() []uint64 {
		got, err := r.mem.Range(context.Background(), "room-0", history.Filter{})
		if err != nil {
			t.Fatalf("Range: %v", err)
		}
		var out []uint64
		for _, m := range got {
			out = append(out, m.Seq)
		}
		return out
	}
	waitFor(t, "the held messages to be written", 5*time.Second, func() bool { return w.Stats().Inserted == 5 })
	if got := live(); !slices.Equal(got, []uint64{4, 5}) {
		t.Errorf("history after the late write = %v, want [4 5]", got)
	}
	if err := stop(); err != nil {
		t.Fatalf("Run = %v", err)
	}
	again := r.writer(t, historywriter.Config{Group: "history-again"}) // reads the stream from the start
	stopAgain := run(again)
	defer stopAgain()
	waitFor(t, "the redelivered messages to be written", 5*time.Second, func() bool { return again.Stats().Inserted == 5 })
	if got := live(); !slices.Equal(got, []uint64{4, 5}) {
		t.Errorf("history after a redelivery = %v, want [4 5]", got)
	}
}
