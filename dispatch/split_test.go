package dispatch

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/bus/kafkabus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// backlog publishes n accepted messages of room, seqs 1..n, each text
// runes CJK runes long.
func backlog(t *testing.T, ctx context.Context, b bus.Bus, room string, n, runes int) {
	t.Helper()
	text := strings.Repeat("前方高能弹幕测试", runes/8+1)[:3*runes]
	pub := b.Publisher(bus.StreamAccepted)
	var recs []bus.Record
	for seq := uint64(1); seq <= uint64(n); seq++ {
		v, _ := bus.Marshal(protocol.Message{Room: room, Seq: seq, ID: fmt.Sprintf("%024x", seq), UID: fmt.Sprintf("guest-%d", seq%500),
			Name: "viewer", Text: text, TS: time.Now().UnixMilli()})
		recs = append(recs, bus.Record{Key: room, Value: v})
	}
	for i := 0; i < len(recs); i += 500 {
		if err := pub.Publish(ctx, recs[i:min(i+500, len(recs))]...); err != nil {
			t.Fatal(err)
		}
	}
}

// coverage reads the dispatch stream until every room of want reached its
// seq or ctx ends. It checks each record is at most limit bytes (or holds
// one message), and that per room the batches cover seqs 1..want without
// a hole or an overlap: a thinned batch covers from..to, a plain one its
// messages. It returns the highest seq covered per room.
func coverage(t *testing.T, ctx context.Context, out bus.Consumer, want map[string]uint64, limit int) map[string]uint64 {
	t.Helper()
	got := map[string]uint64{}
	done := func() bool {
		for r, w := range want {
			if got[r] < w {
				return false
			}
		}
		return true
	}
	for !done() {
		recs, err := out.Fetch(ctx)
		if err != nil {
			return got
		}
		for _, r := range recs {
			var f protocol.ServerFrame
			if err := bus.Unmarshal(r.Value, &f); err != nil || f.Op != protocol.OpBatch {
				t.Fatalf("bad dispatch record %.200s", r.Value)
			}
			if len(r.Value) > limit && len(f.Msgs) > 1 {
				t.Fatalf("room %s: a record of %d bytes with %d messages, limit %d", f.Room, len(r.Value), len(f.Msgs), limit)
			}
			next := got[f.Room] + 1
			lo, hi := f.From, f.To
			if hi == 0 {
				lo, hi = f.Msgs[0].Seq, f.Msgs[len(f.Msgs)-1].Seq
			}
			if lo != next {
				t.Fatalf("room %s: a batch covering %d..%d after %d", f.Room, lo, hi, next-1)
			}
			prev := lo - 1
			for _, m := range f.Msgs {
				if m.Seq <= prev || m.Seq > hi {
					t.Fatalf("room %s: message %d in a batch covering %d..%d after %d", f.Room, m.Seq, lo, hi, prev)
				}
				if f.To == 0 && m.Seq != prev+1 {
					t.Fatalf("room %s: hole before %d in a plain batch", f.Room, m.Seq)
				}
				prev = m.Seq
			}
			got[f.Room] = hi
		}
	}
	return got
}

// TestBacklogSplitIntoBoundedBatches: a room's backlog that would encode
// past MaxBatchBytes in one tick goes out as several batches, each within
// the limit, together covering every seq once in order; the same for a
// thinned room, whose parts' from/to still cover the whole range.
func TestBacklogSplitIntoBoundedBatches(t *testing.T) {
	const limit = 4096
	b := bus.NewMemory(bus.MemoryConfig{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	backlog(t, ctx, b, "hot", 1500, 20)
	out, err := b.Consumer(bus.StreamDispatch, bus.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Bus: b, MaxBatchBytes: limit, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	d.SetBudget("hot", 0)
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = d.Run(rctx); close(done) }()
	got := coverage(t, ctx, out, map[string]uint64{"hot": 1500}, limit)
	rcancel()
	<-done
	if got["hot"] != 1500 {
		t.Fatalf("hot covered up to %d of 1500", got["hot"])
	}

	// A thinned batch split in parts, straight from encode.
	var ms []protocol.Message
	for seq := uint64(5); seq <= 4000; seq += 3 {
		ms = append(ms, protocol.Message{Seq: seq, UID: "u", Text: strings.Repeat("x", 40)})
	}
	recs := d.encode(nil, "thin", 3, 4001, ms)
	if len(recs) < 2 {
		t.Fatalf("%d records for %d messages, want a split", len(recs), len(ms))
	}
	mb := bus.NewMemory(bus.MemoryConfig{})
	mout, _ := mb.Consumer(bus.StreamDispatch, bus.ConsumerOptions{})
	if err := mb.Publisher(bus.StreamDispatch).Publish(ctx, bus.Record{Key: "thin", Value: protocol.EncodeThinned("thin", 1, 2, nil)}); err != nil {
		t.Fatal(err)
	}
	if err := mb.Publisher(bus.StreamDispatch).Publish(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	if got := coverage(t, ctx, mout, map[string]uint64{"thin": 4001}, limit); got["thin"] != 4001 {
		t.Fatalf("thinned parts covered up to %d of 4001", got["thin"])
	}
}

// TestHotRoomBacklogReachesDispatch: on a Kafka-protocol broker, a hot
// room's backlog (6,000 messages of 100 CJK runes, 6 s at 1000 msg/s, the
// size a dispatch restart leaves behind) used to be merged into one
// record past the producer's 1 MiB limit; the publish was refused and
// retried for ever, and no room got another batch. Now every seq of the
// hot room and a quiet room's message sent meanwhile reach the dispatch
// stream.
func TestHotRoomBacklogReachesDispatch(t *testing.T) {
	addr := testenv.Addr(t, testenv.Kafka)
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := kafkabus.New(ctx, kafkabus.Config{
		Brokers: strings.Split(addr, ","), TopicPrefix: "split" + hex.EncodeToString(rb[:]) + ".", CreateTopics: true,
		Partitions:        map[string]int{bus.StreamAccepted: 2, bus.StreamDispatch: 2},
		HeartbeatInterval: 100 * time.Millisecond, SessionTimeout: 6 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })
	backlog(t, ctx, b, "hot", 6000, 100)
	out, err := b.Consumer(bus.StreamDispatch, bus.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer out.Close()
	d, err := New(Config{Bus: b, Group: "split-" + hex.EncodeToString(rb[:]), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	rctx, rcancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = d.Run(rctx); close(done) }()
	defer func() { rcancel(); <-done }()
	go func() {
		time.Sleep(time.Second)
		v, _ := bus.Marshal(protocol.Message{Room: "quiet", Seq: 1, ID: "q1", UID: "u", Text: "hello", TS: time.Now().UnixMilli()})
		if err := b.Publisher(bus.StreamAccepted).Publish(ctx, bus.Record{Key: "quiet", Value: v}); err != nil {
			t.Error(err)
		}
	}()
	fctx, fcancel := context.WithTimeout(ctx, 30*time.Second)
	defer fcancel()
	got := coverage(t, fctx, out, map[string]uint64{"hot": 6000, "quiet": 1}, 256<<10)
	if got["hot"] != 6000 || got["quiet"] != 1 {
		t.Fatalf("within 30 s: hot covered up to %d of 6000, quiet %d of 1", got["hot"], got["quiet"])
	}
}
