package kafkabus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

var (
	_ bus.Bus        = (*Bus)(nil)
	_ bus.Closer     = (*Bus)(nil)
	_ bus.Rebalancer = (*consumer)(nil)
	_ bus.Prover     = (*consumer)(nil)
)

// ErrNoTopic is returned when a stream's topic does not exist and
// Config.CreateTopics is off.
var ErrNoTopic = errors.New("kafkabus: topic does not exist")

// Bus runs the pipeline's streams on Kafka topics. It is safe for concurrent
// use.
type Bus struct {
	cfg    Config
	log    *slog.Logger
	addr   net.Addr
	dialer *kafka.Dialer
	acks   kafka.RequiredAcks
	codec  kafka.Compression

	topicMu sync.Mutex     // serialises topic look-ups and creation
	parts   map[string]int // topic -> partition count; guarded by topicMu

	mu        sync.Mutex // guards the fields below
	closed    bool
	writers   map[string]*kafka.Writer
	consumers map[*consumer]struct{}
	client    *kafka.Client // Append's; created on first use
}

// New connects to the brokers and, with CreateTopics, creates the missing
// topics of the pipeline's five streams.
func New(ctx context.Context, cfg Config) (*Bus, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	acks, _ := requiredAcks(cfg.RequiredAcks)
	codec, _ := compression(cfg.Compression)
	dialer := &kafka.Dialer{ClientID: cfg.ClientID, Timeout: 10 * time.Second, DualStack: true}
	b := &Bus{
		cfg:       cfg,
		log:       cfg.Logger,
		addr:      kafka.TCP(cfg.Brokers...),
		dialer:    dialer,
		acks:      acks,
		codec:     codec,
		parts:     make(map[string]int),
		writers:   make(map[string]*kafka.Writer),
		consumers: make(map[*consumer]struct{}),
	}
	if cfg.CreateTopics {
		streams := []string{bus.StreamIngest, bus.StreamAccepted, bus.StreamDispatch, bus.StreamReply, bus.StreamControl}
		if err := b.createTopics(ctx, streams...); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Topic returns the topic name of stream.
func (b *Bus) Topic(stream string) string { return b.cfg.TopicPrefix + stream }

// GroupID returns the Kafka group id of consumer group group: the topic
// prefix and the group's name (Config.TopicPrefix).
func (b *Bus) GroupID(group string) string { return b.cfg.TopicPrefix + group }

// Close closes every open consumer and publisher. Further Publish and
// Consumer calls fail with bus.ErrClosed. Close is idempotent.
func (b *Bus) Close() error {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil
	}
	b.closed = true
	consumers := make([]*consumer, 0, len(b.consumers))
	for c := range b.consumers {
		consumers = append(consumers, c)
	}
	writers := b.writers
	b.writers = nil
	cl := b.client
	b.mu.Unlock()
	if cl != nil {
		cl.Transport.(*kafka.Transport).CloseIdleConnections()
	}

	var wg sync.WaitGroup
	errs := make([]error, len(consumers)+len(writers))
	for i, c := range consumers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Close()
		}()
	}
	i := len(consumers)
	for topic, w := range writers {
		if err := w.Close(); err != nil {
			errs[i] = fmt.Errorf("kafkabus: close writer of %s: %w", topic, err)
		}
		if t, ok := w.Transport.(*kafka.Transport); ok {
			t.CloseIdleConnections()
		}
		i++
	}
	wg.Wait()
	return errors.Join(errs...)
}

// Publisher returns a publisher for stream. It creates the topic's writer on
// first use.
func (b *Bus) Publisher(stream string) bus.Publisher {
	return &publisher{b: b, stream: stream, topic: b.Topic(stream)}
}

// createTopics creates the topics of streams that do not exist yet, through
// the cluster's controller, with the configured partition counts.
func (b *Bus) createTopics(ctx context.Context, streams ...string) error {
	conn, err := b.dial(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	ctrl, err := conn.Controller()
	if err != nil {
		return fmt.Errorf("kafkabus: find controller: %w", err)
	}
	cc, err := b.dialer.DialContext(ctx, "tcp", net.JoinHostPort(ctrl.Host, strconv.Itoa(ctrl.Port)))
	if err != nil {
		return fmt.Errorf("kafkabus: dial controller: %w", err)
	}
	defer cc.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = cc.SetDeadline(dl)
	} else {
		_ = cc.SetDeadline(time.Now().Add(30 * time.Second))
	}
	topics := make([]kafka.TopicConfig, 0, len(streams))
	for _, s := range streams {
		topics = append(topics, kafka.TopicConfig{
			Topic:             b.Topic(s),
			NumPartitions:     b.cfg.partitions(s),
			ReplicationFactor: b.cfg.ReplicationFactor,
		})
	}
	// CreateTopics ignores topics that already exist.
	if err := cc.CreateTopics(topics...); err != nil {
		return fmt.Errorf("kafkabus: create topics: %w", err)
	}
	return nil
}

// partitionCount returns the partition count of stream's topic, creating
// the topic first when it is missing and CreateTopics is set. Counts are
// cached: partitions added to a topic later are not seen by this bus.
func (b *Bus) partitionCount(ctx context.Context, stream string) (int, error) {
	topic := b.Topic(stream)
	b.topicMu.Lock()
	defer b.topicMu.Unlock()
	if n, ok := b.parts[topic]; ok {
		return n, nil
	}
	parts, err := b.readPartitions(ctx, stream)
	if err != nil {
		return 0, err
	}
	b.parts[topic] = len(parts)
	return len(parts), nil
}

