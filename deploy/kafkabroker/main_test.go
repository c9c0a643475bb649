package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

// broker is a kafkabroker started in-process by startBroker.
type broker struct {
	addr string
	stop func() // cancels run and waits for it to return
}

// startBroker runs the broker with cfg until the test ends or stop is
// called. It fails the test if the broker does not become ready.
func startBroker(t *testing.T, cfg config) *broker {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	cfg.Ready = func(addr string) { ready <- addr }
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	done := make(chan error, 1)
	go func() { done <- run(ctx, cfg) }()
	b := &broker{}
	stopped := false
	b.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}
	t.Cleanup(b.stop)
	select {
	case b.addr = <-ready:
	case err := <-done:
		stopped = true
		cancel()
		t.Fatalf("run returned before ready: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("broker not ready after 10s")
	}
	return b
}

// testWriter sends log output to t.Log.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

func newReader(addr, topic, group string) *kafka.Reader {
	return kafka.NewReader(kafka.ReaderConfig{
		Brokers:        []string{addr},
		Topic:          topic,
		GroupID:        group,
		MaxWait:        100 * time.Millisecond,
		StartOffset:    kafka.FirstOffset,
		CommitInterval: 0, // CommitMessages commits synchronously
		// Short group timings keep joins and leaves quick.
		HeartbeatInterval:     200 * time.Millisecond,
		SessionTimeout:        2 * time.Second,
		RebalanceTimeout:      2 * time.Second,
		JoinGroupBackoff:      100 * time.Millisecond,
		ReadBackoffMin:        50 * time.Millisecond,
		ReadBackoffMax:        100 * time.Millisecond,
		WatchPartitionChanges: false,
	})
}

// consume fetches n messages through a new group reader, commits them and
// closes the reader. It returns the values read.
func consume(t *testing.T, addr, topic, group string, n int) []string {
	t.Helper()
	r := newReader(addr, topic, group)
	defer func() {
		if err := r.Close(); err != nil {
			t.Errorf("reader close: %v", err)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	var msgs []kafka.Message
	for len(msgs) < n {
		m, err := r.FetchMessage(ctx)
		if err != nil {
			t.Fatalf("fetch message %d of %d: %v", len(msgs)+1, n, err)
		}
		msgs = append(msgs, m)
	}
	if err := r.CommitMessages(ctx, msgs...); err != nil {
		t.Fatalf("commit: %v", err)
	}
	vals := make([]string, len(msgs))
	for i, m := range msgs {
		vals[i] = string(m.Value)
	}
	return vals
}

func produce(t *testing.T, addr, topic string, vals []string) {
	t.Helper()
	w := &kafka.Writer{
		Addr:         kafka.TCP(addr),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		BatchTimeout: 10 * time.Millisecond,
		RequiredAcks: kafka.RequireAll,
	}
	defer w.Close()
	msgs := make([]kafka.Message, len(vals))
	for i, v := range vals {
		msgs[i] = kafka.Message{Key: []byte(v), Value: []byte(v)}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.WriteMessages(ctx, msgs...); err != nil {
		t.Fatalf("produce: %v", err)
	}
}

// TestGroupResumesAcrossReaderAndBrokerRestarts produces records, consumes
// them in three rounds through one consumer group — a new reader each round,
// the broker restarted on its data directory before the last — and checks
// that every record arrives exactly once.
func TestGroupResumesAcrossReaderAndBrokerRestarts(t *testing.T) {
	const name, group, total = "danmaku.events", "g1", 30
	dataDir := t.TempDir()
	cfg := config{
		Addr:        "127.0.0.1:0",
		TopicPrefix: "danmaku.",
		Topics:      []topic{{Name: "events", Partitions: 2}},
		DataDir:     dataDir,
		AddrFile:    filepath.Join(t.TempDir(), "kafka.addr"),
	}
	b := startBroker(t, cfg)

	got, err := os.ReadFile(cfg.AddrFile)
	if err != nil {
		t.Fatalf("addr file: %v", err)
	}
	if strings.TrimSpace(string(got)) != b.addr {
		t.Fatalf("addr file = %q, want %q", got, b.addr)
	}
	if host, _, _ := net.SplitHostPort(b.addr); host != "127.0.0.1" {
		t.Fatalf("broker bound %s, want 127.0.0.1", b.addr)
	}
	parts := partitions(t, b.addr, name)
	if parts != 2 {
		t.Fatalf("topic %s has %d partitions, want 2", name, parts)
	}

	want := make([]string, total)
	for i := range want {
		want[i] = fmt.Sprintf("m%02d", i)
	}
	produce(t, b.addr, name, want)

	var seen []string
	seen = append(seen, consume(t, b.addr, name, group, 10)...)
	seen = append(seen, consume(t, b.addr, name, group, 10)...)

	b.stop()
	cfg.AddrFile = ""
	b = startBroker(t, cfg)
	seen = append(seen, consume(t, b.addr, name, group, 10)...)

	slices.Sort(seen)
	if !slices.Equal(seen, want) {
		t.Fatalf("consumed %v, want each of %v exactly once", seen, want)
	}

	// Everything is committed: the group has nothing left to read.
	r := newReader(b.addr, name, group)
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if m, err := r.FetchMessage(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("after consuming all: got message %q, err %v; want deadline exceeded", m.Value, err)
	}
}

// partitions returns the partition count of topic.
func partitions(t *testing.T, addr, topic string) int {
	t.Helper()
	conn, err := kafka.Dial("tcp", addr)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	ps, err := conn.ReadPartitions(topic)
	if err != nil {
		t.Fatalf("read partitions of %s: %v", topic, err)
	}
	return len(ps)
}

func TestConfigValidation(t *testing.T) {
	tests := []struct {
		name    string
		addr    string
		wantErr error
	}{
		{name: "ipv4 loopback", addr: "127.0.0.1:0"},
		{name: "other loopback", addr: "127.0.0.2:0"},
		{name: "localhost", addr: "localhost:0"},
		{name: "all interfaces", addr: "0.0.0.0:9092", wantErr: errNotLoopback},
		{name: "empty host", addr: ":9092", wantErr: errNotLoopback},
		{name: "public ip", addr: "10.1.2.3:9092", wantErr: errNotLoopback},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := config{Addr: tt.addr}.withDefaults()
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("withDefaults(%q) err = %v, want %v", tt.addr, err, tt.wantErr)
			}
		})
	}
}

