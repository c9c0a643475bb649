package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

var _ bus.PartitionReader = (*Bus)(nil)

// Partitions returns the partition count of stream's topic
// (bus.PartitionReader), creating the topic when it is missing and
// Config.CreateTopics is set.
func (b *Bus) Partitions(ctx context.Context, stream string) (int, error) {
	return b.partitionCount(ctx, stream)
}

// leader dials the leader of one partition of stream's topic. The
// connection's deadline follows ctx (30s without one).
func (b *Bus) leader(ctx context.Context, stream string, partition int) (*kafka.Conn, error) {
	n, err := b.partitionCount(ctx, stream)
	if err != nil {
		return nil, err
	}
	if partition < 0 || partition >= n {
		return nil, fmt.Errorf("kafkabus: %s/%d: %w", b.Topic(stream), partition, bus.ErrNoPartition)
	}
	conn, err := b.dialer.DialLeader(ctx, "tcp", b.cfg.Brokers[0], b.Topic(stream), partition)
	if err != nil {
		// The first broker may be down: find the leader through the
		// others.
		parts, perr := b.readPartitions(ctx, stream)
		if perr != nil {
			return nil, errors.Join(err, perr)
		}
		for _, p := range parts {
			if p.ID == partition {
				conn, err = b.dialer.DialPartition(ctx, "tcp", "", p)
				break
			}
		}
		if err != nil {
			return nil, fmt.Errorf("kafkabus: dial leader of %s/%d: %w", b.Topic(stream), partition, err)
		}
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(30 * time.Second)
	}
	_ = conn.SetDeadline(dl)
	return conn, nil
}

// Offsets returns the oldest and end offsets of one partition of stream's
// topic and, when group is not empty, the group's committed offset of it
// (bus.PartitionReader).
func (b *Bus) Offsets(ctx context.Context, stream string, partition int, group string) (bus.PartitionOffsets, error) {
	topic := b.Topic(stream)
	conn, err := b.leader(ctx, stream, partition)
	if err != nil {
		return bus.PartitionOffsets{}, err
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return bus.PartitionOffsets{}, fmt.Errorf("kafkabus: offsets of %s/%d: %w", topic, partition, err)
	}
	o := bus.PartitionOffsets{Oldest: first, End: last, Committed: -1}
	if group == "" {
		return o, nil
	}
	cl := &kafka.Client{Addr: b.addr, Timeout: 10 * time.Second,
		Transport: &kafka.Transport{ClientID: b.cfg.ClientID, DialTimeout: 10 * time.Second}}
	defer cl.Transport.(*kafka.Transport).CloseIdleConnections()
	resp, err := cl.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: b.GroupID(group), Topics: map[string][]int{topic: {partition}}})
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	if errors.Is(err, kafka.GroupIdNotFound) {
		return o, nil // the group has not committed yet
	}
	if err != nil {
		return o, fmt.Errorf("kafkabus: committed offset of group %s on %s/%d: %w", group, topic, partition, err)
	}
	for _, p := range resp.Topics[topic] {
		if p.Partition != partition {
			continue
		}
		if p.Error != nil && !errors.Is(p.Error, kafka.UnknownTopicOrPartition) {
			return o, fmt.Errorf("kafkabus: committed offset of group %s on %s/%d: %w", group, topic, partition, p.Error)
		}
		if p.CommittedOffset >= 0 {
			o.Committed = p.CommittedOffset
		}
	}
	return o, nil
}

// ReadRange returns the records of one partition of stream's topic with
// from <= offset < to, reading from the partition leader
// (bus.PartitionReader). Records no longer retained are skipped.
func (b *Bus) ReadRange(ctx context.Context, stream string, partition int, from, to int64) ([]bus.Record, error) {
	if from >= to {
		return nil, nil
	}
	topic := b.Topic(stream)
	conn, err := b.leader(ctx, stream, partition)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	first, last, err := conn.ReadOffsets()
	if err != nil {
		return nil, fmt.Errorf("kafkabus: offsets of %s/%d: %w", topic, partition, err)
	}
	next, to := max(from, first), min(to, last)
	var out []bus.Record
	for next < to {
		got := 0
		var hwm int64
		next, hwm, err = fetchOnce(conn, next, b.cfg.MaxWait, func(m kafka.Message) bool {
			if m.Offset >= to {
				return false
			}
			out = append(out, record(m))
			got++
			return true
		})
		if err != nil && !errors.Is(err, kafka.OffsetOutOfRange) {
			return nil, fmt.Errorf("kafkabus: read %s/%d at %d: %w", topic, partition, next, err)
		}
		if got == 0 {
			if hwm > 0 && hwm <= next {
				break // nothing more to read
			}
			if err := ctx.Err(); err != nil {
				return nil, fmt.Errorf("kafkabus: read %s/%d: %w", topic, partition, err)
			}
			next++ // an offset without a record (a transaction marker)
		}
	}
	return out, nil
}

