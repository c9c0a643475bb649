package bench

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Scenarios are the load shapes the harness runs.
var Scenarios = []string{"idle", "fanout", "rooms", "storm", "send", "soak"}

// ErrRegressed is returned by compare when a metric got worse than the
// threshold allows.
var ErrRegressed = errors.New("bench: regression beyond the threshold")

// Options size and direct one run. Zero values take the defaults of the
// scenario (see Defaults). A scenario file (--config) holds the same fields
// as JSON; flags given on the command line override it.
type Options struct {
	// Scenario is one of Scenarios.
	Scenario string `json:"scenario"`
	// Name names the output files (default: scenario-<unix time>).
	Name string `json:"name,omitempty"`
	// Out is the directory for results and server logs (default bench-results).
	Out string `json:"out,omitempty"`

	// Viewers is the number of watching connections (default 5000).
	Viewers int `json:"viewers"`
	// Rooms is the number of rooms (default 1; rooms: 100).
	Rooms int `json:"rooms"`
	// Zipf is the exponent of room popularity for viewers and messages
	// (default 1.1; used when Rooms > 1).
	Zipf float64 `json:"zipf"`
	// Rate is messages per second published over HTTP into the rooms
	// (default 100; idle and send: 0).
	Rate float64 `json:"rate"`
	// Duration is how long traffic runs after everyone connected (default
	// 30s; idle 10s; soak 10m). Runs are capped at MaxDuration.
	Duration time.Duration `json:"duration"`
	// Warmup waits after the connections before traffic (default 2s).
	Warmup time.Duration `json:"warmup"`
	// Grace bounds the wait for the last deliveries (default 10s).
	Grace time.Duration `json:"grace"`
	// ConnectTimeout bounds the connect phase (default 3m).
	ConnectTimeout time.Duration `json:"connect_timeout"`

	// Senders are WebSocket connections sending at SendRate each (send:
	// default 200 senders at 2/s).
	Senders    int     `json:"senders"`
	SendRate   float64 `json:"send_rate"`
	SenderRole string  `json:"sender_role"`
	// Keywords is the size of a block list installed in every room before a
	// send run; BadRatio the fraction of sent texts that hit it.
	Keywords int     `json:"keywords"`
	BadRatio float64 `json:"bad_ratio"`

	// Workers is the number of worker processes (default: one per
	// PerWorker connections). InProcess runs them as goroutines instead
	// (tests; limited by this process's open-file limit).
	Workers   int  `json:"workers"`
	PerWorker int  `json:"per_worker"`
	InProcess bool `json:"in_process,omitempty"`
	// SampleRunnable samples, every 100 ms of the traffic phase, the
	// threads running or waiting for a CPU: the host's and, summed, the
	// gateways', the workers' and logic's and dispatch's (Result.Runnable).
	SampleRunnable bool `json:"sample_runnable,omitempty"`
	// SourceIPs is the number of local addresses 127.0.0.2.. to dial from
	// (default: one per connsPerSourceIP connections, at least 1).
	SourceIPs   int     `json:"source_ips"`
	ConnectRate float64 `json:"connect_rate"` // new connections/s per worker, 0: no cap
	Concurrency int     `json:"concurrency"`  // dials in flight per worker (default 256)
	// LatencyEvery samples latency on one viewer in LatencyEvery (default 1).
	LatencyEvery int `json:"latency_every"`
	// ViewerImpl is how the workers run viewers: ImplEpoll (default) or
	// ImplGoroutine.
	ViewerImpl string `json:"viewer_impl,omitempty"`
	// ReadPause is how long an epoll viewer loop that found less than a
	// full round of ready sockets waits before it polls again (default
	// 1ms; negative: block in epoll_wait and wake on every readable
	// socket). A blocked loop thread is woken by the kernel from inside
	// the gateway's write, one wake-up per delivery, which on loopback
	// costs the gateway as much CPU as the write itself; a remote viewer's
	// wake-up happens on its own machine. The pause adds at most about
	// ReadPause to the measured latency.
	ReadPause time.Duration `json:"read_pause,omitempty"`
	// HandshakeTimeout bounds one connect and its upgrade; past it the
	// attempt counts as failed and is retried (default 10s).
	HandshakeTimeout time.Duration `json:"handshake_timeout,omitempty"`
	// Deflate makes viewers offer permessage-deflate (RFC 7692, without
	// context takeover), as browsers do; the bytes counted are then the
	// compressed frames on the wire.
	Deflate bool `json:"deflate,omitempty"`
	// Compact makes viewers offer the subprotocol danmaku.v1.compact
	// (compact batches, docs/protocol.md); with Deflate both.
	Compact bool `json:"compact,omitempty"`
	// Corpus is the text of published messages after the latency prefix:
	// CorpusNone (default: the prefix alone) or CorpusChat (realistic
	// danmaku: mixed CJK, Latin and emoji, memes like "233333", "哈哈哈",
	// "？？？", lengths drawn like real chat; see corpus.go).
	Corpus string `json:"corpus,omitempty"`
	// AsViewers publishes the messages as plain viewers' (the publish
	// API's role "viewer"), not as the service's own: gateways may then
	// shed them under overload (docs/protocol.md, "Overload shedding"),
	// as they would real chat.
	AsViewers bool `json:"as_viewers,omitempty"`

	// WS and HTTP target an existing deployment (comma-separated WebSocket
	// addresses; one HTTP address). Empty: the harness starts its own.
	WS   string `json:"ws,omitempty"`
	HTTP string `json:"http,omitempty"`
	// Secret is the deployment's JWT secret (--jwt-secret, or env
	// DANMAKU_JWT_SECRET through Main); a fresh one when the harness
	// starts the servers.
	Secret string `json:"-"`
	// GatewayPIDs are the gateway processes of an existing deployment to
	// sample from /proc.
	GatewayPIDs []int `json:"gateway_pids,omitempty"`
	// Gateways is the number of gateway processes to start on the Kafka bus
	// (0: one `danmaku all` process).
	Gateways    int    `json:"gateways"`
	ReusePort   bool   `json:"reuseport"`
	Brokers     string `json:"brokers,omitempty"`
	TopicPrefix string `json:"topic_prefix,omitempty"`
	ServerBin   string `json:"server_bin,omitempty"`
	// ServerArgs are extra flags for every started server, space-separated
	// (e.g. "--history clickhouse --clickhouse 127.0.0.1:9000", which a
	// restart storm needs for resume across processes).
	ServerArgs string `json:"server_args,omitempty"`
	// ServerEnv is extra environment for every started server,
	// space-separated KEY=VALUE (e.g. "GOMAXPROCS=2" when the harness
	// runs with GOMAXPROCS=1).
	ServerEnv string `json:"server_env,omitempty"`
	// GatewayNice runs the started gateway processes this much nicer than
	// the harness (nice(1), 0..19), so that on a box they share with the pipeline,
	// logic, dispatch and the broker get the CPU first, as on machines of
	// their own.
	GatewayNice int `json:"gateway_nice,omitempty"`
	// DrainTimeout is passed to started servers (default 2s).
	DrainTimeout time.Duration `json:"drain_timeout"`
	// Affinity starts the gateways with --affinity (room-affine dispatch)
	// and connects each viewer to a gateway chosen by a hash of its room
	// (WorkerSpec.ByRoom), as deploy/nginx/room-affinity.conf does.
	Affinity bool `json:"affinity,omitempty"`
	// AffinityHot spreads, under Affinity, a room of more than AffinityHot
	// viewers and senders over route.HotSlots slots of its own, as
	// deploy/nginx/room-route.js does with $room_viewers_per_slot (0: every
	// room by its partition).
	AffinityHot int `json:"affinity_hot,omitempty"`

	// DropAt is when a storm drops every connection, after traffic starts
	// (default Duration/3). Restart restarts the gateway processes instead
	// (only with Gateways > 0: an embedded all process would lose its seqs).
	DropAt  time.Duration `json:"drop_at"`
	Restart bool          `json:"restart"`
	// Jitter spreads a storm's client-side reconnects over this long
	// (default 0: all at once, the worst case).
	Jitter time.Duration `json:"jitter"`
	// ReportEvery is the period of soak's summary lines (default 1m).
	ReportEvery time.Duration `json:"report_every"`
	// Quiet turns the progress line off (also off when stdout is not a
	// terminal, and under CI=true: Main's env).
	Quiet bool `json:"quiet,omitempty"`
}

