package bus

import (
	"context"
	"fmt"
	"sync"
)

var (
	_ Bus             = (*Memory)(nil)
	_ Rebalancer      = (*memConsumer)(nil)
	_ Prover          = (*memConsumer)(nil)
	_ PartitionReader = (*Memory)(nil)
	_ PartitionWriter = (*Memory)(nil)

	_ PartitionSubscriber = (*Memory)(nil)
	_ PartitionConsumer   = (*memConsumer)(nil)
)

// MemoryConfig configures the in-memory bus.
type MemoryConfig struct {
	// Partitions per stream. Zero value means 8.
	Partitions int
	// Retain bounds memory: when a partition passes 4*Retain records it is
	// trimmed to the newest Retain, whether or not every group has read them
	// (a group that lags that far skips ahead). Zero value means 65536.
	Retain int
	// MaxFetch caps the records one Fetch returns. Zero value means 1024.
	MaxFetch int
}

// Memory is the embedded bus: partitioned, ordered, in-process logs with
// consumer groups and committed offsets, like Kafka without durability
// across restarts. It is safe for concurrent use.
type Memory struct {
	cfg     MemoryConfig
	mu      sync.Mutex // guards streams
	streams map[string]*memStream
	closed  bool
}

// NewMemory returns an in-memory bus.
func NewMemory(cfg MemoryConfig) *Memory {
	if cfg.Partitions <= 0 {
		cfg.Partitions = 8
	}
	if cfg.Retain <= 0 {
		cfg.Retain = 65536
	}
	if cfg.MaxFetch <= 0 {
		cfg.MaxFetch = 1024
	}
	return &Memory{cfg: cfg, streams: make(map[string]*memStream)}
}

// Close wakes every consumer; further calls fail with ErrClosed.
func (m *Memory) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil
	}
	m.closed = true
	for _, s := range m.streams {
		s.mu.Lock()
		s.closed = true
		s.wakeLocked()
		s.mu.Unlock()
	}
	return nil
}

func (m *Memory) stream(name string) (*memStream, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return nil, ErrClosed
	}
	s := m.streams[name]
	if s == nil {
		s = &memStream{
			cfg:    m.cfg,
			parts:  make([]memPartition, m.cfg.Partitions),
			groups: make(map[string]*memGroup),
			notify: make(chan struct{}),
		}
		m.streams[name] = s
	}
	return s, nil
}

// Publisher returns a publisher for stream.
func (m *Memory) Publisher(stream string) Publisher {
	return memPublisher{m: m, name: stream}
}

// Consumer opens a consumer of stream.
func (m *Memory) Consumer(stream string, opts ConsumerOptions) (Consumer, error) {
	s, err := m.stream(stream)
	if err != nil {
		return nil, err
	}
	c := &memConsumer{s: s, opts: opts, pos: make([]int64, len(s.parts))}
	s.mu.Lock()
	defer s.mu.Unlock()
	if opts.Group == "" {
		c.owned = make([]bool, len(s.parts))
		for p := range s.parts {
			c.owned[p] = true
			c.pos[p] = s.parts[p].base + int64(len(s.parts[p].recs))
		}
		return c, nil
	}
	g := s.groups[opts.Group]
	if g == nil {
		g = &memGroup{committed: make([]int64, len(s.parts))}
		for p := range s.parts {
			g.committed[p] = s.parts[p].base // a new group reads what is retained
		}
		s.groups[opts.Group] = g
	}
	g.members = append(g.members, c)
	g.gen++
	c.group = g
	c.gen = -1
	s.wakeLocked()
	return c, nil
}

type memPublisher struct {
	m    *Memory
	name string
}

func (p memPublisher) Publish(ctx context.Context, recs ...Record) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s, err := p.m.stream(p.name)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrClosed
	}
	for _, r := range recs {
		s.appendLocked(KeyPartition(r.Key, len(s.parts)), r)
	}
	s.wakeLocked()
	return nil
}

// Append writes recs to one partition of stream (bus.PartitionWriter).
func (m *Memory) Append(ctx context.Context, stream string, partition int, recs ...Record) (int64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s, err := m.stream(stream)
	if err != nil {
		return 0, err
	}
	if partition < 0 || partition >= len(s.parts) {
		return 0, ErrNoPartition
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return 0, ErrClosed
	}
	base := s.parts[partition].base + int64(len(s.parts[partition].recs))
	for _, r := range recs {
		s.appendLocked(partition, r)
	}
	s.wakeLocked()
	return base, nil
}

