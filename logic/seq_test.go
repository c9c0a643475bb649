package logic

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/logic/historywriter"
	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// allow accepts every message.
type allow struct{}

func (allow) Check(in moderation.Input) moderation.Verdict {
	return moderation.Verdict{Action: moderation.Accept, Text: in.Text}
}

// crashBus is a memory bus whose ingest consumers stop committing once
// noCommit is set: the worker publishes and replies but its offsets stay
// behind, as if it crashed between publish and commit.
type crashBus struct {
	*bus.Memory
	noCommit *atomic.Bool
}

func (b crashBus) Consumer(stream string, opts bus.ConsumerOptions) (bus.Consumer, error) {
	c, err := b.Memory.Consumer(stream, opts)
	if err != nil || stream != bus.StreamIngest {
		return c, err
	}
	return &crashConsumer{Consumer: c, noCommit: b.noCommit}, nil
}

type crashConsumer struct {
	bus.Consumer
	noCommit *atomic.Bool
}

func (c *crashConsumer) Commit(ctx context.Context, recs ...bus.Record) error {
	if c.noCommit.Load() {
		return nil
	}
	return c.Consumer.Commit(ctx, recs...)
}

func (c *crashConsumer) Generation() int64 { return c.Consumer.(bus.Rebalancer).Generation() }

var (
	_ bus.PartitionReader = crashBus{}
	_ bus.Rebalancer      = (*crashConsumer)(nil)
)

// replies collects every reply on the reply stream: id → seqs answered.
type replies struct {
	mu   sync.Mutex
	seqs map[string][]uint64
}

func (r *replies) run(ctx context.Context, t *testing.T, c bus.Consumer) {
	for {
		recs, err := c.Fetch(ctx)
		if err != nil {
			return
		}
		r.mu.Lock()
		for _, rec := range recs {
			var rep bus.Reply
			if err := bus.Unmarshal(rec.Value, &rep); err != nil {
				t.Errorf("bad reply: %v", err)
				continue
			}
			if rep.Seq == 0 {
				t.Errorf("reply without seq: %+v", rep)
			}
			r.seqs[rep.ID] = append(r.seqs[rep.ID], rep.Seq)
		}
		r.mu.Unlock()
	}
}

