package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

// delivery is one fetched message and the group generation it was read in
// (0 without a group).
type delivery struct {
	gen int32
	msg kafka.Message
}

// consumer reads one topic with one partition reader per owned partition.
//
// With a group it drives a kafka.ConsumerGroup itself rather than a
// kafka.Reader with GroupID: the group's generations are visible, so
// Generation (bus.Rebalancer) can report them, Fetch can drop records read
// in a generation that has ended, and Commit can skip partitions the
// consumer no longer owns instead of committing on behalf of their new
// owner. For every generation, runGroup starts a reader per assigned
// partition at the group's committed offset (the earliest retained record
// for a new group) through Generation.Start; the generation ends, and its
// readers stop, when the coordinator rebalances.
//
// Without a group, a reader per partition (or only the key's partition when
// ConsumerOptions.Key is set) starts at the newest offset, resolved before
// Consumer returns.
//
// Readers hand deliveries to Fetch over ch; each partition's reader runs in
// its own goroutine, so partition order is kept.
type consumer struct {
	b      *Bus
	stream string
	topic  string
	opts   bus.ConsumerOptions
	ch     chan delivery

	ctx    context.Context // ends on Close
	cancel context.CancelFunc
	cg     *kafka.ConsumerGroup // nil without a group
	wg     sync.WaitGroup       // runGroup or the group-less readers

	curGen atomic.Int32 // generation of the newest assignment
	// fetchGen is the generation of the latest Fetch's records.
	fetchGen atomic.Int64

	// pending holds a delivery of a newer generation than the batch being
	// drained; the next Fetch returns it first. Used by the Fetch goroutine
	// only.
	pending *delivery

	mu        sync.Mutex // guards gen, genEnded, owned, committed
	gen       *kafka.Generation
	genEnded  chan struct{} // closed when gen has ended, before its connection closes
	owned     map[int]bool
	committed map[int]int64 // offsets committed in gen

	// manual: opened by PartitionConsumer (assign.go). assigned holds,
	// per partition, the epoch of its current reader (0: not assigned);
	// Fetch drops deliveries of any other epoch. readers (the cancel of
	// each assigned partition's reader) and nextEpoch are guarded by mu.
	manual    bool
	assigned  []atomic.Int32
	readers   map[int]context.CancelFunc
	nextEpoch int32

	closeOnce sync.Once
	closed    chan struct{}
}

// Consumer opens a consumer of stream. With a group it joins the group in
// the background; the first Fetch waits for the assignment. Without a
// group it starts after the newest record of every partition (of the key's
// partition when opts.Key is set).
func (b *Bus) Consumer(stream string, opts bus.ConsumerOptions) (bus.Consumer, error) {
	topic := b.Topic(stream)
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed {
		return nil, fmt.Errorf("kafkabus: consume %s: %w", topic, bus.ErrClosed)
	}
	ctx, cancel := context.WithCancel(context.Background())
	c := &consumer{
		b:      b,
		stream: stream,
		topic:  topic,
		opts:   opts,
		ch:     make(chan delivery, b.cfg.MaxFetch),
		ctx:    ctx,
		cancel: cancel,
		closed: make(chan struct{}),
	}
	setupCtx, setupCancel := context.WithTimeout(ctx, 30*time.Second)
	defer setupCancel()
	var err error
	if opts.Group != "" {
		if _, err = b.partitionCount(setupCtx, stream); err == nil {
			err = c.startGroup()
		}
	} else {
		err = c.startGroupless(setupCtx, stream)
	}
	if err != nil {
		cancel()
		return nil, err
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		_ = c.Close()
		return nil, fmt.Errorf("kafkabus: consume %s: %w", topic, bus.ErrClosed)
	}
	b.consumers[c] = struct{}{}
	b.mu.Unlock()
	return c, nil
}

func (c *consumer) startGroup() error {
	cfg := c.b.cfg
	cg, err := kafka.NewConsumerGroup(kafka.ConsumerGroupConfig{
		ID:                c.b.GroupID(c.opts.Group),
		Brokers:           cfg.Brokers,
		Dialer:            c.b.dialer,
		Topics:            []string{c.topic},
		HeartbeatInterval: cfg.HeartbeatInterval,
		SessionTimeout:    cfg.SessionTimeout,
		RebalanceTimeout:  cfg.SessionTimeout,
		JoinGroupBackoff:  cfg.HeartbeatInterval,
		StartOffset:       kafka.FirstOffset,
		Logger:            c.b.debugLogger(),
		ErrorLogger:       c.b.errorLogger(),
	})
	if err != nil {
		return fmt.Errorf("kafkabus: group %s on %s: %w", c.opts.Group, c.topic, err)
	}
	c.cg = cg
	c.wg.Add(1)
	go c.runGroup()
	return nil
}