// MaxDuration caps every run's traffic phase.
const MaxDuration = 2 * time.Hour

// Defaults fills the zero fields of o for its scenario.
func (o *Options) Defaults() {
	orDefault(&o.Name, o.Scenario+"-"+strconv.FormatInt(time.Now().Unix(), 10))
	orDefault(&o.Out, "bench-results")
	if o.Viewers == 0 {
		o.Viewers = 5000
		if o.Scenario == "send" {
			o.Viewers = 100
		}
	}
	if o.Rooms == 0 {
		o.Rooms = 1
		if o.Scenario == "rooms" {
			o.Rooms = 100
		}
	}
	orDefault(&o.Zipf, 1.1)
	if o.Rate == 0 && o.Scenario != "idle" && o.Scenario != "send" {
		o.Rate = 100
	}
	if o.Rate < 0 {
		o.Rate = 0
	}
	switch o.Scenario {
	case "idle":
		orDefault(&o.Duration, 10*time.Second)
	case "soak":
		orDefault(&o.Duration, 10*time.Minute)
	default:
		orDefault(&o.Duration, 30*time.Second)
	}
	if o.Duration > MaxDuration {
		o.Duration = MaxDuration
	}
	orDefault(&o.Warmup, 2*time.Second)
	orDefault(&o.Grace, 10*time.Second)
	orDefault(&o.ConnectTimeout, 3*time.Minute)
	orDefault(&o.DrainTimeout, 2*time.Second)
	orDefault(&o.ReportEvery, time.Minute)
	orDefault(&o.DropAt, o.Duration/3)
	if o.Scenario == "send" {
		orDefault(&o.Senders, 200)
		orDefault(&o.SendRate, 2)
	}
	orDefault(&o.SenderRole, "viewer")
	orDefault(&o.PerWorker, 18000)
	orDefault(&o.ViewerImpl, ImplEpoll)
	orDefault(&o.ReadPause, time.Millisecond)
	orDefault(&o.LatencyEvery, 1)
	orDefault(&o.TopicPrefix, "bench"+strconv.FormatInt(time.Now().Unix(), 10)+".")
	total := o.Viewers + o.Senders
	orDefault(&o.Workers, max(1, (total+o.PerWorker-1)/o.PerWorker))
	orDefault(&o.SourceIPs, max(1, (total+connsPerSourceIP-1)/connsPerSourceIP))
}

