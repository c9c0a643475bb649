package kafkabus

import (
	"context"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

// TestGroupIDsCarryThePrefix: a stage's group is the topic prefix plus its
// name on the brokers, so deployments (or tests) with different prefixes
// on one cluster never share a group's rebalances and crashed members.
func TestGroupIDsCarryThePrefix(t *testing.T) {
	cfg := testConfig(t)
	b := newTestBus(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Publisher(bus.StreamAccepted).Publish(ctx, bus.Record{Key: "room", Value: []byte(`{"x":1}`)}); err != nil {
		t.Fatal(err)
	}
	c, err := b.Consumer(bus.StreamAccepted, bus.ConsumerOptions{Group: "stage"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	recs, err := c.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Commit(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	p := recs[0].Partition
	cl := &kafka.Client{Addr: kafka.TCP(cfg.Brokers...), Timeout: 10 * time.Second}
	committed := func(group string) int64 {
		resp, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{b.Topic(bus.StreamAccepted): {p}}})
		if err != nil {
			return -1 // an unknown group
		}
		for _, tp := range resp.Topics[b.Topic(bus.StreamAccepted)] {
			if tp.Partition == p {
				return tp.CommittedOffset
			}
		}
		return -1
	}
	if got := committed(cfg.TopicPrefix + "stage"); got != recs[0].Offset+1 {
		t.Fatalf("group %q committed %d, want %d", cfg.TopicPrefix+"stage", got, recs[0].Offset+1)
	}
	if got := committed("stage"); got >= 0 {
		t.Fatalf("the bare group name \"stage\" has a commit (%d): groups are shared across prefixes", got)
	}
	if o, err := b.Offsets(ctx, bus.StreamAccepted, p, "stage"); err != nil || o.Committed != recs[0].Offset+1 {
		t.Fatalf("Offsets for group stage: %+v, %v", o, err)
	}
}
