package kafkabus

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

var (
	_ bus.PartitionSubscriber = (*Bus)(nil)
	_ bus.PartitionConsumer   = (*consumer)(nil)
)

// PartitionConsumer opens a consumer of stream without a group that reads
// no partition until Assign (bus.PartitionSubscriber). Each assigned
// partition gets a reader of its own, as a group-less consumer's
// partitions do (consumer.readPartition); its deliveries carry the epoch
// of its assignment in place of a group generation.
func (b *Bus) PartitionConsumer(stream string) (bus.PartitionConsumer, error) {
	topic := b.Topic(stream)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := b.partitionCount(ctx, stream)
	if err != nil {
		return nil, err
	}
	cctx, ccancel := context.WithCancel(context.Background())
	c := &consumer{
		b:        b,
		stream:   stream,
		topic:    topic,
		ch:       make(chan delivery, b.cfg.MaxFetch),
		ctx:      cctx,
		cancel:   ccancel,
		closed:   make(chan struct{}),
		manual:   true,
		assigned: make([]atomic.Int32, n),
		readers:  make(map[int]context.CancelFunc),
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		ccancel()
		return nil, fmt.Errorf("kafkabus: consume %s: %w", topic, bus.ErrClosed)
	}
	b.consumers[c] = struct{}{}
	return c, nil
}

// Assign starts a reader of partition at offset, stopping the one it had
// (bus.PartitionConsumer). The reader dials the partition's leader in the
// background.
func (c *consumer) Assign(partition int, offset int64) error {
	if !c.manual {
		return fmt.Errorf("kafkabus: assign %s/%d: not a partition consumer", c.topic, partition)
	}
	switch {
	case partition < 0 || partition >= len(c.assigned):
		return fmt.Errorf("kafkabus: assign %s/%d: %w", c.topic, partition, bus.ErrNoPartition)
	case offset < 0:
		return fmt.Errorf("kafkabus: assign %s/%d at %d: %w", c.topic, partition, offset, bus.ErrBadOffset)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	select {
	case <-c.closed:
		return fmt.Errorf("kafkabus: assign %s/%d: %w", c.topic, partition, bus.ErrClosed)
	default:
	}
	if stop := c.readers[partition]; stop != nil {
		stop()
	}
	c.nextEpoch++
	epoch := c.nextEpoch
	c.assigned[partition].Store(epoch)
	ctx, stop := context.WithCancel(c.ctx)
	c.readers[partition] = stop
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		c.readPartition(ctx, epoch, partition, offset)
	}()
	return nil
}

// Unassign stops partition's reader (bus.PartitionConsumer); what it
// already handed over is dropped by Fetch.
func (c *consumer) Unassign(partition int) error {
	if !c.manual {
		return fmt.Errorf("kafkabus: unassign %s/%d: not a partition consumer", c.topic, partition)
	}
	if partition < 0 || partition >= len(c.assigned) {
		return fmt.Errorf("kafkabus: unassign %s/%d: %w", c.topic, partition, bus.ErrNoPartition)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if stop := c.readers[partition]; stop != nil {
		stop()
		delete(c.readers, partition)
	}
	c.assigned[partition].Store(0)
	return nil
}

// current reports whether d comes from its partition's current reader.
func (c *consumer) current(d delivery) bool {
	p := d.msg.Partition
	return p >= 0 && p < len(c.assigned) && d.gen != 0 && c.assigned[p].Load() == d.gen
}

// fetchAssigned is Fetch of a partition consumer: it waits for the first
// record of a current reader, then adds whatever else is buffered, up to
// Config.MaxFetch records.
func (c *consumer) fetchAssigned(ctx context.Context) ([]bus.Record, error) {
	var out []bus.Record
	for len(out) == 0 {
		select {
		case d := <-c.ch:
			if c.current(d) {
				out = append(out, record(d.msg))
			}
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-c.closed:
			return nil, fmt.Errorf("kafkabus: fetch %s: %w", c.topic, bus.ErrClosed)
		}
	}
	for len(out) < c.b.cfg.MaxFetch {
		select {
		case d := <-c.ch:
			if c.current(d) {
				out = append(out, record(d.msg))
			}
		default:
			return out, nil
		}
	}
	return out, nil
}
