// Command kafkabroker runs a single-node Kafka-protocol broker on loopback for
// local development and tests. It is built on franz-go's kfake cluster, which
// speaks the Kafka wire protocol (produce, fetch, consumer groups, offset
// commits), so the services and kafka-go clients use it exactly as they use
// Apache Kafka. It is not a production broker: real deployments run Apache
// Kafka (see deploy/).
//
// Usage:
//
//	kafkabroker [--addr 127.0.0.1:9092] [--topic-prefix P]
//	            [--topics ingest:8,accepted:8,dispatch:8,reply:8,control:1]
//	            [--data-dir DIR] [--addr-file FILE] [--log-level info]
//
// The broker binds a loopback address only; port 0 picks a free port. The
// listed topics are created at start with the given partition counts (topics
// that already exist keep theirs). With --data-dir, kfake persists topics,
// records and committed group offsets under DIR and reloads them on the next
// start, so a restarted broker keeps its data; without it everything lives
// in memory. Once the broker accepts connections it writes its host:port to
// --addr-file (written to a temp file and renamed, so readers never see a
// partial address). SIGINT or SIGTERM shut it down cleanly, flushing state to
// --data-dir.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// errNotLoopback is returned when --addr names a host that is not loopback.
var errNotLoopback = errors.New("kafkabroker: address must be a loopback IP (127.0.0.0/8 or ::1)")

// topic is one topic to create at start.
type topic struct {
	Name       string
	Partitions int32
}

// config holds everything run needs. parseFlags fills it from the command
// line; tests build it directly.
type config struct {
	// Addr is the host:port to listen on. The host must be a loopback IP
	// or "localhost". Port 0 picks a free port. Empty means 127.0.0.1:9092.
	Addr string
	// Topics are created at start (after TopicPrefix is prepended).
	// Topics that exist already, for example reloaded from DataDir, are
	// left as they are.
	Topics []topic
	// TopicPrefix is prepended to every name in Topics. Empty means none.
	TopicPrefix string
	// AutoCreateTopics lets clients create topics by asking for their
	// metadata, like Apache Kafka's auto.create.topics.enable. Such topics
	// get DefaultPartitions partitions.
	AutoCreateTopics bool
	// DefaultPartitions is the partition count of topics created without
	// one. Zero means 1, Apache Kafka's num.partitions default.
	DefaultPartitions int
	// DataDir, when set, persists the broker's state there and reloads it
	// at start. Empty means in-memory only.
	DataDir string
	// AddrFile, when set, receives the bound host:port once the broker is
	// ready.
	AddrFile string
	// MinSessionTimeout is the shortest consumer-group session timeout
	// the broker accepts. Zero means 100 * time.Millisecond, so tests can
	// use short sessions (Apache Kafka's default is 6 s).
	MinSessionTimeout time.Duration
	// Logger receives the broker's logs. Nil means discard.
	Logger *slog.Logger
	// Ready, when set, is called with the bound host:port once the broker
	// accepts connections and the topics exist.
	Ready func(addr string)
}

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg); err != nil {
		cfg.Logger.Error("kafkabroker failed", "err", err)
		os.Exit(1)
	}
}

// parseFlags turns command-line arguments into a config; its logger writes
// text to stderr.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("kafkabroker", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var (
		cfg      config
		topics   string
		logLevel string
	)
	fs.StringVar(&cfg.Addr, "addr", "127.0.0.1:9092", "loopback `host:port` to listen on; port 0 picks a free port")
	fs.StringVar(&topics, "topics", "ingest:8,accepted:8,dispatch:8,reply:8,control:1", "comma-separated `name:partitions` to create at start")
	fs.StringVar(&cfg.TopicPrefix, "topic-prefix", "", "`prefix` prepended to every name in --topics")
	fs.BoolVar(&cfg.AutoCreateTopics, "auto-create-topics", true, "create unknown topics when clients ask for their metadata")
	fs.IntVar(&cfg.DefaultPartitions, "default-partitions", 1, "partition `count` of auto-created topics")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "`dir`ectory that keeps topics, records and offsets across restarts (empty: memory only)")
	fs.StringVar(&cfg.AddrFile, "addr-file", "", "`file` that receives the bound host:port once the broker is ready")
	fs.DurationVar(&cfg.MinSessionTimeout, "min-session-timeout", 100*time.Millisecond, "shortest consumer-group session timeout accepted")
	fs.StringVar(&logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("kafkabroker: unexpected arguments %q", fs.Args())
	}
	var level slog.Level
	if err := level.UnmarshalText([]byte(logLevel)); err != nil {
		return config{}, fmt.Errorf("kafkabroker: --log-level: %w", err)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	var err error
	if cfg.Topics, err = parseTopics(topics); err != nil {
		return config{}, err
	}
	return cfg, nil
}

// parseTopics parses "name:partitions,name:partitions". A name without
// ":partitions" gets 1 partition.
func parseTopics(s string) ([]topic, error) {
	var out []topic
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		name, parts, hasParts := strings.Cut(item, ":")
		t := topic{Name: name, Partitions: 1}
		if hasParts {
			n, err := strconv.ParseInt(parts, 10, 32)
			if err != nil || n < 1 {
				return nil, fmt.Errorf("kafkabroker: topic %q: partitions must be a positive integer", item)
			}
			t.Partitions = int32(n)
		}
		if t.Name == "" {
			return nil, fmt.Errorf("kafkabroker: topic %q has no name", item)
		}
		out = append(out, t)
	}
	return out, nil
}

