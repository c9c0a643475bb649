package bustest

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

// partitionBus returns b's partition-reading interfaces, skipping the test
// when it has none.
func partitionBus(t *testing.T, b bus.Bus) (bus.PartitionSubscriber, bus.PartitionReader) {
	t.Helper()
	ps, ok := b.(bus.PartitionSubscriber)
	pr, ok2 := b.(bus.PartitionReader)
	if !ok || !ok2 {
		t.Skip("bus cannot read chosen partitions")
	}
	return ps, pr
}

// partitionedStream creates a stream named after name on b (an empty
// publish) and returns b's partition abilities (skipping the test without
// them), the stream, a publisher of it and its partition count.
func partitionedStream(t *testing.T, b bus.Bus, name string) (bus.PartitionSubscriber, bus.PartitionReader, string, bus.Publisher, int) {
	t.Helper()
	ps, pr := partitionBus(t, b)
	stream := uniq(name)
	pub := b.Publisher(stream)
	publish(t, pub)
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	n, err := pr.Partitions(ctx, stream)
	if err != nil {
		t.Fatalf("Partitions: %v", err)
	}
	return ps, pr, stream, pub, n
}

// keyIn returns a key that bus.KeyPartition puts in partition p of n.
func keyIn(prefix string, p, n int) string {
	for i := 0; ; i++ {
		if k := prefix + strconv.Itoa(i); bus.KeyPartition(k, n) == p {
			return k
		}
	}
}

// values returns recs' values, failing the test when a record is not
// partition p's with ascending offsets.
func values(t *testing.T, recs []bus.Record, p int) []string {
	t.Helper()
	var out []string
	last := int64(-1)
	for _, r := range recs {
		if r.Partition != p {
			t.Fatalf("got %q of partition %d, want only partition %d", r.Value, r.Partition, p)
		}
		if r.Offset <= last {
			t.Fatalf("offset %d after %d in partition %d", r.Offset, last, p)
		}
		last = r.Offset
		out = append(out, string(r.Value))
	}
	return out
}

// upTo collects from c until a record with value end arrives, failing
// when one of an other partition than p comes or the order breaks.
func upTo(t *testing.T, c bus.Consumer, p int, end string) []string {
	t.Helper()
	recs := collect(t, c, false, func(rs []bus.Record) bool {
		return len(rs) > 0 && string(rs[len(rs)-1].Value) == end
	})
	return values(t, recs, p)
}

// testPartitionConsumer: a partition consumer reads only what it was
// assigned, from the offset given; after Unassign nothing of the
// partition; assigned again from an offset, from there (records written
// meanwhile included); reassigned while reading, from the new offset and
// nothing of the old reading after.
func testPartitionConsumer(t *testing.T, b bus.Bus) {
	ps, pr, stream, pub, n := partitionedStream(t, b, "parts")
	if n < 2 {
		t.Fatalf("Partitions = %d; the suite needs 2", n)
	}
	k0, k1 := keyIn("a", 0, n), keyIn("b", 1, n)
	put := func(key string, vals ...string) {
		for _, v := range vals {
			publish(t, pub, bus.Record{Key: key, Value: []byte(v)})
		}
	}
	put(k0, "a0", "a1", "a2")
	put(k1, "b0", "b1", "b2")
	o0, o1 := offsets(t, pr, stream, 0), offsets(t, pr, stream, 1)
	c := idleConsumer(t, ps, stream)

	t.Log("subscribe: partition 0 from its oldest record")
	if err := c.Assign(0, o0.Oldest); err != nil {
		t.Fatalf("Assign: %v", err)
	}
	put(k1, "b3")
	put(k0, "a3")
	expect(t, upTo(t, c, 0, "a3"), "a0", "a1", "a2", "a3")

	t.Log("subscribe a second partition from an offset within it")
	if err := c.Assign(1, o1.End-1); err != nil {
		t.Fatalf("Assign: %v", err)
	}
	put(k1, "b4")
	expect(t, upTo(t, c, 1, "b4"), "b2", "b3", "b4")

	t.Log("unsubscribe partition 0: nothing of it, partition 1 goes on")
	if err := c.Unassign(0); err != nil {
		t.Fatalf("Unassign: %v", err)
	}
	put(k0, "a4", "a5")
	put(k1, "b5")
	expect(t, upTo(t, c, 1, "b5"), "b5")

	t.Log("re-subscribe partition 0 from an offset: what was written meanwhile too")
	if err := c.Assign(0, o0.Oldest+2); err != nil {
		t.Fatalf("Assign: %v", err)
	}
	put(k0, "a6")
	expect(t, upTo(t, c, 0, "a6"), "a2", "a3", "a4", "a5", "a6")

	t.Log("reassign partition 1 while reading it: from the new offset only")
	if err := c.Assign(1, o1.Oldest); err != nil {
		t.Fatalf("Assign: %v", err)
	}
	put(k1, "b6")
	expect(t, upTo(t, c, 1, "b6"), "b0", "b1", "b2", "b3", "b4", "b5", "b6")

	checkAssignErrors(t, c, n)
}