// connsPerSourceIP is how many connections the harness makes from one
// local address by default. connect(2) picks a free ephemeral port by
// probing the range from a hashed offset, preferring one parity (14k of the
// 28k ports here), and each probe is a lookup in the established table:
// at 16,000 connections per address to one gateway port the preferred half
// was full, every connect probed thousands of ports, and that was 52 % of
// the harness's CPU (perf: __inet_check_established). At 4,000 most
// connects take the first or second port.
const connsPerSourceIP = 4000

// Validate reports an unusable option.
func (o *Options) Validate() error {
	known := false
	for _, s := range Scenarios {
		known = known || s == o.Scenario
	}
	switch {
	case !known:
		return fmt.Errorf("bench: unknown scenario %q (one of %s)", o.Scenario, strings.Join(Scenarios, ", "))
	case o.Viewers < 0 || o.Senders < 0 || o.Rooms < 1:
		return errors.New("bench: viewers, senders must be >= 0 and rooms >= 1")
	case o.GatewayNice < 0 || o.GatewayNice > 19 || (o.GatewayNice > 0 && o.Gateways == 0):
		return errors.New("bench: --gateway-nice is 0..19 and needs --gateways K")
	case o.AffinityHot < 0 || (o.AffinityHot > 0 && !o.Affinity):
		return errors.New("bench: --affinity-hot needs --affinity and must be >= 0")
	case o.Affinity && (o.Gateways == 0 || o.ReusePort):
		return errors.New("bench: --affinity needs --gateways K with a port each (no --reuseport): viewers are routed to gateways by room")
	case o.Restart && o.Gateways == 0 && o.WS == "":
		return errors.New("bench: --restart needs --gateways K (an embedded all process would lose its seqs)")
	case o.WS != "" && o.HTTP == "" && o.Rate > 0:
		return errors.New("bench: --ws needs --http to publish")
	case o.HandshakeTimeout < 0:
		return errors.New("bench: --handshake-timeout must not be negative")
	case o.SourceIPs > 250:
		return errors.New("bench: at most 250 source addresses")
	case o.Deflate && o.ViewerImpl != ImplEpoll:
		return fmt.Errorf("bench: --deflate needs --viewer-impl epoll")
	case o.Compact && o.ViewerImpl != ImplEpoll:
		return fmt.Errorf("bench: --compact needs --viewer-impl epoll")
	case o.Corpus != CorpusNone && o.Corpus != CorpusChat:
		return fmt.Errorf("bench: unknown corpus %q (none or chat)", o.Corpus)
	case o.ViewerImpl != ImplEpoll && o.ViewerImpl != ImplGoroutine:
		return fmt.Errorf("bench: unknown viewer implementation %q (epoll or goroutine)", o.ViewerImpl)
	}
	for _, kv := range strings.Fields(o.ServerEnv) {
		if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
			return fmt.Errorf("bench: --server-env %q is not KEY=VALUE", kv)
		}
	}
	return nil
}