// memStream is one stream's partitions and groups. mu guards every field.
type memStream struct {
	cfg    MemoryConfig
	mu     sync.Mutex
	parts  []memPartition
	groups map[string]*memGroup
	notify chan struct{} // closed and replaced whenever something changes
	closed bool
}

type memPartition struct {
	base int64 // offset of recs[0]
	recs []Record
}

type memGroup struct {
	members   []*memConsumer
	committed []int64
	gen       int
}

// wakeLocked wakes every Fetch waiting on the stream. s.mu must be held.
func (s *memStream) wakeLocked() {
	close(s.notify)
	s.notify = make(chan struct{})
}

// appendLocked appends r to partition pi and returns its offset. s.mu must
// be held.
func (s *memStream) appendLocked(pi int, r Record) int64 {
	part := &s.parts[pi]
	off := part.base + int64(len(part.recs))
	part.recs = append(part.recs, Record{Key: r.Key, Value: r.Value, Partition: pi, Offset: off})
	if len(part.recs) > 4*s.cfg.Retain {
		s.trimLocked(pi)
	}
	return off
}

// trimLocked drops the oldest records of partition pi down to Retain.
// s.mu must be held.
func (s *memStream) trimLocked(pi int) {
	part := &s.parts[pi]
	keepFrom := part.base + int64(len(part.recs)-s.cfg.Retain)
	drop := int(keepFrom - part.base)
	if drop <= 0 {
		return
	}
	n := copy(part.recs, part.recs[drop:])
	clear(part.recs[n:])
	part.recs = part.recs[:n]
	part.base = keepFrom
}

type memConsumer struct {
	s     *memStream
	opts  ConsumerOptions
	group *memGroup
	gen   int
	// manual: opened by PartitionConsumer; reads the partitions Assign
	// gave it.
	manual bool
	// owned, pos and closed are guarded by s.mu (owned and pos are also
	// set once before the consumer is shared).
	owned  []bool
	pos    []int64
	closed bool
}

// syncLocked adopts the group's current assignment: partition p belongs to
// member p mod len(members); newly owned partitions restart at the committed
// offset, so records fetched but not committed by a previous owner are
// delivered again. s.mu must be held.
func (c *memConsumer) syncLocked() {
	g := c.group
	if g == nil || c.gen == g.gen {
		return
	}
	idx := -1
	for i, m := range g.members {
		if m == c {
			idx = i
		}
	}
	owned := make([]bool, len(c.s.parts))
	for p := range owned {
		owned[p] = idx >= 0 && p%len(g.members) == idx
		if owned[p] {
			c.pos[p] = g.committed[p]
		}
	}
	c.owned = owned
	c.gen = g.gen
}

func (c *memConsumer) Fetch(ctx context.Context) ([]Record, error) {
	s := c.s
	for {
		s.mu.Lock()
		if c.closed || s.closed {
			s.mu.Unlock()
			return nil, ErrClosed
		}
		c.syncLocked()
		var out []Record
		for p := range s.parts {
			if !c.owned[p] {
				continue
			}
			part := &s.parts[p]
			if c.pos[p] < part.base {
				c.pos[p] = part.base // trimmed past us
			}
			for i := int(c.pos[p] - part.base); i < len(part.recs) && len(out) < s.cfg.MaxFetch; i++ {
				r := part.recs[i]
				c.pos[p] = r.Offset + 1
				if c.opts.Key != "" && r.Key != c.opts.Key {
					continue
				}
				out = append(out, r)
			}
		}
		wait := s.notify
		s.mu.Unlock()
		if len(out) > 0 {
			return out, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-wait:
		}
	}
}

// Generation returns the group generation the latest Fetch synced to; see
// Rebalancer.
func (c *memConsumer) Generation() int64 {
	c.s.mu.Lock()
	defer c.s.mu.Unlock()
	if c.group == nil || c.gen < 0 {
		return 0
	}
	return int64(c.gen)
}

// Commit commits the records of partitions the consumer owns in the
// group's current generation; records of others are skipped and reported
// with ErrNotOwner (see Consumer.Commit).
func (c *memConsumer) Commit(ctx context.Context, recs ...Record) error {
	if c.group == nil {
		return nil
	}
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.closed {
		return ErrClosed
	}
	stale := c.gen != c.group.gen
	notOwned := 0
	for _, r := range recs {
		if r.Partition < 0 || r.Partition >= len(s.parts) {
			continue
		}
		if stale || !c.owned[r.Partition] {
			notOwned++
			continue
		}
		if r.Offset+1 > c.group.committed[r.Partition] {
			c.group.committed[r.Partition] = r.Offset + 1
		}
	}
	if notOwned > 0 {
		return fmt.Errorf("bus: commit %d records: %w", notOwned, ErrNotOwner)
	}
	return nil
}