// checkAssignErrors: Assign refuses a partition the stream lacks and a
// negative offset; Fetch after Close fails with bus.ErrClosed.
func checkAssignErrors(t *testing.T, c bus.PartitionConsumer, n int) {
	if err := c.Assign(n, 0); !errors.Is(err, bus.ErrNoPartition) {
		t.Errorf("Assign(%d) of %d partitions = %v, want bus.ErrNoPartition", n, n, err)
	}
	if err := c.Assign(0, -1); !errors.Is(err, bus.ErrBadOffset) {
		t.Errorf("Assign at offset -1 = %v, want bus.ErrBadOffset", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := c.Fetch(context.Background()); !errors.Is(err, bus.ErrClosed) {
		t.Fatalf("Fetch after Close = %v, want bus.ErrClosed", err)
	}
}

// testPartitionKeys: every publisher places a key where bus.KeyPartition
// says, so a consumer of that partition alone gets all of the key's
// records; an offset past the end reads from the next record written.
func testPartitionKeys(t *testing.T, b bus.Bus) {
	ps, pr, stream, pub, n := partitionedStream(t, b, "keys")
	c, err := ps.PartitionConsumer(stream)
	if err != nil {
		t.Fatalf("PartitionConsumer: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	for p := range n {
		if err := c.Assign(p, offsets(t, pr, stream, p).End+1000); err != nil {
			t.Fatalf("Assign past the end: %v", err)
		}
	}
	var recs []bus.Record
	want := map[string]bool{}
	for i := range 64 {
		k := "room-" + strconv.Itoa(i)
		v := fmt.Sprintf("%s/%d", k, i)
		want[v] = true
		recs = append(recs, bus.Record{Key: k, Value: []byte(v)})
	}
	publish(t, pub, recs...)
	got := collect(t, c, false, hasValues(want))
	for _, r := range got {
		key, _, _ := strings.Cut(string(r.Value), "/")
		if r.Key != key || r.Partition != bus.KeyPartition(key, n) {
			t.Fatalf("%q in partition %d, bus.KeyPartition says %d", r.Value, r.Partition, bus.KeyPartition(key, n))
		}
	}
}

// offsets returns partition p's offsets.
func offsets(t *testing.T, pr bus.PartitionReader, stream string, p int) bus.PartitionOffsets {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	o, err := pr.Offsets(ctx, stream, p, "")
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// idleConsumer opens a partition consumer of stream and checks that it
// reads nothing while nothing is assigned.
func idleConsumer(t *testing.T, ps bus.PartitionSubscriber, stream string) bus.PartitionConsumer {
	t.Helper()
	c, err := ps.PartitionConsumer(stream)
	if err != nil {
		t.Fatalf("PartitionConsumer: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if recs, err := c.Fetch(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Fetch with nothing assigned = %v, %v; want the deadline", recs, err)
	}
	return c
}

func expect(t *testing.T, got []string, want ...string) {
	t.Helper()
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("read %v, want %v", got, want)
	}
}