// fetchMaxBytes bounds one fetch response per partition. A record batch
// larger than this still comes whole (the broker returns at least one).
const fetchMaxBytes = 10 << 20

// fetchSlack is added to Config.MaxWait for a fetch's socket deadline: the
// broker answers after MaxWait at the latest, so a connection silent for
// longer than this is broken.
const fetchSlack = 15 * time.Second

// fetchOnce sends one fetch request at offset next to conn's partition
// (the broker holds it up to maxWait for a first record) and hands fn the
// records from next on, in order, until fn returns false (that record is
// not taken). It returns the offset after the last record taken and the
// partition's high-water mark. A compressed batch can start before next;
// its earlier records are skipped. An empty answer is not an error:
// kafka-go reports one that came after maxWait as RequestTimedOut, on a
// connection that is fine.
func fetchOnce(conn *kafka.Conn, next int64, maxWait time.Duration, fn func(kafka.Message) bool) (int64, int64, error) {
	_ = conn.SetDeadline(time.Now().Add(maxWait + fetchSlack))
	if _, err := conn.Seek(next, kafka.SeekAbsolute|kafka.SeekDontCheck); err != nil {
		return next, 0, err
	}
	batch := conn.ReadBatchWith(kafka.ReadBatchConfig{MinBytes: 1, MaxBytes: fetchMaxBytes, MaxWait: maxWait})
	for {
		m, err := batch.ReadMessage()
		if err != nil {
			break
		}
		if m.Offset < next {
			continue
		}
		if !fn(m) {
			break
		}
		next = m.Offset + 1
	}
	hwm := batch.HighWaterMark()
	err := batch.Close()
	if errors.Is(err, kafka.RequestTimedOut) {
		err = nil
	}
	return next, hwm, err
}

var _ bus.PartitionWriter = (*Bus)(nil)

// Append writes recs to one partition of stream's topic in one produce
// request to its leader and returns the offset of the first record
// (bus.PartitionWriter). It needs acknowledgements (Config.RequiredAcks one
// or all): without them the broker tells no offsets. kafka-go's Writer is
// not used: it picks partitions itself, and its WriteMessages may return on
// ctx expiry while the batch stays queued and lands later; here a request
// is sent once, and a caller that gets an error must assume it may still
// land.
func (b *Bus) Append(ctx context.Context, stream string, partition int, recs ...bus.Record) (int64, error) {
	topic := b.Topic(stream)
	if b.acks == kafka.RequireNone {
		return 0, fmt.Errorf("kafkabus: append to %s: needs acks one or all", topic)
	}
	n, err := b.partitionCount(ctx, stream)
	if err != nil {
		return 0, err
	}
	if partition < 0 || partition >= n {
		return 0, fmt.Errorf("kafkabus: %s/%d: %w", topic, partition, bus.ErrNoPartition)
	}
	cl, err := b.produceClient()
	if err != nil {
		return 0, fmt.Errorf("kafkabus: append to %s: %w", topic, err)
	}
	krecs := make([]kafka.Record, len(recs))
	for i, r := range recs {
		krecs[i] = kafka.Record{Key: kafka.NewBytes([]byte(r.Key)), Value: kafka.NewBytes(r.Value)}
	}
	resp, err := cl.Produce(ctx, &kafka.ProduceRequest{
		Topic:        topic,
		Partition:    partition,
		RequiredAcks: b.acks,
		Records:      kafka.NewRecordReader(krecs...),
		Compression:  b.codec,
	})
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	if err != nil {
		return 0, fmt.Errorf("kafkabus: append to %s/%d: %w", topic, partition, err)
	}
	return resp.BaseOffset, nil
}

// produceClient returns the bus's client for Append, creating it on first
// use.
func (b *Bus) produceClient() (*kafka.Client, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, bus.ErrClosed
	}
	if b.client == nil {
		b.client = &kafka.Client{Addr: b.addr, Timeout: 10 * time.Second,
			Transport: &kafka.Transport{ClientID: b.cfg.ClientID, DialTimeout: 10 * time.Second}}
	}
	return b.client, nil
}