// withDefaults validates cfg and fills its zero fields.
func (cfg config) withDefaults() (config, error) {
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:9092"
	}
	host, _, err := net.SplitHostPort(cfg.Addr)
	if err != nil {
		return cfg, fmt.Errorf("kafkabroker: --addr %q: %w", cfg.Addr, err)
	}
	if host != "localhost" {
		ip := net.ParseIP(host)
		if ip == nil || !ip.IsLoopback() {
			return cfg, fmt.Errorf("%w: got %q", errNotLoopback, host)
		}
	}
	if cfg.DefaultPartitions <= 0 {
		cfg.DefaultPartitions = 1
	}
	if cfg.MinSessionTimeout <= 0 {
		cfg.MinSessionTimeout = 100 * time.Millisecond
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}

// run starts the broker, creates the topics, reports readiness and serves
// until ctx is done, then shuts the broker down (persisting its state when
// DataDir is set).
func run(ctx context.Context, cfg config) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	log := cfg.Logger
	opts := []kfake.Opt{
		kfake.NumBrokers(1),
		// kfake asks for 127.0.0.1:<port>; bind exactly the configured
		// loopback address instead.
		kfake.ListenFn(func(network, _ string) (net.Listener, error) {
			return net.Listen(network, cfg.Addr)
		}),
		kfake.ClusterID("danmaku-dev"),
		kfake.DefaultNumPartitions(cfg.DefaultPartitions),
		kfake.GroupMinSessionTimeout(cfg.MinSessionTimeout),
		kfake.WithLogger(slogAdapter{log}),
	}
	if cfg.AutoCreateTopics {
		opts = append(opts, kfake.AllowAutoTopicCreation())
	}
	if cfg.DataDir != "" {
		opts = append(opts, kfake.DataDir(cfg.DataDir))
	}
	cluster, err := kfake.NewCluster(opts...)
	if err != nil {
		return fmt.Errorf("kafkabroker: start: %w", err)
	}
	defer func() {
		log.Info("shutting down")
		cluster.Close()
		log.Info("stopped")
	}()
	addrs := cluster.ListenAddrs()
	if len(addrs) != 1 {
		return fmt.Errorf("kafkabroker: want 1 listener, got %v", addrs)
	}
	addr := addrs[0]

	if err := createTopics(ctx, addr, cfg.TopicPrefix, cfg.Topics, log); err != nil {
		return err
	}
	if cfg.AddrFile != "" {
		if err := writeFileAtomic(cfg.AddrFile, addr+"\n"); err != nil {
			return fmt.Errorf("kafkabroker: write --addr-file: %w", err)
		}
	}
	log.Info("kafka-protocol broker ready", "addr", addr, "data_dir", cfg.DataDir)
	if cfg.Ready != nil {
		cfg.Ready(addr)
	}
	<-ctx.Done()
	return nil
}

// createTopics asks the broker at addr to create topics; ones that exist
// already are left alone.
func createTopics(ctx context.Context, addr, prefix string, topics []topic, log *slog.Logger) error {
	if len(topics) == 0 {
		return nil
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(addr))
	if err != nil {
		return fmt.Errorf("kafkabroker: admin client: %w", err)
	}
	defer cl.Close()
	req := kmsg.NewPtrCreateTopicsRequest()
	req.TimeoutMillis = 10_000
	for _, t := range topics {
		rt := kmsg.NewCreateTopicsRequestTopic()
		rt.Topic = prefix + t.Name
		rt.NumPartitions = t.Partitions
		rt.ReplicationFactor = 1
		req.Topics = append(req.Topics, rt)
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	resp, err := req.RequestWith(ctx, cl)
	if err != nil {
		return fmt.Errorf("kafkabroker: create topics: %w", err)
	}
	for _, t := range resp.Topics {
		switch err := kerr.ErrorForCode(t.ErrorCode); {
		case err == nil:
			log.Info("created topic", "topic", t.Topic, "partitions", t.NumPartitions)
		case errors.Is(err, kerr.TopicAlreadyExists):
			log.Info("topic exists", "topic", t.Topic)
		default:
			return fmt.Errorf("kafkabroker: create topic %s: %w", t.Topic, err)
		}
	}
	return nil
}

// writeFileAtomic writes data to a temp file beside path and renames it
// over path.
func writeFileAtomic(path, data string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".addr-*")
	if err != nil {
		return err
	}
	if _, err := tmp.WriteString(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return err
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// slogAdapter forwards kfake's logs to slog. kfake logs every request at
// its info level, so that level maps to slog's debug.
type slogAdapter struct{ log *slog.Logger }

var _ kfake.Logger = slogAdapter{}

// Logf implements kfake.Logger.
func (a slogAdapter) Logf(level kfake.LogLevel, format string, args ...any) {
	var l slog.Level
	switch level {
	case kfake.LogLevelError:
		l = slog.LevelError
	case kfake.LogLevelWarn:
		l = slog.LevelWarn
	default:
		l = slog.LevelDebug
	}
	if !a.log.Enabled(context.Background(), l) {
		return
	}
	a.log.Log(context.Background(), l, fmt.Sprintf(format, args...), "component", "kfake")
}
