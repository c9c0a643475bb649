package dispatch

import (
	"context"
	"io"
	"log/slog"
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
