package kafkabus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/bus/bustest"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// testConfig returns a config for the test broker with a topic prefix no
// other test uses.
func testConfig(t testing.TB) Config {
	t.Helper()
	addr := testenv.Addr(t, testenv.Kafka)
	var b [4]byte
	_, _ = rand.Read(b[:])
	return Config{
		Brokers:           strings.Split(addr, ","),
		TopicPrefix:       "t" + hex.EncodeToString(b[:]) + ".",
		CreateTopics:      true,
		HeartbeatInterval: 100 * time.Millisecond,
		SessionTimeout:    6 * time.Second, // the broker's minimum
	}
}

func newTestBus(t testing.TB, cfg Config) *Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestSuite(t *testing.T) {
	bustest.Run(t, func(t *testing.T) bus.Bus {
		return newTestBus(t, testConfig(t))
	})
}

func TestConfigValidate(t *testing.T) {
	ok := Config{Brokers: []string{"127.0.0.1:9092"}}
	tests := []struct {
		name    string
		mod     func(*Config)
		wantErr string
	}{
		{"Defaults", func(*Config) {}, ""},
		{"AllSet", func(c *Config) {
			*c = Config{Brokers: []string{"a:1", "b:2"}, TopicPrefix: "x_y-1.", Partitions: map[string]int{"ingest": 3},
				ReplicationFactor: 3, BatchTimeout: time.Millisecond, BatchSize: 10, Compression: "zstd",
				RequiredAcks: "one", MaxWait: time.Second, MaxFetch: 5, HeartbeatInterval: time.Second,
				SessionTimeout: 6 * time.Second, ClientID: "c"}
		}, ""},
		{"NoBrokers", func(c *Config) { c.Brokers = nil }, "no brokers"},
		{"EmptyBroker", func(c *Config) { c.Brokers = []string{""} }, "empty broker"},
		{"BadPrefix", func(c *Config) { c.TopicPrefix = "a/b" }, "topic prefix"},
		{"NegativePartitions", func(c *Config) { c.Partitions = map[string]int{"ingest": -1} }, "negative partition"},
		{"NegativeReplication", func(c *Config) { c.ReplicationFactor = -1 }, "replication"},
		{"NegativeDuration", func(c *Config) { c.MaxWait = -time.Second }, "negative duration"},
		{"NegativeBatch", func(c *Config) { c.BatchSize = -1 }, "negative batch"},
		{"UnknownCompression", func(c *Config) { c.Compression = "gzip2" }, "compression"},
		{"UnknownAcks", func(c *Config) { c.RequiredAcks = "none" }, "required acks"},
		{"HeartbeatNotBelowSession", func(c *Config) { c.HeartbeatInterval = 10 * time.Second }, "heartbeat"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := ok
			tc.mod(&c)
			err := c.Validate()
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("Validate() = %v, want nil", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("Validate() = %v, want an error containing %q", err, tc.wantErr)
			case err != nil && !strings.HasPrefix(err.Error(), "kafkabus: "):
				t.Fatalf("error %q lacks the package prefix", err)
			}
		})
	}
	if _, err := New(context.Background(), Config{}); err == nil {
		t.Fatalf("New accepted an invalid config")
	}
}

func TestDefaults(t *testing.T) {
	c := Config{Brokers: []string{"x:1"}, Partitions: map[string]int{bus.StreamDispatch: 4, "extra": 2}}.withDefaults()
	want := map[string]int{
		bus.StreamIngest: 8, bus.StreamAccepted: 8, bus.StreamDispatch: 4, bus.StreamReply: 8,
		bus.StreamControl: 1, "extra": 2, "other": DefaultPartitions,
	}
	for s, n := range want {
		if got := c.partitions(s); got != n {
			t.Errorf("partitions(%q) = %d, want %d", s, got, n)
		}
	}
	if c.TopicPrefix != "danmaku." || c.BatchTimeout != 2*time.Millisecond || c.Compression != "lz4" ||
		c.RequiredAcks != "all" || c.MaxWait != time.Second || c.ReplicationFactor != 1 {
		t.Errorf("defaults not applied: %+v", c)
	}
}

