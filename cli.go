package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/danmaku-live/danmaku/app"
	"github.com/danmaku-live/danmaku/bench"
	"github.com/danmaku-live/danmaku/pkg/auth"
)

// usage is printed for -h, --help, help and unknown commands.
const usage = `usage: danmaku [command] [flags]

commands:
  all       everything in one process (default)
  gateway   the WebSocket gateway and the HTTP API/pages
  logic     the logic worker (moderation, seq) and the history writer
  dispatch  the fan-out stage
  token     print a signed token: token --sub U [--name N] [--role R] [--rooms a,b] [--ttl D]
  probe     probe [URL]: exit 0 when URL (default http://127.0.0.1:8080/readyz) answers 200;
            a health check for images without curl
  bench     load harness: bench <idle|fanout|rooms|storm|send|soak> [flags], bench compare a.json b.json, bench model [--preset …]
  version   print the build's module version, VCS revision and Go version
  help      this text; help <command> prints the flags of a command

Run "danmaku <command> -h" for the flags of a command.
`

// commandHelp is the first lines of each command's -h.
var commandHelp = map[string]string{
	"all":      "usage: danmaku [all] [flags]\n\nEverything in one process: gateway, logic, history writer and dispatch.\nWith the default memory backends it needs nothing else.",
	"gateway":  "usage: danmaku gateway [flags]\n\nThe WebSocket gateway, the HTTP API and the pages. Needs --bus kafka and the\nsame --jwt-secret as the other processes.",
	"logic":    "usage: danmaku logic [flags]\n\nThe logic worker (moderation, per-room seq) and the history writer.",
	"dispatch": "usage: danmaku dispatch [flags]\n\nThe fan-out stage: accepted messages to every gateway.",
	"token":    "usage: danmaku token --sub U [--name N] [--role R] [--rooms a,b] [--ttl D]\n\nPrint a token signed with the server's secret. A mod or streamer token needs\n--rooms (the rooms it moderates, or * for all).",
	"probe":    "usage: danmaku probe [URL]\n\nExit 0 when URL (default http://127.0.0.1:8080/readyz) answers 200 within 3s.",
	"version":  "usage: danmaku version\n\nPrint the module version, the VCS revision and the Go version of this build.",
}

// helpError is what a command's flag parsing returns for -h: run prints
// its usage text to stdout and exits 0.
type helpError struct{ text string }

func (e *helpError) Error() string { return "help requested" }
func (e *helpError) Unwrap() error { return flag.ErrHelp }

// run parses args and runs the chosen command until ctx is done.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	err := runCommand(ctx, args, stdout, stderr)
	var he *helpError
	switch {
	case errors.As(err, &he):
		fmt.Fprint(stdout, he.text)
		return nil
	case errors.Is(err, flag.ErrHelp): // bench prints its own usage
		return nil
	}
	return err
}

func runCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cmd := "all"
	if len(args) > 0 {
		switch args[0] {
		case "-h", "-help", "--help":
			args = append([]string{"help"}, args[1:]...)
		case "-version", "--version":
			args = append([]string{"version"}, args[1:]...)
		}
		if !strings.HasPrefix(args[0], "-") {
			cmd, args = args[0], args[1:]
		}
	}
	switch cmd {
	case "all", "gateway", "logic", "dispatch":
		cfg, err := parseConfig(cmd, args, stderr)
		if err != nil {
			return err
		}
		a, err := app.New(cfg)
		if err != nil {
			return flagError(err)
		}
		return a.Run(ctx)
	case "token":
		return tokenCmd(args, stdout, stderr)
	case "probe":
		return probeCmd(ctx, args)
	case "bench":
		return bench.Main(ctx, args, benchEnv(), stdout, stderr)
	case "version":
		if len(args) > 0 {
			if isHelp(args[0]) {
				return &helpError{commandHelp["version"] + "\n"}
			}
			return fmt.Errorf("version: unexpected arguments: %v", args)
		}
		return versionCmd(stdout)
	case "help":
		if len(args) > 0 && !isHelp(args[0]) {
			if _, ok := commandHelp[args[0]]; !ok && args[0] != "bench" {
				fmt.Fprint(stderr, usage)
				return fmt.Errorf("help: unknown command %q", args[0])
			}
			return runCommand(ctx, []string{args[0], "-h"}, stdout, stderr)
		}
		fmt.Fprint(stdout, usage)
		return nil
	default:
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("unknown command %q", cmd)
	}
}

