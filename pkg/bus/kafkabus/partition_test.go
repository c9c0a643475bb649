package kafkabus

import (
	"context"
	"errors"
	"strconv"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

// TestPartitionReader checks Offsets (with and without a group's commit)
// and ReadRange on the test broker.
func TestPartitionReader(t *testing.T) {
	b := newTestBus(t, testConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := b.Partitions(ctx, bus.StreamAccepted)
	if err != nil || n != DefaultPartitions {
		t.Fatalf("Partitions = %d, %v; want %d", n, err, DefaultPartitions)
	}
	const key = "room-x"
	p := partitionOf(key, n)
	var recs []bus.Record
	for i := range 10 {
		recs = append(recs, bus.Record{Key: key, Value: []byte("v" + strconv.Itoa(i))})
	}
	// Two publishes: two produce batches, so ReadRange crosses a batch.
	if err := b.Publisher(bus.StreamAccepted).Publish(ctx, recs[:5]...); err != nil {
		t.Fatal(err)
	}
	if err := b.Publisher(bus.StreamAccepted).Publish(ctx, recs[5:]...); err != nil {
		t.Fatal(err)
	}
	o, err := b.Offsets(ctx, bus.StreamAccepted, p, "nobody")
	if err != nil {
		t.Fatal(err)
	}
	if o != (bus.PartitionOffsets{Oldest: 0, End: 10, Committed: -1}) {
		t.Fatalf("Offsets = %+v, want oldest 0, end 10, committed -1", o)
	}

	c, err := b.Consumer(bus.StreamAccepted, bus.ConsumerOptions{Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	var got []bus.Record
	for len(got) < 4 {
		rs, err := c.Fetch(ctx)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rs...)
	}
	if err := c.Commit(ctx, got[:4]...); err != nil {
		t.Fatal(err)
	}
	if o, err = b.Offsets(ctx, bus.StreamAccepted, p, "g"); err != nil || o.Committed != 4 {
		t.Fatalf("Offsets with group = %+v, %v; want committed 4", o, err)
	}

	for _, tc := range []struct {
		name     string
		from, to int64
		want     []int
	}{
		{"Tail", 7, 10, []int{7, 8, 9}},
		{"AcrossBatches", 3, 7, []int{3, 4, 5, 6}},
		{"PastEnd", 8, 100, []int{8, 9}},
		{"Empty", 10, 10, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := b.ReadRange(ctx, bus.StreamAccepted, p, tc.from, tc.to)
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != len(tc.want) {
				t.Fatalf("got %d records, want %d", len(rs), len(tc.want))
			}
			for i, r := range rs {
				if r.Offset != int64(tc.want[i]) || string(r.Value) != "v"+strconv.Itoa(tc.want[i]) || r.Key != key || r.Partition != p {
					t.Errorf("record %d = %+v, want offset %d", i, r, tc.want[i])
				}
			}
		})
	}
	if _, err := b.ReadRange(ctx, bus.StreamAccepted, n, 0, 1); err == nil {
		t.Error("ReadRange of a missing partition: no error")
	}
}

// TestCommitAfterGenerationEnds commits through a generation that a second
// member's join ended: kafka-go closes that generation's connection, and
// the commit is dropped like one the coordinator refuses for a rebalance
// (the partition's next owner reads the records again) and reported as
// bus.ErrNotOwner, not as a failure (or taken, while the coordinator still
// prepares the rebalance).
func TestCommitAfterGenerationEnds(t *testing.T) {
	b := newTestBus(t, testConfig(t))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := b.Publisher(bus.StreamAccepted).Publish(ctx, bus.Record{Key: "room", Value: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	ca, err := b.Consumer(bus.StreamAccepted, bus.ConsumerOptions{Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer ca.Close()
	rs, err := ca.Fetch(ctx)
	if err != nil || len(rs) == 0 {
		t.Fatalf("Fetch = %v, %v", rs, err)
	}
	c := ca.(*consumer)
	c.mu.Lock()
	gen, ended := c.gen, c.genEnded
	c.mu.Unlock()
	offsets := map[int]int64{rs[0].Partition: rs[0].Offset + 1}

	cb, err := b.Consumer(bus.StreamAccepted, bus.ConsumerOptions{Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	select {
	case <-ended:
	case <-ctx.Done():
		t.Fatal("the first generation did not end after a second member joined")
	}
	// The connection closes once the generation's goroutines have returned;
	// commit until well after that.
	for range 20 {
		// While the coordinator still prepares the rebalance the old
		// generation is current and the commit is taken (nil): nobody owns
		// the partition in a newer one yet. Any failure must read as a
		// rebalance, never as an error.
		if err := c.commitGen(gen, ended, offsets); err != nil && !errors.Is(err, bus.ErrNotOwner) {
			t.Fatalf("commit in the ended generation = %v, want nil or bus.ErrNotOwner", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
