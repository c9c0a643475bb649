package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/danmaku-live/danmaku/bench"
	"github.com/danmaku-live/danmaku/pkg/auth"
)

// usage is printed for -h and unknown subcommands.
const usage = `usage: danmaku [command] [flags]

commands:
  all       everything in one process (default)
  gateway   the WebSocket gateway and the HTTP API/pages
  logic     the logic worker (moderation, seq) and the history writer
  dispatch  the fan-out stage
  token     print a signed token: token --sub U --name N --role R [--rooms a,b] [--ttl D]
  probe     probe [URL]: exit 0 when URL (default http://127.0.0.1:8080/readyz) answers 200;
            a health check for images without curl
  bench     load harness: bench <idle|fanout|rooms|storm|send|soak> [flags], bench compare a.json b.json

Run "danmaku <command> -h" for the flags of a command.
`

// run parses args and runs the chosen command until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "all"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		cmd, args = args[0], args[1:]
	}
	switch cmd {
	case "all", "gateway", "logic", "dispatch":
		cfg, err := parseConfig(cmd, args, stderr)
		if err != nil {
			return err
		}
		app, err := NewApp(cfg)
		if err != nil {
			return err
		}
		return app.Run(ctx)
	case "token":
		return tokenCmd(args, stdout, stderr)
	case "probe":
		return probeCmd(ctx, args)
	case "bench":
		return bench.Main(ctx, args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// parseConfig reads flags, with environment variables as defaults.
func parseConfig(role string, args []string, stderr io.Writer) (Config, error) {
	cfg := Config{Role: role}
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.HTTPAddr, "http", env("DANMAKU_HTTP", "127.0.0.1:8080"), "HTTP listen address: pages, API, metrics (env DANMAKU_HTTP)")
	fs.StringVar(&cfg.WSAddr, "ws", env("DANMAKU_WS", "127.0.0.1:8090"), "WebSocket listen address (env DANMAKU_WS)")
	fs.StringVar(&cfg.JWTSecret, "jwt-secret", os.Getenv("DANMAKU_JWT_SECRET"), "HS256 secret for tokens (env DANMAKU_JWT_SECRET)")
	fs.StringVar(&cfg.GatewayID, "id", os.Getenv("DANMAKU_ID"), "gateway id on the bus (env DANMAKU_ID; default gw-<host>-<pid>)")
	fs.BoolVar(&cfg.ReusePort, "reuseport", envBool("DANMAKU_REUSEPORT", false), "share the WebSocket port with other gateway processes (SO_REUSEPORT)")
	fs.IntVar(&cfg.MaxConnsPerIP, "max-conns-per-ip", envInt("DANMAKU_MAX_CONNS_PER_IP", 0), "connections per remote IP (0: 1024, -1: no cap)")
	fs.StringVar(&cfg.Origins, "origins", os.Getenv("DANMAKU_ORIGINS"), "comma-separated Origin allow-list for browsers (empty: any)")
	fs.BoolVar(&cfg.Demo, "demo", envBool("DANMAKU_DEMO", role == "all"), "run the demo room bot")
	fs.BoolVar(&cfg.Guests, "guests", envBool("DANMAKU_GUESTS", role == "all"), "hand out guest viewer tokens at POST /api/guest")
	fs.StringVar(&cfg.Bus, "bus", env("DANMAKU_BUS", "memory"), "memory (one process) or kafka (env DANMAKU_BUS)")
	fs.StringVar(&cfg.Brokers, "brokers", os.Getenv("DANMAKU_BROKERS"), "comma-separated Kafka brokers (env DANMAKU_BROKERS)")
	fs.StringVar(&cfg.TopicPrefix, "topic-prefix", env("DANMAKU_TOPIC_PREFIX", "danmaku."), "Kafka topic name prefix (env DANMAKU_TOPIC_PREFIX)")
	fs.DurationVar(&cfg.KafkaMaxWait, "kafka-max-wait", envDuration("DANMAKU_KAFKA_MAX_WAIT", 0), "how long the broker holds an idle partition's fetch; an idle partition costs one fetch per this (0: 1s)")
	fs.DurationVar(&cfg.KafkaBatchTimeout, "kafka-batch-timeout", envDuration("DANMAKU_KAFKA_BATCH_TIMEOUT", 0), "how long a Kafka publish waits to fill a batch (0: 2ms)")
	fs.StringVar(&cfg.KafkaAcks, "kafka-acks", os.Getenv("DANMAKU_KAFKA_ACKS"), "acknowledgement a Kafka publish waits for: all or one (empty: all)")
	fs.StringVar(&cfg.KafkaCompression, "kafka-compression", os.Getenv("DANMAKU_KAFKA_COMPRESSION"), "Kafka batch compression: none, lz4, snappy or zstd (empty: lz4)")
	fs.StringVar(&cfg.History, "history", env("DANMAKU_HISTORY", "memory"), "memory or clickhouse (env DANMAKU_HISTORY)")
	fs.StringVar(&cfg.ClickHouse, "clickhouse", os.Getenv("DANMAKU_CLICKHOUSE"), "ClickHouse native address host:port (env DANMAKU_CLICKHOUSE)")
	fs.StringVar(&cfg.Presence, "presence", env("DANMAKU_PRESENCE", "memory"), "memory or redis (env DANMAKU_PRESENCE)")
	fs.StringVar(&cfg.Redis, "redis", os.Getenv("DANMAKU_REDIS"), "Redis address host:port (env DANMAKU_REDIS)")
	fs.StringVar(&cfg.LogLevel, "log-level", env("DANMAKU_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.IntVar(&cfg.ThinBudget, "thin-budget", envInt("DANMAKU_THIN_BUDGET", 0), "display budget per room in messages/s for hot-room thinning (0: off; rooms override it with the display_budget setting)")
	fs.IntVar(&cfg.FlushRate, "flush-rate", envInt("DANMAKU_FLUSH_RATE", 0), "gateway batch writes per second per event loop that pace its flushes by fan-out cost (0: 250000, -1: off)")
	fs.IntVar(&cfg.OutboundBudgetMiB, "outbound-budget", envInt("DANMAKU_OUTBOUND_BUDGET", 0), "gateway outbound backlog over all viewers in MiB; above it batches are dropped for a viewer whose backlog with them would pass 16 KiB (0: 512, -1: off)")
	fs.IntVar(&cfg.OnlineRate, "online-rate", envInt("DANMAKU_ONLINE_RATE", 0), "gateway writes per second for online (viewer count) frames over all rooms (0: 2500, -1: none)")
	fs.IntVar(&cfg.Loops, "loops", envInt("DANMAKU_LOOPS", 0), "gateway event loops (0: GOMAXPROCS)")
	fs.DurationVar(&cfg.DrainTimeout, "drain-timeout", envDuration("DANMAKU_DRAIN_TIMEOUT", 10*time.Second), "graceful drain bound on SIGTERM")
	configFile := fs.String("config", os.Getenv("DANMAKU_CONFIG"), "config file of key: value lines named like the flags (env DANMAKU_CONFIG); flags > env > file > defaults")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *configFile != "" {
		if err := applyConfigFile(fs, *configFile); err != nil {
			return cfg, err
		}
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		return cfg, fmt.Errorf("bad --log-level %q", cfg.LogLevel)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	if cfg.JWTSecret == "" {
		if role != "all" {
			return cfg, errors.New("DANMAKU_JWT_SECRET (or --jwt-secret) is required for separate processes: they must share it")
		}
		b := make([]byte, 24)
		_, _ = rand.Read(b)
		cfg.JWTSecret = hex.EncodeToString(b)
		cfg.DevSecret = true
	}
	return cfg, nil
}

// applyConfigFile sets the flags named in the config file at path, except
// those given on the command line or through their environment variable
// (DANMAKU_ + the flag name in upper case with - as _), so the precedence
// is flags > env > file > defaults.
//
// The file holds one setting per line, "key: value" (a flat YAML mapping)
// or "key=value"; keys are flag names (brokers, topic-prefix) or their
// environment variable names (DANMAKU_BROKERS); values may be quoted; blank
// lines and lines starting with # are ignored. An unknown key is an error.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config: %w", err)
	}
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for i, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") || line == "---" {
			continue
		}
		sep := strings.IndexAny(line, ":=")
		if sep <= 0 {
			return fmt.Errorf("config %s:%d: want key: value", path, i+1)
		}
		key, val := strings.TrimSpace(line[:sep]), strings.TrimSpace(line[sep+1:])
		if n := len(val); n >= 2 && (val[0] == '"' && val[n-1] == '"' || val[0] == '\'' && val[n-1] == '\'') {
			val = val[1 : n-1]
		} else if j := strings.Index(val, " #"); j >= 0 {
			val = strings.TrimSpace(val[:j]) // trailing comment
		}
		name := key
		if strings.HasPrefix(key, "DANMAKU_") {
			name = strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(key, "DANMAKU_")), "_", "-")
		}
		if fs.Lookup(name) == nil || name == "config" {
			return fmt.Errorf("config %s:%d: unknown setting %q", path, i+1, key)
		}
		if set[name] || os.Getenv(envName(name)) != "" {
			continue // the command line or the environment wins
		}
		if err := fs.Set(name, val); err != nil {
			return fmt.Errorf("config %s:%d: %s: %w", path, i+1, key, err)
		}
	}
	return nil
}