// parseOptions reads a scenario's flags, over an optional --config file,
// then takes from env (Main's) what neither set.
func parseOptions(scenario string, args []string, env Options, stderr io.Writer) (*Options, error) {
	o := &Options{Scenario: scenario, ReusePort: true}
	// A scenario file is read first so flags override it.
	if err := applyConfigFiles(scenario, args, o); err != nil {
		return nil, err
	}
	fs := flag.NewFlagSet("bench "+scenario, flag.ContinueOnError)
	fs.SetOutput(stderr)
	outputFlags(fs, o)
	loadFlags(fs, o)
	harnessFlags(fs, o)
	pids := targetFlags(fs, o)
	serverFlags(fs, o)
	phaseFlags(fs, o)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("bench: unexpected arguments %v", fs.Args())
	}
	if *pids != "" {
		for _, p := range strings.Split(*pids, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(p))
			if err != nil {
				return nil, fmt.Errorf("bench: bad --gateway-pids %q", p)
			}
			o.GatewayPIDs = append(o.GatewayPIDs, n)
		}
	}
	// After parsing, so that -h does not print the secret as a default.
	orDefault(&o.Brokers, env.Brokers)
	orDefault(&o.Secret, env.Secret)
	o.Quiet = o.Quiet || env.Quiet
	o.Defaults()
	return o, o.Validate()
}

// applyConfigFiles reads every --config file named in args into o, in
// order; the scenario named on the command line wins over the file's.
func applyConfigFiles(scenario string, args []string, o *Options) error {
	for i, a := range args {
		var path string
		if v, ok := strings.CutPrefix(a, "--config="); ok {
			path = v
		} else if (a == "--config" || a == "-config") && i+1 < len(args) {
			path = args[i+1]
		}
		if path != "" {
			if err := loadScenarioFile(path, o); err != nil {
				return err
			}
			if o.Scenario == "" || scenario != "" {
				o.Scenario = scenario
			}
		}
	}
	return nil
}

// outputFlags defines the scenario file, where results go and how much is
// printed.
func outputFlags(fs *flag.FlagSet, o *Options) {
	fs.String("config", "", "scenario file: JSON, or YAML when it ends in .yaml/.yml, with the fields of a result's options")
	fs.StringVar(&o.Name, "name", o.Name, "name of the output files (default scenario-<unix time>)")
	fs.StringVar(&o.Out, "out", o.Out, "directory for results and server logs (default bench-results)")
	fs.BoolVar(&o.Quiet, "quiet", o.Quiet, "no progress line")
}