// Prove reports whether the consumer still owns partition in the group's
// current generation (bus.Prover).
func (c *memConsumer) Prove(ctx context.Context, partition int, offset int64) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case c.closed:
		return ErrClosed
	case c.group == nil || c.gen != c.group.gen || partition < 0 || partition >= len(c.owned) || !c.owned[partition]:
		return fmt.Errorf("bus: partition %d: %w", partition, ErrNotOwner)
	}
	return nil
}

func (c *memConsumer) Close() error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	if g := c.group; g != nil {
		for i, m := range g.members {
			if m == c {
				g.members = append(g.members[:i], g.members[i+1:]...)
				break
			}
		}
		g.gen++
	}
	s.wakeLocked()
	return nil
}

// Partitions returns the partition count of every stream (bus.PartitionReader).
func (m *Memory) Partitions(ctx context.Context, stream string) (int, error) {
	if _, err := m.stream(stream); err != nil {
		return 0, err
	}
	return m.cfg.Partitions, nil
}

// Offsets returns one partition's offsets (bus.PartitionReader).
func (m *Memory) Offsets(ctx context.Context, stream string, partition int, group string) (PartitionOffsets, error) {
	s, err := m.stream(stream)
	if err != nil {
		return PartitionOffsets{}, err
	}
	if partition < 0 || partition >= len(s.parts) {
		return PartitionOffsets{}, ErrNoPartition
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	part := &s.parts[partition]
	o := PartitionOffsets{Oldest: part.base, End: part.base + int64(len(part.recs)), Committed: -1}
	if g := s.groups[group]; group != "" && g != nil {
		o.Committed = g.committed[partition]
	}
	return o, nil
}

// ReadRange returns the retained records of one partition with from <=
// offset < to (bus.PartitionReader).
func (m *Memory) ReadRange(ctx context.Context, stream string, partition int, from, to int64) ([]Record, error) {
	s, err := m.stream(stream)
	if err != nil {
		return nil, err
	}
	if partition < 0 || partition >= len(s.parts) {
		return nil, ErrNoPartition
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	part := &s.parts[partition]
	lo := max(from, part.base) - part.base
	hi := min(to, part.base+int64(len(part.recs))) - part.base
	if lo >= hi {
		return nil, nil
	}
	return append([]Record(nil), part.recs[lo:hi]...), nil
}

// PartitionConsumer opens a consumer of stream that reads no partition
// until Assign (bus.PartitionSubscriber).
func (m *Memory) PartitionConsumer(stream string) (PartitionConsumer, error) {
	s, err := m.stream(stream)
	if err != nil {
		return nil, err
	}
	return &memConsumer{s: s, manual: true, owned: make([]bool, len(s.parts)), pos: make([]int64, len(s.parts))}, nil
}

// Assign starts reading partition at offset (bus.PartitionConsumer).
func (c *memConsumer) Assign(partition int, offset int64) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := c.checkManualLocked("assign", partition); err != nil {
		return err
	}
	if offset < 0 {
		return fmt.Errorf("bus: assign partition %d at offset %d: %w", partition, offset, ErrBadOffset)
	}
	part := &s.parts[partition]
	c.owned[partition] = true
	c.pos[partition] = min(offset, part.base+int64(len(part.recs)))
	s.wakeLocked()
	return nil
}

// Unassign stops reading partition (bus.PartitionConsumer).
func (c *memConsumer) Unassign(partition int) error {
	s := c.s
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := c.checkManualLocked("unassign", partition); err != nil {
		return err
	}
	c.owned[partition] = false
	return nil
}

// checkManualLocked returns why c cannot verb partition, or nil: c must
// be a partition consumer, open, and partition must exist (s.mu held).
func (c *memConsumer) checkManualLocked(verb string, partition int) error {
	switch {
	case !c.manual:
		return errNotManual
	case c.closed || c.s.closed:
		return ErrClosed
	case partition < 0 || partition >= len(c.s.parts):
		return fmt.Errorf("bus: %s partition %d: %w", verb, partition, ErrNoPartition)
	}
	return nil
}