// runGroup follows the group's generations until Close. It runs in its own
// goroutine.
func (c *consumer) runGroup() {
	defer c.wg.Done()
	for {
		gen, err := c.cg.Next(c.ctx)
		if err != nil {
			if c.ctx.Err() != nil || errors.Is(err, kafka.ErrGroupClosed) {
				return
			}
			// The group retries joins itself, after its backoff.
			lvl := slog.LevelWarn
			if errors.Is(err, kafka.RebalanceInProgress) {
				lvl = slog.LevelDebug // another member joined or left mid-join
			}
			c.b.log.Log(c.ctx, lvl, "kafkabus: consumer group", "group", c.opts.Group, "topic", c.topic, "err", err)
			continue
		}
		owned := make(map[int]bool)
		assigned := gen.Assignments[c.topic]
		for _, a := range assigned {
			owned[a.ID] = true
		}
		// kafka-go closes a generation's coordinator connection only after
		// every function given to gen.Start has returned, so a commit that
		// fails on that closed connection finds ended closed.
		ended := make(chan struct{})
		gen.Start(func(ctx context.Context) {
			<-ctx.Done()
			close(ended)
		})
		c.mu.Lock()
		c.gen, c.genEnded, c.owned, c.committed = gen, ended, owned, make(map[int]int64)
		c.curGen.Store(gen.ID)
		c.mu.Unlock()
		ids := make([]int, len(assigned))
		for i, a := range assigned {
			ids[i] = a.ID
		}
		// Info: a generation is rare, and when a group's partitions sit
		// unread (members that crashed hold them until their sessions
		// end) its start is what an operator looks for.
		c.b.log.Info("kafkabus: group generation", "group", c.opts.Group, "topic", c.topic,
			"generation", gen.ID, "partitions", ids)
		for _, a := range assigned {
			gen.Start(func(ctx context.Context) {
				c.readPartition(ctx, gen.ID, a.ID, a.Offset)
			})
		}
	}
}

// startGroupless starts a reader per partition (only the key's partition
// when opts.Key is set) at the partition's newest offset, read from its
// leader before it returns.
func (c *consumer) startGroupless(ctx context.Context, stream string) error {
	all, err := c.b.readPartitions(ctx, stream)
	if err != nil {
		return err
	}
	parts := all
	if c.opts.Key != "" {
		p := partitionOf(c.opts.Key, len(all))
		parts = nil
		for _, pt := range all {
			if pt.ID == p {
				parts = append(parts, pt)
			}
		}
	}
	start := make([]int64, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, pt := range parts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := c.b.dialer.DialPartition(ctx, "tcp", "", pt)
			if err != nil {
				errs[i] = fmt.Errorf("kafkabus: dial leader of %s/%d: %w", c.topic, pt.ID, err)
				return
			}
			defer conn.Close()
			if dl, ok := ctx.Deadline(); ok {
				_ = conn.SetDeadline(dl)
			}
			if start[i], err = conn.ReadLastOffset(); err != nil {
				errs[i] = fmt.Errorf("kafkabus: newest offset of %s/%d: %w", c.topic, pt.ID, err)
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return err
	}
	for i, pt := range parts {
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			c.readPartition(c.ctx, 0, pt.ID, start[i])
		}()
	}
	return nil
}

// readPartition reads partition p from offset until ctx ends, handing each
// record to Fetch. It runs in its own goroutine.
//
// It fetches from the partition's leader on a connection of its own, with
// one fetch request in flight that the broker holds up to Config.MaxWait,
// so an idle partition costs one request per MaxWait. Ending ctx closes
// the connection, so a pending fetch does not hold up Close or a
// rebalance. On an error (a broken connection, a new leader) it dials the
// leader again, after a backoff that grows to 5s while nothing is read,
// and goes on from the offset after the last record it handed over.
func (c *consumer) readPartition(ctx context.Context, gen int32, p int, offset int64) {
	for attempt := 0; ; attempt++ {
		if attempt > 0 {
			select {
			case <-ctx.Done():
			case <-time.After(min(time.Duration(attempt)*c.b.cfg.MaxWait, 5*time.Second)):
			}
		}
		if ctx.Err() != nil {
			return
		}
		conn, err := c.b.leader(ctx, c.stream, p)
		if err != nil {
			if ctx.Err() == nil {
				c.b.log.Warn("kafkabus: fetch", "topic", c.topic, "partition", p, "err", err)
			}
			continue
		}
		stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
		from := offset
		offset, err = c.fetchLoop(ctx, conn, gen, p, offset)
		stop()
		_ = conn.Close()
		if ctx.Err() != nil {
			return
		}
		c.b.log.Warn("kafkabus: fetch", "topic", c.topic, "partition", p, "offset", offset, "err", err)
		if offset != from {
			attempt = 0 // it was reading: retry at once
		}
	}
}

