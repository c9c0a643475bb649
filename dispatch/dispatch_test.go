package dispatch

import (
	"context"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

func TestMergeAndDedupe(t *testing.T) {
	b := bus.NewMemory(bus.MemoryConfig{})
	out, err := b.Consumer(bus.StreamDispatch, bus.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Bus: b, MinTick: 20 * time.Millisecond, MaxTick: 40 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()

	pub := b.Publisher(bus.StreamAccepted)
	var recs []bus.Record
	for i := 1; i <= 10; i++ {
		for _, room := range []string{"x", "y"} {
			v, _ := bus.Marshal(protocol.Message{Room: room, Seq: uint64(i), UID: "u", Text: "t"})
			recs = append(recs, bus.Record{Key: room, Value: v})
		}
	}
	// A redelivered record (seq 3 of x again) must not be published twice.
	dup, _ := bus.Marshal(protocol.Message{Room: "x", Seq: 3, UID: "u", Text: "t"})
	if err := pub.Publish(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	if err := pub.Publish(context.Background(), bus.Record{Key: "x", Value: dup}); err != nil {
		t.Fatal(err)
	}

	fctx, fcancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer fcancel()
	seqs := map[string][]uint64{}
	batches := 0
	for len(seqs["x"]) < 10 || len(seqs["y"]) < 10 {
		got, err := out.Fetch(fctx)
		if err != nil {
			t.Fatalf("fetch: %v (have %v)", err, seqs)
		}
		for _, r := range got {
			var f protocol.ServerFrame
			if err := bus.Unmarshal(r.Value, &f); err != nil || f.Op != protocol.OpBatch || f.Room != r.Key {
				t.Fatalf("bad dispatch record %s", r.Value)
			}
			batches++
			for _, m := range f.Msgs {
				if m.Room != "" {
					t.Fatalf("message repeats the room inside a batch: %s", r.Value)
				}
				seqs[f.Room] = append(seqs[f.Room], m.Seq)
			}
		}
	}
	if batches > 4 {
		t.Errorf("%d batches for 20 messages published at once: not merged per tick", batches)
	}
	time.Sleep(150 * time.Millisecond)
	sctx, scancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer scancel()
	if extra, err := out.Fetch(sctx); err == nil {
		t.Fatalf("redelivered seq was published again: %s", extra[0].Value)
	}
	for room, s := range seqs {
		for i, seq := range s {
			if seq != uint64(i+1) {
				t.Fatalf("room %s seqs %v", room, s)
			}
		}
	}
}

func TestConfigValidation(t *testing.T) {
	b := bus.NewMemory(bus.MemoryConfig{})
	if _, err := New(Config{}); err == nil {
		t.Error("no bus accepted")
	}
	if _, err := New(Config{Bus: b, MinTick: time.Second, MaxTick: time.Millisecond}); err == nil {
		t.Error("MinTick > MaxTick accepted")
	}
}

// accepted encodes an accepted record as logic writes it: the message and
// the writer's claim.
func accepted(room string, seq uint64, text, claim string) []byte {
	v, _ := bus.Marshal(struct {
		protocol.Message
		F string `json:"f,omitempty"`
	}{protocol.Message{Room: room, Seq: seq, UID: "u", Text: text}, claim})
	return v
}

// TestFencedRecordsNotDispatched: records a logic worker wrote after
// another worker's fence marker (it lost the partition mid-batch) are never
// dispatched; the new owner's records with the same seqs are.
func TestFencedRecordsNotDispatched(t *testing.T) {
	b := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	out, err := b.Consumer(bus.StreamDispatch, bus.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	log := []bus.Record{
		{Value: bus.FenceMarker("A", "a")},
		{Key: "x", Value: accepted("x", 1, "one", "A")},
		{Value: bus.FenceMarker("B", "b")},
		{Key: "x", Value: accepted("x", 2, "stale two", "A")}, // A's write landed late
		{Key: "x", Value: accepted("x", 2, "two", "B")},
		{Key: "x", Value: accepted("x", 3, "stale three", "A")},
		{Key: "x", Value: accepted("x", 3, "three", "B")},
	}
	if _, err := b.Append(ctx, bus.StreamAccepted, 1, log...); err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Bus: b, MinTick: 5 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = d.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()

	fctx, fcancel := context.WithTimeout(ctx, 2*time.Second)
	defer fcancel()
	var texts []string
	for len(texts) < 3 {
		got, err := out.Fetch(fctx)
		if err != nil {
			t.Fatalf("fetch: %v (have %v)", err, texts)
		}
		for _, r := range got {
			var f protocol.ServerFrame
			if err := bus.Unmarshal(r.Value, &f); err != nil {
				t.Fatal(err)
			}
			for _, m := range f.Msgs {
				texts = append(texts, m.Text)
			}
		}
	}
	if want := []string{"one", "two", "three"}; !slices.Equal(texts, want) {
		t.Fatalf("dispatched %q, want %q", texts, want)
	}
}

func TestPruneForgetsIdleRooms(t *testing.T) {
	d, err := New(Config{Bus: bus.NewMemory(bus.MemoryConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	d.last["old"] = roomLast{seq: 9, at: now.Add(-2 * roomIdle)}
	d.last["new"] = roomLast{seq: 5, at: now}
	d.prune(now)
	if _, ok := d.last["old"]; ok {
		t.Error("an idle room was kept")
	}
	if d.last["new"].seq != 5 {
		t.Error("an active room was forgotten")
	}
}
