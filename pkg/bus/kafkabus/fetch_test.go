package kafkabus

import (
	"context"
	"errors"
	"log/slog"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// A long MaxWait costs nothing in latency or shutdown: the broker answers a
// pending fetch as soon as a record arrives, and Close does not wait for it.
func TestLongMaxWait(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxWait = 20 * time.Second
	b := newTestBus(t, cfg)
	c, err := b.Consumer(bus.StreamDispatch, bus.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond) // the readers' first fetches are pending
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := b.Publisher(bus.StreamDispatch).Publish(ctx, bus.Record{Key: "room", Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	recs, err := c.Fetch(ctx)
	if err != nil || len(recs) != 1 {
		t.Fatalf("Fetch: %d records, %v", len(recs), err)
	}
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("record arrived after %v with MaxWait 20s: the pending fetch was not answered when it came", d)
	}
	time.Sleep(300 * time.Millisecond) // fetches pending again
	start = time.Now()
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("Close took %v with MaxWait 20s: it waited for the pending fetches", d)
	}
}

// Empty fetches are the normal state of an idle partition: they cost one
// request per MaxWait on the same connection, log nothing, and the next
// record still arrives at once.
func TestIdleFetches(t *testing.T) {
	cfg := testConfig(t)
	cfg.MaxWait = 200 * time.Millisecond
	var logs testenv.SyncBuffer
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))
	b := newTestBus(t, cfg)
	c, err := b.Consumer(bus.StreamControl, bus.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(1500 * time.Millisecond) // about 7 empty fetches
	if s := logs.String(); s != "" {
		t.Fatalf("an idle partition logged:\n%s", s)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	if err := b.Publisher(bus.StreamControl).Publish(ctx, bus.Record{Key: "k", Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if recs, err := c.Fetch(ctx); err != nil || len(recs) != 1 {
		t.Fatalf("Fetch after idle: %d records, %v", len(recs), err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("record arrived %v after an idle spell", d)
	}
}

// A reader whose connection breaks dials the leader again and goes on after
// the last record it handed over: nothing is lost or repeated.
func TestFetchSurvivesBrokenConnections(t *testing.T) {
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.AllowAutoTopicCreation())
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := New(ctx, Config{Brokers: cluster.ListenAddrs(), TopicPrefix: "broken.", CreateTopics: true,
		MaxWait: 200 * time.Millisecond, Partitions: map[string]int{bus.StreamDispatch: 1}})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	c, err := b.Consumer(bus.StreamDispatch, bus.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	// Every third fetch from now on has its connection closed by the broker.
	var fetches, broken atomic.Int32
	cluster.ControlKey(int16(kmsg.Fetch), func(kmsg.Request) (kmsg.Response, error, bool) {
		cluster.KeepControl()
		if fetches.Add(1)%3 != 0 {
			return nil, nil, false
		}
		broken.Add(1)
		return nil, errors.New("connection dropped by the test"), true
	})

	const n = 200
	pub := b.Publisher(bus.StreamDispatch)
	go func() {
		for i := range n {
			if err := pub.Publish(ctx, bus.Record{Key: "room", Value: []byte(strconv.Itoa(i))}); err != nil {
				t.Errorf("Publish %d: %v", i, err)
				return
			}
			time.Sleep(time.Millisecond)
		}
	}()
	next := 0
	for next < n {
		recs, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("Fetch after %d records (%d connections broken): %v", next, broken.Load(), err)
		}
		for _, r := range recs {
			if got := string(r.Value); got != strconv.Itoa(next) {
				t.Fatalf("record %d is %q: lost or repeated across a broken connection", next, got)
			}
			next++
		}
	}
	if broken.Load() < 3 {
		t.Fatalf("only %d connections broken: the test did not exercise reconnects", broken.Load())
	}
}

// TestFetchDropsOtherGenerations: Fetch returns only records of the newest
// generation, also when generation ids went down (a broker that lost its
// group state, like the dev broker after a restart, numbers them from 1
// again): records read in generation 57 before the restart must not pass
// as current once generation 1 is.
func TestFetchDropsOtherGenerations(t *testing.T) {
	c := &consumer{b: &Bus{cfg: Config{MaxFetch: 16}}, topic: "t", ch: make(chan delivery, 16), closed: make(chan struct{})}
	msg := func(off int64) kafka.Message { return kafka.Message{Partition: 0, Offset: off, Value: []byte("v")} }
	c.curGen.Store(57)
	c.ch <- delivery{gen: 57, msg: msg(1)}
	c.ch <- delivery{gen: 57, msg: msg(2)} // read before the restart, not yet fetched
	c.curGen.Store(1)                      // the restarted broker's first generation
	c.ch <- delivery{gen: 1, msg: msg(1)}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	recs, err := c.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Offset != 1 || c.Generation() != 1 {
		t.Fatalf("Fetch = %+v in generation %d; want only the generation-1 record", recs, c.Generation())
	}
}