// loadFlags defines the load shape: viewers, rooms, published and sent
// traffic, and the phases' lengths.
func loadFlags(fs *flag.FlagSet, o *Options) {
	fs.IntVar(&o.Viewers, "viewers", o.Viewers, "watching connections (default 5000; send: 100)")
	fs.IntVar(&o.Rooms, "rooms", o.Rooms, "rooms (default 1; rooms: 100)")
	fs.Float64Var(&o.Zipf, "zipf", o.Zipf, "Zipf exponent of room popularity (default 1.1)")
	fs.Float64Var(&o.Rate, "rate", o.Rate, "messages/s published into the rooms (default 100; idle, send: 0)")
	fs.DurationVar(&o.Duration, "duration", o.Duration, "traffic phase (default 30s; idle 10s; soak 10m; max 2h)")
	fs.DurationVar(&o.Warmup, "warmup", o.Warmup, "pause between connecting and traffic (default 2s)")
	fs.DurationVar(&o.Grace, "grace", o.Grace, "wait for the last deliveries (default 10s)")
	fs.DurationVar(&o.ConnectTimeout, "connect-timeout", o.ConnectTimeout, "bound of the connect phase (default 3m)")
	fs.IntVar(&o.Senders, "senders", o.Senders, "sending WebSocket connections (send: 200)")
	fs.Float64Var(&o.SendRate, "send-rate", o.SendRate, "messages/s per sender (send: 2)")
	fs.StringVar(&o.SenderRole, "sender-role", o.SenderRole, "token role of senders: viewer (rate-limited) or mod")
	fs.IntVar(&o.Keywords, "keywords", o.Keywords, "block-list size installed in every room before sending")
	fs.Float64Var(&o.BadRatio, "bad-ratio", o.BadRatio, "fraction of sent texts that hit the block list")
	fs.StringVar(&o.Corpus, "corpus", o.Corpus, "published text after the latency prefix: none (default) or chat (realistic mixed CJK/Latin/emoji danmaku)")
	fs.BoolVar(&o.AsViewers, "as-viewers", o.AsViewers, "publish messages as plain viewers' chat (sheddable under overload), not as the service's own (never shed)")
}

// harnessFlags defines how the load generator runs: worker processes,
// dialing, and what each viewer measures and offers.
func harnessFlags(fs *flag.FlagSet, o *Options) {
	fs.IntVar(&o.Workers, "workers", o.Workers, "worker processes (default one per --per-worker connections)")
	fs.IntVar(&o.PerWorker, "per-worker", o.PerWorker, "connections per worker process (default 18000; the fd limit is per process)")
	fs.BoolVar(&o.InProcess, "in-process", o.InProcess, "run workers as goroutines of this process")
	fs.BoolVar(&o.SampleRunnable, "sample-runnable", o.SampleRunnable, "sample the threads running or waiting for a CPU every 100 ms of the traffic, by process kind (result: runnable; reading them costs the box a little CPU)")
	fs.IntVar(&o.SourceIPs, "source-ips", o.SourceIPs, fmt.Sprintf("local addresses 127.0.0.2.. to dial from (default one per %d connections)", connsPerSourceIP))
	fs.Float64Var(&o.ConnectRate, "connect-rate", o.ConnectRate, "new connections/s per worker (0: as fast as possible)")
	fs.IntVar(&o.Concurrency, "concurrency", o.Concurrency, "dials in flight per worker (default 256)")
	fs.IntVar(&o.LatencyEvery, "latency-every", o.LatencyEvery, "measure latency on 1 viewer in N (default 1: all)")
	fs.StringVar(&o.ViewerImpl, "viewer-impl", o.ViewerImpl, "viewer implementation of the workers: epoll (event loops) or goroutine (one per connection)")
	fs.DurationVar(&o.HandshakeTimeout, "handshake-timeout", o.HandshakeTimeout, "bound on one connect and its upgrade before the attempt counts as failed and is retried (default 10s)")
	fs.DurationVar(&o.ReadPause, "read-pause", o.ReadPause, "epoll viewers: pause between polls when not all sockets were ready, so the kernel does not wake a harness thread per delivery (default 1ms; -1ns: block in epoll_wait)")
	fs.BoolVar(&o.Deflate, "deflate", o.Deflate, "viewers offer permessage-deflate (compressed batches; bytes counted as on the wire)")
	fs.BoolVar(&o.Compact, "compact", o.Compact, "viewers offer the danmaku.v1.compact subprotocol (compact batches; with --deflate both)")
}