// waitFor waits until every id got at least one reply.
func (r *replies) waitFor(t *testing.T, ids []string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r.mu.Lock()
		missing := 0
		for _, id := range ids {
			if len(r.seqs[id]) == 0 {
				missing++
			}
		}
		r.mu.Unlock()
		if missing == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d sends got no reply", missing, len(ids))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSeqFailover runs two workers in one group on the memory bus. Worker
// A accepts a first phase of sends, then stops committing (it publishes and
// replies, its ingest offsets stay behind), accepts a second phase, and
// "crashes" once B has joined. B must continue every room's seq and answer
// the redelivered second phase from the accepted stream's tail with the
// seqs A gave, never sequencing a message twice.
func TestSeqFailover(t *testing.T) {
	for _, tc := range []struct {
		name    string
		history bool  // run a history writer and use it as SeqSource
		window  int64 // ScanWindow
	}{
		{"NoHistory", false, 0},
		{"HistoryAndSmallWindow", true, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			mem := bus.NewMemory(bus.MemoryConfig{Partitions: 4, MaxFetch: 16})
			defer mem.Close()
			log := slog.New(slog.NewTextHandler(io.Discard, nil))
			var seqs SeqSource
			if tc.history {
				store := history.NewMemory(history.MemoryConfig{})
				w, err := historywriter.New(historywriter.Config{Bus: mem, Store: store, Logger: log, FlushInterval: 5 * time.Millisecond})
				if err != nil {
					t.Fatal(err)
				}
				go w.Run(ctx)
				seqs = store
			}
			rc, err := mem.Consumer(bus.StreamReply, bus.ConsumerOptions{})
			if err != nil {
				t.Fatal(err)
			}
			reps := &replies{seqs: map[string][]uint64{}}
			go reps.run(ctx, t, rc)

			start := func(noCommit *atomic.Bool) context.CancelFunc {
				l, err := New(Config{Bus: crashBus{Memory: mem, noCommit: noCommit}, Moderation: allow{}, Seqs: seqs,
					ScanWindow: tc.window, Logger: log})
				if err != nil {
					t.Fatal(err)
				}
				wctx, stop := context.WithCancel(ctx)
				done := make(chan struct{})
				go func() {
					defer close(done)
					if err := l.Run(wctx); err != nil {
						t.Errorf("Run: %v", err)
					}
				}()
				return func() { stop(); <-done }
			}
			pub := mem.Publisher(bus.StreamIngest)
			rooms := []string{"r0", "r1", "r2", "r3", "r4"}
			send := func(phase string, n int) []string {
				var ids []string
				for i := range n {
					for _, room := range rooms {
						id := fmt.Sprintf("%s-%s-%d", phase, room, i)
						v, _ := bus.Marshal(bus.Ingest{Room: room, ID: id, UID: "u" + room, Name: "n", Role: "mod",
							Text: id, Gateway: "gw1", Conn: 1})
						if err := pub.Publish(ctx, bus.Record{Key: room, Value: v}); err != nil {
							t.Fatal(err)
						}
						ids = append(ids, id)
					}
				}
				return ids
			}

			var aNoCommit, bNoCommit atomic.Bool
			stopA := start(&aNoCommit)
			phase1 := send("p1", 20)
			reps.waitFor(t, phase1)
			aNoCommit.Store(true)
			phase2 := send("p2", 20)
			reps.waitFor(t, phase2)
			time.Sleep(50 * time.Millisecond) // let history catch up
			stopB := start(&bNoCommit)
			defer stopB()
			stopA() // A's uncommitted phase 2 goes to B
			phase3 := send("p3", 20)
			// Retries of already accepted ids. Phase 2 was never committed,
			// so B must know all of it; of phase 1 (committed) only what
			// its scan read, which is everything without a history group.
			retries := []string{phase2[3], phase2[len(phase2)-1]}
			if !tc.history {
				retries = append(retries, phase1[0], phase1[len(phase1)-1])
			}
			for _, id := range retries {
				room := id[3:5]
				v, _ := bus.Marshal(bus.Ingest{Room: room, ID: id, UID: "u" + room, Name: "n", Role: "mod", Text: id, Gateway: "gw1", Conn: 1})
				if err := pub.Publish(ctx, bus.Record{Key: room, Value: v}); err != nil {
					t.Fatal(err)
				}
			}
			reps.waitFor(t, phase3)
			time.Sleep(100 * time.Millisecond) // redeliveries and retries answered

			// Every reply for one id names the same seq.
			reps.mu.Lock()
			for id, s := range reps.seqs {
				for _, q := range s[1:] {
					if q != s[0] {
						t.Errorf("id %s answered with seqs %v", id, s)
						break
					}
				}
			}
			reps.mu.Unlock()

			// The accepted stream holds each id once, and each room's seqs
			// are exactly 1..N.
			bySeq := map[string]map[uint64]string{}
			byID := map[string]uint64{}
			for p := range 4 {
				recs, err := mem.ReadRange(ctx, bus.StreamAccepted, p, 0, 1<<40)
				if err != nil {
					t.Fatal(err)
				}
				ff := bus.NewFenceFilter(mem, bus.StreamAccepted)
				for _, r := range recs {
					if ok, err := ff.Valid(ctx, r); err != nil || !ok {
						continue // a fence marker or a fenced record
					}
					var m protocol.Message
					if err := bus.Unmarshal(r.Value, &m); err != nil {
						t.Fatal(err)
					}
					if bySeq[m.Room] == nil {
						bySeq[m.Room] = map[uint64]string{}
					}
					if prev, ok := bySeq[m.Room][m.Seq]; ok {
						t.Errorf("room %s seq %d given twice: %s and %s", m.Room, m.Seq, prev, m.ID)
					}
					bySeq[m.Room][m.Seq] = m.ID
					if prev, ok := byID[m.ID]; ok {
						t.Errorf("id %s sequenced twice: %d and %d", m.ID, prev, m.Seq)
					}
					byID[m.ID] = m.Seq
				}
			}
			for _, room := range rooms {
				if n := len(bySeq[room]); n != 60 {
					t.Errorf("room %s: %d accepted messages, want 60", room, n)
				}
				for seq := uint64(1); seq <= 60; seq++ {
					if _, ok := bySeq[room][seq]; !ok {
						t.Errorf("room %s: seq %d missing", room, seq)
					}
				}
			}
			for id, s := range reps.seqs {
				if byID[id] != s[0] {
					t.Errorf("id %s acked with seq %d but accepted with %d", id, s[0], byID[id])
				}
			}
		})
	}
}

