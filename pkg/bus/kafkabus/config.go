package kafkabus

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/segmentio/kafka-go"
	"github.com/segmentio/kafka-go/compress"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

// Defaults applied by New; see the Config fields.
const (
	DefaultTopicPrefix       = "danmaku."
	DefaultPartitions        = 8
	DefaultBatchTimeout      = 2 * time.Millisecond
	DefaultBatchSize         = 1000
	DefaultCompression       = "lz4"
	DefaultRequiredAcks      = "all"
	DefaultMaxWait           = time.Second
	DefaultMaxFetch          = 1024
	DefaultHeartbeatInterval = time.Second
	DefaultSessionTimeout    = 10 * time.Second
	DefaultClientID          = "danmaku"
)

// defaultStreamPartitions are the partition counts of the pipeline's
// streams. Streams not listed get DefaultPartitions.
var defaultStreamPartitions = map[string]int{
	bus.StreamIngest:   8,
	bus.StreamAccepted: 8,
	bus.StreamDispatch: 8,
	bus.StreamReply:    8,
	bus.StreamControl:  1,
}

// Config configures the Kafka bus. The zero value of every field but
// Brokers selects its default.
type Config struct {
	// Brokers are the bootstrap brokers, host:port. Required.
	Brokers []string
	// TopicPrefix is prepended to a stream's name to make its topic name,
	// and to a consumer group's name to make its group id: two deployments
	// with different prefixes on one cluster share no group (a group's
	// rebalances, and its crashed members' sessions, would otherwise
	// hold up the other deployment's stage). Zero value means "danmaku."
	// (stream "ingest" is topic "danmaku.ingest", group "logic" is
	// "danmaku.logic").
	TopicPrefix string
	// Partitions sets the partition count per stream, used when topics are
	// created. Zero value (or a missing stream) means ingest 8, accepted 8,
	// dispatch 8, reply 8, control 1, and 8 for any other stream. Existing
	// topics keep their partition count: the bus reads it from the broker.
	Partitions map[string]int
	// ReplicationFactor of created topics. Zero value means 1.
	ReplicationFactor int
	// CreateTopics makes New create the pipeline's five topics, and the
	// bus create any other stream's topic on first use, when they are
	// missing. Without it a missing topic is an error.
	CreateTopics bool
	// BatchTimeout is how long a publisher waits to fill a batch before
	// sending it. Zero value means 2ms (kafka-go's own default is 1s, far
	// too slow for a synchronous Publish).
	BatchTimeout time.Duration
	// BatchSize is the most records one produce batch carries per
	// partition. Zero value means 1000.
	BatchSize int
	// Compression of produced batches: "none", "lz4", "snappy" or "zstd".
	// Zero value means "lz4".
	Compression string
	// RequiredAcks is the acknowledgement a Publish waits for: "all" (every
	// in-sync replica) or "one" (the partition leader). Zero value means
	// "all".
	RequiredAcks string
	// MaxWait is how long a fetch request waits at the broker for new
	// records; a record arriving ends the wait. An idle partition costs one
	// fetch request per MaxWait. Zero value means 1s.
	MaxWait time.Duration
	// MaxFetch caps the records one Fetch returns. Zero value means 1024.
	MaxFetch int
	// HeartbeatInterval is how often group members heartbeat; a member
	// learns of a rebalance at its next heartbeat. Zero value means 1s.
	HeartbeatInterval time.Duration
	// SessionTimeout is how long the group coordinator waits for a silent
	// member before it moves the member's partitions; it is also the
	// longest the coordinator waits for members to rejoin a rebalance.
	// Brokers accept 6s to 30m by default. Zero value means 10s.
	SessionTimeout time.Duration
	// Logger receives client errors (Warn) and, at Debug, kafka-go's own
	// log. Zero value means slog.Default().
	Logger *slog.Logger
	// ClientID identifies this process to the brokers. Zero value means
	// "danmaku".
	ClientID string
}

