package logic

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/bus/kafkabus"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// kGate wraps worker A's Kafka bus: its first ingest Fetch waits a moment
// (so it carries every partition's record), and its first fence marker
// waits for gate: A is slow to claim (several partitions to scan, a GC
// pause) while its consumer rejoins in the background.
type kGate struct {
	*kafkabus.Bus
	once    sync.Once
	entered chan struct{}
	gate    chan struct{}
}

type kSlowFetch struct {
	bus.Consumer
	first sync.Once
}

func (c *kSlowFetch) Generation() int64 { return c.Consumer.(bus.Rebalancer).Generation() }
func (c *kSlowFetch) Prove(ctx context.Context, p int, off int64) error {
	return c.Consumer.(bus.Prover).Prove(ctx, p, off)
}
func (c *kSlowFetch) Fetch(ctx context.Context) ([]bus.Record, error) {
	c.first.Do(func() { time.Sleep(3 * time.Second) })
	return c.Consumer.Fetch(ctx)
}

func (g *kGate) Consumer(stream string, opts bus.ConsumerOptions) (bus.Consumer, error) {
	c, err := g.Bus.Consumer(stream, opts)
	if err != nil || stream != bus.StreamIngest {
		return c, err
	}
	return &kSlowFetch{Consumer: c}, nil
}

func (g *kGate) Append(ctx context.Context, stream string, p int, recs ...bus.Record) (int64, error) {
	if _, marker := bus.ParseFence(recs[0].Value); stream == bus.StreamAccepted && marker {
		first := false
		g.once.Do(func() { first = true })
		if first {
			close(g.entered)
			<-g.gate
		}
	}
	return g.Bus.Append(ctx, stream, p, recs...)
}

// TestReviewKafkaStaleClaim is TestReviewStaleClaimAfterNewOwner on
// kafkabus with the test broker: A is a live member throughout (no session
// timeout), only slow to claim, and its marker lands after B's. No send of
// B's partitions may get B's reject and then A's ack; B, fenced by A's
// marker but still the owner, claims again and goes on (no later send is
// left unanswered), and its redone batch keeps its first verdicts (a fresh
// viewer's one send is not rejected as a duplicate of itself).
func TestReviewKafkaStaleClaim(t *testing.T) {
	addr := testenv.Addr(t, testenv.Kafka)
	var rb [4]byte
	_, _ = rand.Read(rb[:])
	cfg := kafkabus.Config{Brokers: strings.Split(addr, ","), TopicPrefix: "rv" + hex.EncodeToString(rb[:]) + ".",
		CreateTopics: true, HeartbeatInterval: 100 * time.Millisecond, SessionTimeout: 6 * time.Second}
	newBus := func() *kafkabus.Bus {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		b, err := kafkabus.New(ctx, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Close() })
		return b
	}
	bc := newBus()
	// Enough rooms to cover every partition.
	rooms := map[int]string{}
	for i := range 40 {
		rooms[i] = fmt.Sprintf("room%d", i)
	}
	lenient, _ := moderation.New(moderation.Config{})
	strict, _ := moderation.New(moderation.Config{})
	for _, r := range rooms {
		if err := strict.SetRoomKeywords(r, moderation.KeywordList{Words: []string{"blockme"}}); err != nil {
			t.Fatal(err)
		}
	}
	// replies: one consumer without group over the whole reply stream.
	rl := readReplies(t, bc, bus.ConsumerOptions{})
	time.Sleep(2 * time.Second) // the reply reader is positioned

	for p, r := range rooms {
		v, _ := bus.Marshal(bus.Ingest{Room: r, ID: fmt.Sprintf("X%d", p), UID: "ux", Text: "blockme", Role: "viewer", Gateway: "gw1", Conn: 1})
		if err := bc.Publisher(bus.StreamIngest).Publish(context.Background(), bus.Record{Key: r, Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	ga := &kGate{Bus: newBus(), entered: make(chan struct{}), gate: make(chan struct{})}
	startWorker(t, ga, lenient, Config{ID: "A"})
	select {
	case <-ga.entered:
	case <-time.After(30 * time.Second):
		t.Fatal("A never claimed")
	}
	startWorker(t, newBus(), strict, Config{ID: "B"})
	deadline := time.Now().Add(40 * time.Second)
	rejected := 0
	for time.Now().Before(deadline) {
		rejected = 0
		for p := range rooms {
			if len(rl.get(fmt.Sprintf("X%d", p))) > 0 {
				rejected++
			}
		}
		if rejected > 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	time.Sleep(2 * time.Second) // B answers the rest of its partitions
	close(ga.gate)
	time.Sleep(5 * time.Second)
	contradicted := 0
	for p := range rooms {
		got := rl.get(fmt.Sprintf("X%d", p))
		var rejected, acked bool
		for _, r := range got {
			rejected = rejected || r.Code != ""
			acked = acked || r.Seq > 0
		}
		if rejected && acked {
			contradicted++
		}
	}
	// Both workers are alive and in the group; nothing will rebalance.
	for p, r := range rooms {
		v, _ := bus.Marshal(bus.Ingest{Room: r, ID: fmt.Sprintf("Y%d", p), UID: "uy", Text: "hello", Role: "viewer", Gateway: "gw1", Conn: 2})
		if err := bc.Publisher(bus.StreamIngest).Publish(context.Background(), bus.Record{Key: r, Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(15 * time.Second)
	silent, rejectedY := 0, 0
	var sample []bus.Reply
	for p := range rooms {
		got := rl.get(fmt.Sprintf("Y%d", p))
		if len(got) == 0 {
			silent++
		}
		for _, r := range got {
			if r.Seq == 0 {
				rejectedY++
				sample = append(sample, r)
			}
		}
	}
	t.Logf("contradicted %d, silent %d, Y rejected %d of %d; e.g. %+v", contradicted, silent, rejectedY, len(rooms), sample[:min(2, len(sample))])
	if contradicted > 0 || silent > 0 || rejectedY > 0 {
		t.Fatalf("%d of %d sends got a reject and an ack; %d later sends got no answer; %d of %d later sends (one each, by a fresh viewer) rejected", contradicted, len(rooms), silent, rejectedY, len(rooms))
	}
}