// TestPartitionMismatch refuses a bus whose ingest and accepted streams are
// partitioned differently.
func TestPartitionMismatch(t *testing.T) {
	l, err := New(Config{Bus: mismatchBus{bus.NewMemory(bus.MemoryConfig{Partitions: 4})}, Moderation: allow{}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Run(ctx); err == nil || !errors.Is(err, ErrPartitionMismatch) {
		t.Fatalf("Run = %v, want ErrPartitionMismatch", err)
	}
}

type mismatchBus struct{ *bus.Memory }

func (b mismatchBus) Partitions(ctx context.Context, stream string) (int, error) {
	if stream == bus.StreamAccepted {
		return 8, nil
	}
	return b.Memory.Partitions(ctx, stream)
}

// TestDedupeAcrossGenerations: a worker keeps the ids it accepted across
// group generations. Two generations in a row (a member joins, then
// leaves) make the worker take its partition over twice; the second
// takeover's scan reads only ScanWindow records back from the committed
// offset, so without a Dedupe store an id accepted before both is known
// only from the worker's memory, and its retry must get its first seq.
func TestDedupeAcrossGenerations(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 1, MaxFetch: 16})
	defer mem.Close()
	rc, err := mem.Consumer(bus.StreamReply, bus.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reps := &replies{seqs: map[string][]uint64{}}
	go reps.run(ctx, t, rc)
	// A history writer commits the accepted stream, so a takeover scan
	// reads from its committed offset, or ScanWindow records back.
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := history.NewMemory(history.MemoryConfig{})
	w, err := historywriter.New(historywriter.Config{Bus: mem, Store: store, Logger: log, FlushInterval: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	go w.Run(ctx)
	l, err := New(Config{Bus: mem, Moderation: allow{}, Seqs: store, ScanWindow: 8, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.Run(ctx); err != nil && ctx.Err() == nil {
			t.Errorf("Run: %v", err)
		}
	}()
	defer func() { cancel(); <-done }()
	pub := mem.Publisher(bus.StreamIngest)
	send := func(ids ...string) {
		for _, id := range ids {
			v, _ := bus.Marshal(bus.Ingest{Room: "r", ID: id, UID: "u", Name: "n", Text: id, Gateway: "gw1", Conn: 1})
			if err := pub.Publish(ctx, bus.Record{Key: "r", Value: v}); err != nil {
				t.Fatal(err)
			}
		}
		reps.waitFor(t, ids)
	}
	var first []string
	for i := range 20 {
		first = append(first, fmt.Sprintf("a%d", i))
	}
	send(first...)
	// Both the ingest group and the history writer committed all of it.
	committed := func(stream, group string) int64 {
		o, err := mem.Offsets(ctx, stream, 0, group)
		if err != nil {
			t.Fatal(err)
		}
		return o.Committed
	}
	for deadline := time.Now().Add(5 * time.Second); committed(bus.StreamIngest, "logic") < 20 ||
		committed(bus.StreamAccepted, "history") < 21; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("ingest committed to %d (want 20), accepted to %d (want 21)",
				committed(bus.StreamIngest, "logic"), committed(bus.StreamAccepted, "history"))
		}
	}
	for range 2 { // a member joins, then leaves: two new generations
		c, err := mem.Consumer(bus.StreamIngest, bus.ConsumerOptions{Group: "logic"})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
		send(fmt.Sprintf("b%d", len(reps.seqs)))
	}
	retries := []string{first[0], first[5], first[19]} // older than the scan window
	send(append(retries, "c")...)                      // "c" after them: all answered once it is
	reps.mu.Lock()
	defer reps.mu.Unlock()
	for i, id := range retries {
		want := []uint64{uint64([]int{1, 6, 20}[i]), uint64([]int{1, 6, 20}[i])}
		if got := reps.seqs[id]; len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
			t.Errorf("id %s answered %v, want %v", id, got, want)
		}
	}
	recs, err := mem.ReadRange(ctx, bus.StreamAccepted, 0, 0, 1<<40)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range recs {
		var m protocol.Message
		if bus.Unmarshal(r.Value, &m) == nil && m.Room == "r" {
			n++
		}
	}
	if n != 23 {
		t.Errorf("%d accepted messages, want 23 (20, one per generation, c)", n)
	}
}