// Validate reports the first invalid field.
func (c Config) Validate() error {
	if len(c.Brokers) == 0 {
		return errors.New("kafkabus: no brokers")
	}
	for _, b := range c.Brokers {
		if b == "" {
			return errors.New("kafkabus: empty broker address")
		}
	}
	if !validTopicChars(c.TopicPrefix) {
		return fmt.Errorf("kafkabus: topic prefix %q: only [A-Za-z0-9._-] allowed", c.TopicPrefix)
	}
	for s, n := range c.Partitions {
		if n < 0 {
			return fmt.Errorf("kafkabus: stream %q: negative partition count %d", s, n)
		}
	}
	if c.ReplicationFactor < 0 {
		return fmt.Errorf("kafkabus: negative replication factor %d", c.ReplicationFactor)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"batch timeout", c.BatchTimeout}, {"max wait", c.MaxWait}, {"heartbeat interval", c.HeartbeatInterval},
		{"session timeout", c.SessionTimeout}} {
		if d.v < 0 {
			return fmt.Errorf("kafkabus: negative duration: %s %v", d.name, d.v)
		}
	}
	if c.BatchSize < 0 || c.MaxFetch < 0 {
		return errors.New("kafkabus: negative batch size or fetch cap")
	}
	if _, err := compression(c.Compression); err != nil {
		return err
	}
	if _, err := requiredAcks(c.RequiredAcks); err != nil {
		return err
	}
	hb, st := c.HeartbeatInterval, c.SessionTimeout
	if hb == 0 {
		hb = DefaultHeartbeatInterval
	}
	if st == 0 {
		st = DefaultSessionTimeout
	}
	if hb >= st {
		return fmt.Errorf("kafkabus: heartbeat interval %v must be below the session timeout %v", hb, st)
	}
	return nil
}

// withDefaults returns c with every zero field set to its default.
func (c Config) withDefaults() Config {
	if c.TopicPrefix == "" {
		c.TopicPrefix = DefaultTopicPrefix
	}
	parts := make(map[string]int, len(defaultStreamPartitions)+len(c.Partitions))
	for s, n := range defaultStreamPartitions {
		parts[s] = n
	}
	for s, n := range c.Partitions {
		if n > 0 {
			parts[s] = n
		}
	}
	c.Partitions = parts
	if c.ReplicationFactor == 0 {
		c.ReplicationFactor = 1
	}
	if c.BatchTimeout == 0 {
		c.BatchTimeout = DefaultBatchTimeout
	}
	if c.BatchSize == 0 {
		c.BatchSize = DefaultBatchSize
	}
	if c.Compression == "" {
		c.Compression = DefaultCompression
	}
	if c.RequiredAcks == "" {
		c.RequiredAcks = DefaultRequiredAcks
	}
	if c.MaxWait == 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.MaxFetch == 0 {
		c.MaxFetch = DefaultMaxFetch
	}
	if c.HeartbeatInterval == 0 {
		c.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if c.SessionTimeout == 0 {
		c.SessionTimeout = DefaultSessionTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.ClientID == "" {
		c.ClientID = DefaultClientID
	}
	return c
}

// partitions returns the configured partition count of stream.
// c must have its defaults applied.
func (c Config) partitions(stream string) int {
	if n := c.Partitions[stream]; n > 0 {
		return n
	}
	return DefaultPartitions
}

func compression(name string) (kafka.Compression, error) {
	switch name {
	case "", "lz4":
		return kafka.Lz4, nil
	case "none":
		return compress.None, nil
	case "snappy":
		return kafka.Snappy, nil
	case "zstd":
		return kafka.Zstd, nil
	}
	return 0, fmt.Errorf("kafkabus: unknown compression %q (none, lz4, snappy, zstd)", name)
}

func requiredAcks(name string) (kafka.RequiredAcks, error) {
	switch name {
	case "", "all":
		return kafka.RequireAll, nil
	case "one":
		return kafka.RequireOne, nil
	}
	return 0, fmt.Errorf("kafkabus: unknown required acks %q (all, one)", name)
}

func validTopicChars(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}