// targetFlags defines the addresses of an already running deployment; it
// returns the --gateway-pids value, parsed after fs.Parse.
func targetFlags(fs *flag.FlagSet, o *Options) *string {
	fs.StringVar(&o.WS, "ws", o.WS, "target deployment's WebSocket address(es), comma-separated (default: start servers)")
	fs.StringVar(&o.HTTP, "http", o.HTTP, "target deployment's HTTP address (publish API)")
	fs.StringVar(&o.Secret, "jwt-secret", o.Secret, "JWT secret of the target deployment (env DANMAKU_JWT_SECRET)")
	pids := fs.String("gateway-pids", "", "comma-separated gateway pids of the target deployment to sample")
	return pids
}

// serverFlags defines the servers the bench starts itself.
func serverFlags(fs *flag.FlagSet, o *Options) {
	fs.IntVar(&o.Gateways, "gateways", o.Gateways, "gateway processes to start on the Kafka bus (0: one danmaku all)")
	fs.BoolVar(&o.ReusePort, "reuseport", o.ReusePort, "started gateways share one port (SO_REUSEPORT); false: one port each")
	fs.IntVar(&o.AffinityHot, "affinity-hot", o.AffinityHot, "with --affinity, a room of more than this many viewers gets slots of its own (ceil(viewers / this)), as room-route.js's $room_viewers_per_slot; 0: none")
	fs.BoolVar(&o.Affinity, "affinity", o.Affinity, "started gateways run with --affinity and viewers go to gateways by a hash of their room (needs --gateways, one port each)")
	fs.StringVar(&o.Brokers, "brokers", o.Brokers, "Kafka brokers for --gateways (env DANMAKU_BROKERS)")
	fs.StringVar(&o.ServerBin, "server-bin", o.ServerBin, "danmaku binary to start (default: this executable)")
	fs.StringVar(&o.ServerArgs, "server-args", o.ServerArgs, "extra flags for every started server, space-separated")
	fs.IntVar(&o.GatewayNice, "gateway-nice", o.GatewayNice, "run the started gateways this much nicer than the harness (0..19): the pipeline gets the box's CPU first, as on machines of its own")
	fs.StringVar(&o.ServerEnv, "server-env", o.ServerEnv, "extra environment for every started server, space-separated KEY=VALUE")
	fs.DurationVar(&o.DrainTimeout, "drain-timeout", o.DrainTimeout, "drain timeout of started servers (default 2s)")
}

// phaseFlags defines the knobs of one scenario: storm's drop and soak's
// report period.
func phaseFlags(fs *flag.FlagSet, o *Options) {
	fs.DurationVar(&o.DropAt, "drop-at", o.DropAt, "storm: when to drop every connection, after traffic starts (default duration/3)")
	fs.BoolVar(&o.Restart, "restart", o.Restart, "storm: restart the gateway processes instead of dropping client-side")
	fs.DurationVar(&o.Jitter, "jitter", o.Jitter, "storm: spread the client-side reconnects over this long (default 0: all at once)")
	fs.DurationVar(&o.ReportEvery, "report-every", o.ReportEvery, "soak: summary line period (default 1m)")
}

// durationKeys are the Options fields that a scenario file may give as
// strings such as "30s" (or as nanoseconds).
var durationKeys = map[string]bool{"duration": true, "warmup": true, "grace": true, "connect_timeout": true,
	"drain_timeout": true, "drop_at": true, "report_every": true, "jitter": true}

// loadScenarioFile reads a JSON or YAML scenario file into o. Its keys are
// the JSON names of Options; durations may be strings ("30s").
func loadScenarioFile(path string, o *Options) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m map[string]any
	if ext := strings.ToLower(filepath.Ext(path)); ext == ".yaml" || ext == ".yml" {
		err = yaml.Unmarshal(b, &m)
	} else {
		err = json.Unmarshal(b, &m)
	}
	if err != nil {
		return fmt.Errorf("bench: %s: %w", path, err)
	}
	for k, v := range m {
		if str, ok := v.(string); ok && durationKeys[k] {
			d, err := time.ParseDuration(str)
			if err != nil {
				return fmt.Errorf("bench: %s: %s: %w", path, k, err)
			}
			m[k] = int64(d)
		}
	}
	j, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("bench: %s: %w", path, err)
	}
	if err := json.Unmarshal(j, o); err != nil {
		return fmt.Errorf("bench: %s: %w", path, err)
	}
	return nil
}

// orDefault sets *v to def when it holds its type's zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