// isHelp reports whether arg asks for help.
func isHelp(arg string) bool {
	switch arg {
	case "-h", "-help", "--help", "help":
		return true
	}
	return false
}

// parseFlags parses args into fs. For -h it returns a *helpError with the
// command's usage (so it goes to stdout and exits 0); other parse errors
// print the usage to stderr, as the flag package does.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) error {
	var buf bytes.Buffer
	fs.SetOutput(&buf)
	fs.Usage = func() {
		fmt.Fprintf(&buf, "%s\n\nflags:\n", commandHelp[fs.Name()])
		fs.PrintDefaults()
	}
	err := fs.Parse(args)
	fs.SetOutput(stderr)
	if errors.Is(err, flag.ErrHelp) {
		return &helpError{buf.String()}
	}
	_, _ = stderr.Write(buf.Bytes())
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("%s: unexpected arguments: %v", fs.Name(), fs.Args())
	}
	return err
}

// secretFlags are the flags whose value may hold a secret: the JWT secret,
// and the Redis and ClickHouse addresses, which may carry a password
// (redis://:PASSWORD@host:6379). Their environment variables are read
// after parsing instead of becoming the flag's default, so -h never
// prints them.
var secretFlags = []string{"jwt-secret", "redis", "clickhouse"}

// applySecretEnv sets each of the secret flags of fs that the command line
// did not set from its environment variable, if that is set.
func applySecretEnv(fs *flag.FlagSet) error {
	set := make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for _, name := range secretFlags {
		if fs.Lookup(name) == nil || set[name] {
			continue
		}
		if v := os.Getenv(envName(name)); v != "" {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("%s: %w", envName(name), err)
			}
		}
	}
	return nil
}