// fetchLoop fetches partition p on conn from offset until an error, which
// it returns with the offset to go on from. A negative offset
// (kafka.FirstOffset, kafka.LastOffset: a group without a committed offset)
// is resolved first; an offset the partition no longer holds moves to the
// oldest one it does (records lost to retention are logged); an assigned
// offset past the end (a partition consumer) moves to the end.
func (c *consumer) fetchLoop(ctx context.Context, conn *kafka.Conn, gen int32, p int, offset int64) (int64, error) {
	take := func(m kafka.Message) bool {
		select {
		case c.ch <- delivery{gen: gen, msg: m}:
			return true
		case <-ctx.Done():
			return false
		}
	}
	if c.manual && offset > 0 {
		// An assigned offset past the end reads from the end (not every
		// broker answers such a fetch with OffsetOutOfRange).
		_, last, err := conn.ReadOffsets()
		if err != nil {
			return offset, err
		}
		offset = min(offset, last)
	}
	for {
		if offset < 0 {
			first, last, err := conn.ReadOffsets()
			if err != nil {
				return offset, err
			}
			if offset == kafka.LastOffset {
				offset = last
			} else {
				offset = first
			}
			continue
		}
		var err error
		if offset, _, err = fetchOnce(conn, offset, c.b.cfg.MaxWait, take); err == nil {
			if err = ctx.Err(); err != nil {
				return offset, err
			}
			continue
		}
		if !errors.Is(err, kafka.OffsetOutOfRange) {
			return offset, err
		}
		first, last, err := conn.ReadOffsets()
		if err != nil {
			return offset, err
		}
		switch {
		case offset < first:
			c.b.log.Warn("kafkabus: records no longer retained, skipped", "topic", c.topic, "partition", p,
				"from", offset, "to", first)
			offset = first
		case offset > last:
			offset = last
		}
	}
}

// Fetch waits for the first record, then adds whatever else is already
// buffered, up to Config.MaxFetch records of one generation. Records read
// in a generation that has ended are dropped: the partition's owner in the
// new generation reads them again from the committed offset.
func (c *consumer) Fetch(ctx context.Context) ([]bus.Record, error) {
	select {
	case <-c.closed:
		return nil, fmt.Errorf("kafkabus: fetch %s: %w", c.topic, bus.ErrClosed)
	default:
	}
	if c.manual {
		return c.fetchAssigned(ctx)
	}
	var out []bus.Record
	var gen int32
	for len(out) == 0 {
		var d delivery
		if c.pending != nil {
			d, c.pending = *c.pending, nil
		} else {
			select {
			case d = <-c.ch:
			case <-ctx.Done():
				return nil, ctx.Err()
			case <-c.closed:
				return nil, fmt.Errorf("kafkabus: fetch %s: %w", c.topic, bus.ErrClosed)
			}
		}
		// Records of any generation but the newest are dropped. Compare for
		// equality: generation ids grow on Apache Kafka, but a broker that
		// lost its group state (the dev broker after a restart) starts them
		// again from 1.
		if d.gen != c.curGen.Load() || !c.match(d.msg) {
			continue
		}
		gen = d.gen
		out = append(out, record(d.msg))
	}
drain:
	for len(out) < c.b.cfg.MaxFetch {
		select {
		case d := <-c.ch:
			switch {
			case d.gen == gen:
				if c.match(d.msg) {
					out = append(out, record(d.msg))
				}
			case d.gen == c.curGen.Load():
				c.pending = &d // a newer generation began
				break drain
			}
		default:
			break drain
		}
	}
	c.fetchGen.Store(int64(gen))
	return out, nil
}

func (c *consumer) match(m kafka.Message) bool {
	return c.opts.Key == "" || string(m.Key) == c.opts.Key
}

func record(m kafka.Message) bus.Record {
	return bus.Record{Key: string(m.Key), Value: m.Value, Partition: m.Partition, Offset: m.Offset}
}

// Generation returns the group generation of the latest Fetch's records
// (bus.Rebalancer); 0 without a group or before the first Fetch.
func (c *consumer) Generation() int64 { return c.fetchGen.Load() }