// envName is the environment variable of flag name.
func envName(name string) string {
	return "DANMAKU_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))
}

// probeCmd GETs one URL and fails unless it answers 200 within 3s.
func probeCmd(ctx context.Context, args []string) error {
	url := "http://127.0.0.1:8080/readyz"
	if len(args) > 0 {
		url = args[0]
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("probe %s: %s", url, resp.Status)
	}
	return nil
}

func tokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("sub", "", "user id (required)")
	name := fs.String("name", "", "display name")
	role := fs.String("role", auth.RoleViewer, "viewer, mod, streamer or service")
	rooms := fs.String("rooms", "", "comma-separated rooms a mod or streamer moderates (* for all)")
	ttl := fs.Duration("ttl", 24*time.Hour, "validity")
	secret := fs.String("jwt-secret", os.Getenv("DANMAKU_JWT_SECRET"), "HS256 secret (env DANMAKU_JWT_SECRET)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *secret == "" {
		return errors.New("token: set DANMAKU_JWT_SECRET or --jwt-secret (the same secret the server uses)")
	}
	signer, err := auth.NewSigner(*secret)
	if err != nil {
		return err
	}
	var rs []string
	if *rooms != "" {
		rs = strings.Split(*rooms, ",")
	}
	tok, err := signer.Sign(*sub, *name, *role, rs, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

func env(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func envBool(key string, def bool) bool {
	switch strings.ToLower(os.Getenv(key)) {
	case "1", "true", "yes", "on":
		return true
	case "0", "false", "no", "off":
		return false
	}
	return def
}

func envInt(key string, def int) int {
	var v int
	if _, err := fmt.Sscan(os.Getenv(key), &v); err == nil {
		return v
	}
	return def
}

func envDuration(key string, def time.Duration) time.Duration {
	if d, err := time.ParseDuration(os.Getenv(key)); err == nil {
		return d
	}
	return def
}