// parseConfig reads the flags of a server role, with environment
// variables as defaults, into the app's Config.
func parseConfig(role string, args []string, stderr io.Writer) (app.Config, error) {
	cfg := app.Config{Role: app.Role(role)}
	gw, b := &cfg.Gateway, &cfg.Backends
	var id, origins, brokers, clickhouse, redis, logLevel string
	var outboundMiB int
	fs := flag.NewFlagSet(role, flag.ContinueOnError)
	fs.StringVar(&cfg.HTTPAddr, "http", env("DANMAKU_HTTP", "127.0.0.1:8080"), "HTTP listen address: pages, API, metrics (env DANMAKU_HTTP)")
	fs.StringVar(&gw.Addr, "ws", env("DANMAKU_WS", "127.0.0.1:8090"), "WebSocket listen address (env DANMAKU_WS)")
	fs.StringVar(&cfg.JWTSecret, "jwt-secret", "", "HS256 secret for tokens (env DANMAKU_JWT_SECRET, never shown here; all: random when unset)")
	fs.StringVar(&id, "id", os.Getenv("DANMAKU_ID"), "gateway id on the bus (env DANMAKU_ID; default gw-<host>-<pid>)")
	fs.BoolVar(&gw.ReusePort, "reuseport", envBool("DANMAKU_REUSEPORT", false), "share the WebSocket port with other gateway processes (SO_REUSEPORT)")
	fs.IntVar(&gw.MaxConnsPerIP, "max-conns-per-ip", envInt("DANMAKU_MAX_CONNS_PER_IP", 0), "connections per remote IP (0: 1024, -1: no cap)")
	fs.StringVar(&origins, "origins", os.Getenv("DANMAKU_ORIGINS"), "comma-separated Origin allow-list for browsers (empty: any)")
	fs.BoolVar(&cfg.Demo, "demo", envBool("DANMAKU_DEMO", role == "all"), "run the demo room bot")
	fs.BoolVar(&cfg.Guests, "guests", envBool("DANMAKU_GUESTS", role == "all"), "hand out guest viewer tokens at POST /api/guest")
	fs.StringVar(&b.Bus, "bus", env("DANMAKU_BUS", "memory"), "memory (one process) or kafka (env DANMAKU_BUS)")
	fs.StringVar(&brokers, "brokers", os.Getenv("DANMAKU_BROKERS"), "comma-separated Kafka brokers (env DANMAKU_BROKERS)")
	fs.StringVar(&b.Kafka.TopicPrefix, "topic-prefix", env("DANMAKU_TOPIC_PREFIX", "danmaku."), "Kafka topic name prefix (env DANMAKU_TOPIC_PREFIX)")
	fs.DurationVar(&b.Kafka.MaxWait, "kafka-max-wait", envDuration("DANMAKU_KAFKA_MAX_WAIT", 0), "how long the broker holds an idle partition's fetch; an idle partition costs one fetch per this (0: 1s)")
	fs.DurationVar(&b.Kafka.BatchTimeout, "kafka-batch-timeout", envDuration("DANMAKU_KAFKA_BATCH_TIMEOUT", 0), "how long a Kafka publish waits to fill a batch (0: 2ms)")
	fs.StringVar(&b.Kafka.RequiredAcks, "kafka-acks", os.Getenv("DANMAKU_KAFKA_ACKS"), "acknowledgement a Kafka publish waits for: all or one (empty: all)")
	fs.StringVar(&b.Kafka.Compression, "kafka-compression", os.Getenv("DANMAKU_KAFKA_COMPRESSION"), "Kafka batch compression: none, lz4, snappy or zstd (empty: lz4)")
	fs.IntVar(&b.Kafka.ReplicationFactor, "kafka-replication", envInt("DANMAKU_KAFKA_REPLICATION", 0), "replication factor of the topics a process creates when they are missing (0: 1, for a one-broker dev cluster; production: 3, with the brokers' min.insync.replicas=2)")
	fs.StringVar(&b.History, "history", env("DANMAKU_HISTORY", ""), "memory or clickhouse (env DANMAKU_HISTORY; empty: memory, except that logic on the kafka bus wants it named)")
	fs.StringVar(&clickhouse, "clickhouse", "", "ClickHouse native address host:port or clickhouse://USER:PASSWORD@host:port (env DANMAKU_CLICKHOUSE, never shown here)")
	fs.StringVar(&b.Presence, "presence", env("DANMAKU_PRESENCE", "memory"), "memory or redis (env DANMAKU_PRESENCE)")
	fs.StringVar(&redis, "redis", "", "Redis address host:port or redis://[USER]:PASSWORD@host:port (env DANMAKU_REDIS, never shown here)")
	fs.StringVar(&logLevel, "log-level", env("DANMAKU_LOG_LEVEL", "info"), "debug, info, warn or error")
	fs.IntVar(&cfg.Dispatch.ThinBudget, "thin-budget", envInt("DANMAKU_THIN_BUDGET", 0), "display budget per room in messages/s for hot-room thinning (0: off; rooms override it with the display_budget setting)")
	fs.IntVar(&gw.FlushRate, "flush-rate", envInt("DANMAKU_FLUSH_RATE", 0), "gateway batch writes per second per event loop that pace its flushes by fan-out cost (0: 250000, -1: off)")
	fs.IntVar(&outboundMiB, "outbound-budget", envInt("DANMAKU_OUTBOUND_BUDGET", 0), "gateway outbound backlog over all viewers in MiB; above it batches are dropped for a viewer whose backlog with them would pass a sixteenth of its soft cap (0: 512, -1: off)")
	fs.DurationVar(&gw.ShedDelay, "shed-delay", envDuration("DANMAKU_SHED_DELAY", 0), "how long batches may wait on a gateway event loop (queued to written, the gateway's own clock) before the gateway sheds its heavy rooms by priority, the same for every viewer (0: 500ms, negative: off)")
	fs.IntVar(&gw.OnlineRate, "online-rate", envInt("DANMAKU_ONLINE_RATE", 0), "gateway writes per second for online (viewer count) frames over all rooms (0: 2500, -1: none)")
	fs.BoolVar(&gw.Affinity, "affinity", envBool("DANMAKU_AFFINITY", false), "gateway reads only the dispatch partitions of the rooms its viewers are in (route viewers by room: deploy/nginx); off: every partition")
	fs.DurationVar(&gw.AffinityGrace, "affinity-grace", envDuration("DANMAKU_AFFINITY_GRACE", 0), "with --affinity, how long a dispatch partition is still read after its rooms' last viewer left (0: 30s)")
	fs.IntVar(&gw.AffinityRewind, "affinity-rewind", envInt("DANMAKU_AFFINITY_REWIND", 0), "with --affinity, how many records before its end a newly needed dispatch partition is read from, to overlap the history store (0: 4096)")
	fs.IntVar(&gw.Loops, "loops", envInt("DANMAKU_LOOPS", 0), "gateway event loops (0: GOMAXPROCS)")
	fs.DurationVar(&gw.PresenceInterval, "presence-interval", envDuration("DANMAKU_PRESENCE_INTERVAL", 0), "how often a gateway reports its viewer counts; a dead gateway's viewers drop out of the counts within 3 intervals (0: 2s)")
	fs.DurationVar(&gw.DrainTimeout, "drain-timeout", envDuration("DANMAKU_DRAIN_TIMEOUT", 10*time.Second), "graceful drain bound on SIGTERM")
	configFile := fs.String("config", os.Getenv("DANMAKU_CONFIG"), "config file of key: value lines named like the flags (env DANMAKU_CONFIG); flags > env > file > defaults")
	if err := parseFlags(fs, args, stderr); err != nil {
		return cfg, err
	}
	if *configFile != "" {
		if err := applyConfigFile(fs, *configFile); err != nil {
			return cfg, err
		}
	}
	if err := applySecretEnv(fs); err != nil {
		return cfg, err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(logLevel)); err != nil {
		return cfg, fmt.Errorf("bad --log-level %q", logLevel)
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	gw.ID, cfg.Logic.ID = id, id
	gw.AllowedOrigins = splitList(origins)
	b.Kafka.Brokers = splitList(brokers)
	gw.OutboundBudget = mib(outboundMiB)
	if err := parseBackendAddrs(b, clickhouse, redis); err != nil {
		return cfg, err
	}
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

// parseBackendAddrs sets the ClickHouse and Redis addresses and
// credentials of b from the --clickhouse and --redis values.
func parseBackendAddrs(b *app.Backends, clickhouse, redis string) error {
	if clickhouse != "" {
		addr, user, pass, err := backendAddr("clickhouse", clickhouse)
		if err != nil {
			return err
		}
		b.ClickHouse.Addr, b.ClickHouse.Username, b.ClickHouse.Password = addr, user, pass
	}
	if redis != "" {
		addr, user, pass, err := backendAddr("redis", redis)
		if err != nil {
			return err
		}
		if user != "" && user != "default" {
			return errors.New("--redis: only the default user is supported: redis://:PASSWORD@host:port")
		}
		b.Redis.Addr, b.Redis.Password = addr, pass
	}
	return nil
}

// configFlags names the flag (and so the environment variable) that sets
// each Config field app.Config.Validate may reject.
var configFlags = map[string]string{
	"HTTPAddr":                 "http",
	"JWTSecret":                "jwt-secret",
	"Backends.Bus":             "bus",
	"Backends.Kafka.Brokers":   "brokers",
	"Backends.History":         "history",
	"Backends.ClickHouse.Addr": "clickhouse",
	"Backends.Presence":        "presence",
	"Backends.Redis.Addr":      "redis",
	"Gateway.DrainTimeout":     "drain-timeout",
}

// flagError restates an *app.FieldError with the flag and environment
// variable that set the field, which is what a user of the command line
// can change.
func flagError(err error) error {
	var fe *app.FieldError
	if errors.As(err, &fe) {
		if name, ok := configFlags[fe.Field]; ok {
			return fmt.Errorf("--%s (env %s): %s", name, envName(name), fe.Problem)
		}
	}
	return err
}

// splitList splits a comma-separated list, dropping blanks.
func splitList(s string) []string {
	var out []string
	for v := range strings.SplitSeq(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}

// mib converts a size flag in MiB to bytes, keeping 0 (default) and
// negative (off) as they are.
func mib(n int) int64 {
	if n <= 0 {
		return int64(n)
	}
	return int64(n) << 20
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

// benchEnv is what `danmaku bench` takes from the environment: the Kafka
// brokers and the JWT secret where --brokers, --jwt-secret and the
// scenario file give none, and no progress line under CI=true.
func benchEnv() bench.Options {
	return bench.Options{Brokers: os.Getenv("DANMAKU_BROKERS"), Secret: os.Getenv("DANMAKU_JWT_SECRET"),
		Quiet: os.Getenv("CI") == "true"}
}

// probeCmd GETs one URL and fails unless it answers 200 within 3s.
func probeCmd(ctx context.Context, args []string) error {
	url := "http://127.0.0.1:8080/readyz"
	switch {
	case len(args) > 0 && isHelp(args[0]):
		return &helpError{commandHelp["probe"] + "\n"}
	case len(args) > 1:
		return fmt.Errorf("probe: want one URL, got %v", args)
	case len(args) == 1:
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

// tokenCmd prints a signed token. Its errors name the flags to add.
func tokenCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	sub := fs.String("sub", "", "user id (required)")
	name := fs.String("name", "", "display name")
	role := fs.String("role", auth.RoleViewer, "viewer, mod, streamer or service")
	rooms := fs.String("rooms", "", "comma-separated rooms a mod or streamer moderates (* for all); required for mod and streamer")
	ttl := fs.Duration("ttl", 24*time.Hour, "validity")
	secret := fs.String("jwt-secret", "", "HS256 secret, the one the server uses (env DANMAKU_JWT_SECRET, never shown here)")
	if err := parseFlags(fs, args, stderr); err != nil {
		return err
	}
	if err := applySecretEnv(fs); err != nil {
		return err
	}
	rs := splitList(*rooms)
	switch {
	case *sub == "":
		return errors.New("token: --sub is required: the user id the token is for (e.g. --sub mod1)")
	case *role != auth.RoleViewer && *role != auth.RoleMod && *role != auth.RoleStreamer && *role != auth.RoleService:
		return fmt.Errorf("token: unknown --role %q: want viewer, mod, streamer or service", *role)
	case (*role == auth.RoleMod || *role == auth.RoleStreamer) && len(rs) == 0:
		return fmt.Errorf("token: --role %s needs --rooms: the rooms it moderates, comma-separated, or * for all (e.g. --rooms demo); without it every moderation call answers 403", *role)
	case *ttl <= 0:
		return fmt.Errorf("token: --ttl %v: want a positive duration (e.g. 24h)", *ttl)
	case *secret == "":
		return errors.New("token: set DANMAKU_JWT_SECRET or --jwt-secret (the same secret the server uses)")
	}
	signer, err := auth.NewSigner(*secret)
	if err != nil {
		return err
	}
	tok, err := signer.Sign(*sub, *name, *role, rs, *ttl)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	return nil
}

// versionCmd prints what runtime/debug knows of this build: the module
// version (a tag for go install m@v, "(devel)" for a local build), the
// VCS revision that go build stamps, and the Go version.
func versionCmd(stdout io.Writer) error {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return errors.New("version: this binary carries no build information")
	}
	fmt.Fprintf(stdout, "danmaku %s (module %s)\n", bi.Main.Version, bi.Main.Path)
	vcs := make(map[string]string)
	for _, s := range bi.Settings {
		vcs[s.Key] = s.Value
	}
	if rev := vcs["vcs.revision"]; rev != "" {
		state := "clean"
		if vcs["vcs.modified"] == "true" {
			state = "modified"
		}
		fmt.Fprintf(stdout, "%s revision %s, %s, committed %s\n", vcs["vcs"], rev, state, vcs["vcs.time"])
	} else {
		fmt.Fprintln(stdout, "no VCS revision stamped (builds by go run, go test or with -buildvcs=false carry none)")
	}
	fmt.Fprintf(stdout, "%s %s/%s\n", bi.GoVersion, runtime.GOOS, runtime.GOARCH)
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

// backendAddr splits a Redis or ClickHouse address into host:port and the
// credentials it carries. addr is host:port, or a URL
// scheme://[USER][:PASSWORD]@host:port with scheme redis or clickhouse.
// Errors never repeat addr: it may hold a password.
func backendAddr(scheme, addr string) (hostport, user, password string, err error) {
	if !strings.Contains(addr, "://") {
		return addr, "", "", nil
	}
	bad := fmt.Errorf("--%s: want host:port or %s://[USER][:PASSWORD]@host:port (the value is not repeated: it may hold a password)", scheme, scheme)
	u, err := url.Parse(addr)
	if err != nil || u.Scheme != scheme || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return "", "", "", bad
	}
	if _, _, err := net.SplitHostPort(u.Host); err != nil {
		return "", "", "", bad
	}
	password, _ = u.User.Password()
	return u.Host, u.User.Username(), password, nil
}