// Commit commits, per partition, the offset after the highest record of
// recs, in the generation the latest Fetch belongs to. Records of
// partitions the consumer no longer owns are skipped, and a commit the
// coordinator refuses because the group is rebalancing, or that fails
// because its generation ended meanwhile (or a newer one began since the
// records were fetched), is dropped: in all these cases the partition's
// next owner reads the records again (at-least-once), and the error wraps
// bus.ErrNotOwner. Without a group Commit does nothing. The commit request
// itself is bounded by the group's own timeout, not by ctx.
func (c *consumer) Commit(ctx context.Context, recs ...bus.Record) error {
	if c.cg == nil || len(recs) == 0 {
		return nil
	}
	select {
	case <-c.closed:
		return fmt.Errorf("kafkabus: commit %s: %w", c.topic, bus.ErrClosed)
	default:
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kafkabus: commit %s: %w", c.topic, err)
	}
	c.mu.Lock()
	gen, ended := c.gen, c.genEnded
	stale := gen == nil || int64(gen.ID) != c.fetchGen.Load()
	offsets := make(map[int]int64)
	notOwned := 0
	for _, r := range recs {
		next := r.Offset + 1
		switch {
		case stale || !c.owned[r.Partition]:
			notOwned++
		case next <= c.committed[r.Partition] || next <= offsets[r.Partition]:
		default:
			offsets[r.Partition] = next
		}
	}
	c.mu.Unlock()
	var err error
	if len(offsets) > 0 {
		err = c.commitGen(gen, ended, offsets)
	}
	if err == nil && notOwned > 0 {
		err = fmt.Errorf("kafkabus: commit %s: %d records: %w", c.topic, notOwned, bus.ErrNotOwner)
	}
	return err
}

// commitGen commits offsets in generation gen, whose ended channel closes
// when it ends.
func (c *consumer) commitGen(gen *kafka.Generation, ended <-chan struct{}, offsets map[int]int64) error {
	err := gen.CommitOffsets(map[string]map[int]int64{c.topic: offsets})
	switch {
	case err == nil:
	case errors.Is(err, kafka.RebalanceInProgress), errors.Is(err, kafka.IllegalGeneration),
		errors.Is(err, kafka.UnknownMemberId), errors.Is(err, kafka.NotCoordinatorForGroup):
		c.b.log.Debug("kafkabus: commit dropped by a rebalance", "group", c.opts.Group, "topic", c.topic, "err", err)
		return fmt.Errorf("kafkabus: commit %s: %w (%v)", c.topic, bus.ErrNotOwner, err)
	case isClosed(ended):
		// The generation ended while the commit was in flight and kafka-go
		// closed its connection (the error is then "use of closed network
		// connection"): a rebalance too.
		c.b.log.Debug("kafkabus: commit dropped: generation ended", "group", c.opts.Group, "topic", c.topic, "err", err)
		return fmt.Errorf("kafkabus: commit %s: %w (generation ended: %v)", c.topic, bus.ErrNotOwner, err)
	default:
		return fmt.Errorf("kafkabus: commit %s for group %s: %w", c.topic, c.opts.Group, err)
	}
	c.mu.Lock()
	if c.gen == gen {
		for p, o := range offsets {
			if o > c.committed[p] {
				c.committed[p] = o
			}
		}
	}
	c.mu.Unlock()
	return nil
}

func isClosed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

// Prove commits offset for partition in the generation of the latest
// Fetch, unconditionally (bus.Prover): the coordinator accepts it only
// while that generation is current and, by the group's assignment, the
// partition is this consumer's.
func (c *consumer) Prove(ctx context.Context, partition int, offset int64) error {
	if c.cg == nil {
		return fmt.Errorf("kafkabus: prove %s/%d: no group: %w", c.topic, partition, bus.ErrNotOwner)
	}
	select {
	case <-c.closed:
		return fmt.Errorf("kafkabus: prove %s: %w", c.topic, bus.ErrClosed)
	default:
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	gen, ended := c.gen, c.genEnded
	ok := gen != nil && int64(gen.ID) == c.fetchGen.Load() && c.owned[partition]
	offset = max(offset, c.committed[partition], 0) // never move the group's offset back
	c.mu.Unlock()
	if !ok {
		return fmt.Errorf("kafkabus: prove %s/%d: %w", c.topic, partition, bus.ErrNotOwner)
	}
	return c.commitGen(gen, ended, map[int]int64{partition: offset})
}

// Close stops the readers and leaves the group. Close is idempotent.
func (c *consumer) Close() error {
	c.closeOnce.Do(func() {
		close(c.closed)
		c.cancel()
		if c.cg != nil {
			_ = c.cg.Close() // leaves the group; always returns nil
		}
		c.wg.Wait()
		c.b.mu.Lock()
		delete(c.b.consumers, c)
		c.b.mu.Unlock()
	})
	return nil
}