// TestPartitionOf pins the key hash to Java's default partitioner:
// (murmur2(key) & 0x7fffffff) % n, with murmur2 values from Kafka's own
// test vectors.
func TestPartitionOf(t *testing.T) {
	for _, tc := range []struct {
		key   string
		n     int
		wantP int
	}{
		{"kafka", 8, 4}, {"kafka", 17, 14},
		{"1234", 8, 4}, {"1234", 17, 1},
		{"4", 8, 1}, {"4", 17, 10},
		{"34", 8, 2}, {"34", 17, 7},
		{"", 8, 1}, {"", 17, 11},
	} {
		if got := partitionOf(tc.key, tc.n); got != tc.wantP {
			t.Errorf("partitionOf(%q, %d) = %d, want %d", tc.key, tc.n, got, tc.wantP)
		}
	}
	// The publishers' balancer is bus.KeyPartition, and it agrees with
	// kafka-go's own murmur2 partitioner.
	parts := []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16}
	for i := range 2000 {
		key := []byte("room-" + strconv.Itoa(i) + strings.Repeat("x", i%7))
		for _, n := range []int{1, 8, 17} {
			want := (&kafka.Murmur2Balancer{Consistent: true}).Balance(kafka.Message{Key: key}, parts[:n]...)
			if got := balancer.Balance(kafka.Message{Key: key}, parts[:n]...); got != want {
				t.Fatalf("balancer(%q, %d) = %d, kafka-go's murmur2 says %d", key, n, got, want)
			}
		}
	}
	counts := make([]int, 8)
	for i := range 800 {
		p := partitionOf("room-"+strconv.Itoa(i), 8)
		if p < 0 || p >= 8 {
			t.Fatalf("partition %d out of range", p)
		}
		counts[p]++
		if q := partitionOf("room-"+strconv.Itoa(i), 8); q != p {
			t.Fatalf("partitionOf not deterministic: %d then %d", p, q)
		}
	}
	for p, n := range counts {
		if n < 50 {
			t.Errorf("partition %d got %d of 800 keys: poor spread %v", p, n, counts)
		}
	}
}

func TestCreateTopics(t *testing.T) {
	cfg := testConfig(t)
	cfg.Partitions = map[string]int{bus.StreamIngest: 3, bus.StreamDispatch: 5}
	b := newTestBus(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	want := map[string]int{
		bus.StreamIngest: 3, bus.StreamAccepted: 8, bus.StreamDispatch: 5, bus.StreamReply: 8, bus.StreamControl: 1,
	}
	for s, n := range want {
		parts, err := b.readPartitionsOnce(ctx, b.Topic(s))
		if err != nil {
			t.Fatalf("%s: %v", s, err)
		}
		if len(parts) != n {
			t.Errorf("topic %s has %d partitions, want %d", b.Topic(s), len(parts), n)
		}
	}

	// A second bus with other counts keeps the existing topics as they are.
	cfg2 := cfg
	cfg2.Partitions = map[string]int{bus.StreamIngest: 6}
	b2 := newTestBus(t, cfg2)
	if n, err := b2.partitionCount(ctx, bus.StreamIngest); err != nil || n != 3 {
		t.Fatalf("existing ingest topic: %d partitions, %v; want 3", n, err)
	}

	// Other streams are created on first use with their configured count.
	cfg3 := cfg
	cfg3.Partitions = map[string]int{"custom": 2}
	b3 := newTestBus(t, cfg3)
	if err := b3.Publisher("custom").Publish(ctx, bus.Record{Key: "k", Value: []byte("v")}); err != nil {
		t.Fatalf("Publish to a new stream: %v", err)
	}
	if n, err := b3.partitionCount(ctx, "custom"); err != nil || n != 2 {
		t.Fatalf("custom topic: %d partitions, %v; want 2", n, err)
	}

	// Without CreateTopics a missing topic is an error.
	cfg4 := testConfig(t)
	cfg4.CreateTopics = false
	b4 := newTestBus(t, cfg4)
	if _, err := b4.Consumer("nothere", bus.ConsumerOptions{Group: "g"}); err == nil {
		// A broker that auto-creates topics on metadata requests creates
		// it with its own default instead; both are acceptable here.
		t.Logf("broker auto-created the topic")
	} else if !errors.Is(err, ErrNoTopic) {
		t.Fatalf("Consumer of a missing topic: %v, want ErrNoTopic", err)
	}
}