func TestParseTopics(t *testing.T) {
	tests := []struct {
		in      string
		want    []topic
		wantErr bool
	}{
		{in: "ingest:8,control:1", want: []topic{{"ingest", 8}, {"control", 1}}},
		{in: " a , b:3 ,", want: []topic{{"a", 1}, {"b", 3}}},
		{in: "", want: nil},
		{in: "a:0", wantErr: true},
		{in: "a:x", wantErr: true},
		{in: ":4", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := parseTopics(tt.in)
			if (err != nil) != tt.wantErr {
				t.Fatalf("parseTopics(%q) err = %v, wantErr %v", tt.in, err, tt.wantErr)
			}
			if !slices.Equal(got, tt.want) {
				t.Fatalf("parseTopics(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseFlags(t *testing.T) {
	cfg, err := parseFlags([]string{"--addr", "127.0.0.1:0", "--topic-prefix", "p.", "--topics", "x:2", "--data-dir", "/d", "--addr-file", "/f"}, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Addr != "127.0.0.1:0" || cfg.TopicPrefix != "p." || cfg.DataDir != "/d" || cfg.AddrFile != "/f" ||
		!slices.Equal(cfg.Topics, []topic{{"x", 2}}) || cfg.Logger == nil || !cfg.AutoCreateTopics {
		t.Fatalf("parseFlags = %+v", cfg)
	}
	if _, err := parseFlags([]string{"--log-level", "loud"}, os.Stderr); err == nil {
		t.Fatal("parseFlags accepted --log-level loud")
	}
	if _, err := parseFlags([]string{"stray"}, os.Stderr); err == nil {
		t.Fatal("parseFlags accepted a positional argument")
	}
}