// readPartitions returns the partitions of stream's topic with their
// current leaders, creating the topic when it is missing and CreateTopics
// is set. It asks a broker directly, bypassing any metadata cache.
func (b *Bus) readPartitions(ctx context.Context, stream string) ([]kafka.Partition, error) {
	topic := b.Topic(stream)
	if b.cfg.CreateTopics {
		// Create first: asking a broker with auto-creation on for a
		// missing topic's metadata would create it with the broker's
		// default partition count.
		if err := b.createTopics(ctx, stream); err != nil {
			return nil, err
		}
	}
	created := b.cfg.CreateTopics
	for attempt := 0; ; attempt++ {
		parts, err := b.readPartitionsOnce(ctx, topic)
		switch {
		case err == nil && len(parts) > 0:
			return parts, nil
		case err == nil || errors.Is(err, kafka.UnknownTopicOrPartition):
			if !b.cfg.CreateTopics {
				return nil, fmt.Errorf("%w: %s", ErrNoTopic, topic)
			}
			if !created {
				if err := b.createTopics(ctx, stream); err != nil {
					return nil, err
				}
				created = true
				continue
			}
		case !errors.Is(err, kafka.LeaderNotAvailable):
			return nil, err
		}
		// The topic is being created or its leaders elected: retry.
		if attempt >= 50 {
			return nil, fmt.Errorf("kafkabus: partitions of %s: not ready: %v", topic, err)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("kafkabus: partitions of %s: %w", topic, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (b *Bus) readPartitionsOnce(ctx context.Context, topic string) ([]kafka.Partition, error) {
	conn, err := b.dial(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	return conn.ReadPartitions(topic)
}

// dial connects to the first reachable broker. The connection's deadline
// follows ctx (30s without one).
func (b *Bus) dial(ctx context.Context) (*kafka.Conn, error) {
	var conn *kafka.Conn
	var err error
	for _, addr := range b.cfg.Brokers {
		if conn, err = b.dialer.DialContext(ctx, "tcp", addr); err == nil {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("kafkabus: dial brokers: %w", err)
	}
	dl, ok := ctx.Deadline()
	if !ok {
		dl = time.Now().Add(30 * time.Second)
	}
	_ = conn.SetDeadline(dl)
	return conn, nil
}

// writer returns stream's writer, creating it (and the topic) on first use.
func (b *Bus) writer(ctx context.Context, stream string) (*kafka.Writer, error) {
	topic := b.Topic(stream)
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return nil, fmt.Errorf("kafkabus: publish to %s: %w", topic, bus.ErrClosed)
	}
	w := b.writers[topic]
	b.mu.Unlock()
	if w != nil {
		return w, nil
	}
	if _, err := b.partitionCount(ctx, stream); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return nil, fmt.Errorf("kafkabus: publish to %s: %w", topic, bus.ErrClosed)
	}
	if w := b.writers[topic]; w != nil {
		return w, nil
	}
	w = &kafka.Writer{
		Addr:         b.addr,
		Topic:        topic,
		Balancer:     balancer,
		BatchSize:    b.cfg.BatchSize,
		BatchTimeout: b.cfg.BatchTimeout,
		RequiredAcks: b.acks,
		Compression:  b.codec,
		// A transport per writer: a transport caches cluster metadata,
		// and a shared one would not know topics created after its
		// last refresh.
		Transport:   &kafka.Transport{ClientID: b.cfg.ClientID, DialTimeout: 10 * time.Second},
		ErrorLogger: b.errorLogger(),
		Logger:      b.debugLogger(),
	}
	b.writers[topic] = w
	return w, nil
}

// balancer maps keys to partitions for publishers: bus.KeyPartition, the
// one key hash of every bus (murmur2, the Java client's default
// partitioner, so Java and librdkafka producers place a room's records in
// the same partition as this bus).
var balancer = kafka.BalancerFunc(func(m kafka.Message, parts ...int) int {
	return parts[bus.KeyPartition(string(m.Key), len(parts))]
})

// partitionOf returns the partition key maps to among n partitions.
func partitionOf(key string, n int) int { return bus.KeyPartition(key, n) }

func (b *Bus) errorLogger() kafka.Logger {
	return kafka.LoggerFunc(func(msg string, args ...any) {
		line := "kafkabus: " + fmt.Sprintf(msg, args...)
		for _, a := range args {
			// A join racing another member's join or leave is routine.
			if err, ok := a.(error); ok && errors.Is(err, kafka.RebalanceInProgress) {
				b.log.Debug(line)
				return
			}
		}
		b.log.Warn(line)
	})
}

// debugLogger returns kafka-go's chatty logger only when Debug is on.
func (b *Bus) debugLogger() kafka.Logger {
	if !b.log.Enabled(context.Background(), slog.LevelDebug) {
		return nil
	}
	return kafka.LoggerFunc(func(msg string, args ...any) {
		b.log.Debug("kafkabus: " + fmt.Sprintf(msg, args...))
	})
}

// publisher writes one stream through the bus's writer of its topic.
type publisher struct {
	b      *Bus
	stream string
	topic  string
}

// Publish writes recs and returns once the brokers acknowledged all of them
// (Config.RequiredAcks). Records of one call keep their order per partition.
func (p *publisher) Publish(ctx context.Context, recs ...bus.Record) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("kafkabus: publish to %s: %w", p.topic, err)
	}
	w, err := p.b.writer(ctx, p.stream)
	if err != nil {
		return err
	}
	if len(recs) == 0 {
		return nil
	}
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		msgs[i] = kafka.Message{Key: []byte(r.Key), Value: r.Value}
	}
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		p.b.mu.Lock()
		closed := p.b.closed
		p.b.mu.Unlock()
		if closed {
			return fmt.Errorf("kafkabus: publish to %s: %w", p.topic, bus.ErrClosed)
		}
		return fmt.Errorf("kafkabus: publish to %s: %w", p.topic, err)
	}
	return nil
}
