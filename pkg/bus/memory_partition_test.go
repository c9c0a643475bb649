package bus

import (
	"context"
	"strconv"
	"testing"
)

func TestMemoryPartitionReader(t *testing.T) {
	ctx := context.Background()
	m := NewMemory(MemoryConfig{Partitions: 4, Retain: 4})
	const key = "room-x"
	p := KeyPartition(key, 4)
	pub := m.Publisher(StreamAccepted)
	for i := range 10 {
		if err := pub.Publish(ctx, Record{Key: key, Value: []byte("v" + strconv.Itoa(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := m.Partitions(ctx, StreamAccepted); err != nil || n != 4 {
		t.Fatalf("Partitions = %d, %v", n, err)
	}
	o, err := m.Offsets(ctx, StreamAccepted, p, "g")
	if err != nil || o != (PartitionOffsets{Oldest: 0, End: 10, Committed: -1}) {
		t.Fatalf("Offsets = %+v, %v; want oldest 0 end 10 committed -1", o, err)
	}
	c, err := m.Consumer(StreamAccepted, ConsumerOptions{Group: "g"})
	if err != nil {
		t.Fatal(err)
	}
	recs, err := c.Fetch(ctx)
	if err != nil || len(recs) != 10 {
		t.Fatalf("Fetch = %d records, %v", len(recs), err)
	}
	if err := c.Commit(ctx, recs[:6]...); err != nil {
		t.Fatal(err)
	}
	if o, _ = m.Offsets(ctx, StreamAccepted, p, "g"); o.Committed != 6 {
		t.Fatalf("committed = %d, want 6", o.Committed)
	}
	for _, tc := range []struct {
		name     string
		from, to int64
		want     []int
	}{
		{"Middle", 2, 5, []int{2, 3, 4}},
		{"PastEnd", 8, 99, []int{8, 9}},
		{"Empty", 5, 5, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rs, err := m.ReadRange(ctx, StreamAccepted, p, tc.from, tc.to)
			if err != nil || len(rs) != len(tc.want) {
				t.Fatalf("ReadRange = %d records, %v; want %d", len(rs), err, len(tc.want))
			}
			for i, r := range rs {
				if r.Offset != int64(tc.want[i]) || string(r.Value) != "v"+strconv.Itoa(tc.want[i]) {
					t.Errorf("record %d = %+v", i, r)
				}
			}
		})
	}
	if _, err := m.ReadRange(ctx, StreamAccepted, 4, 0, 1); err != ErrNoPartition {
		t.Errorf("missing partition: err = %v, want ErrNoPartition", err)
	}
}
