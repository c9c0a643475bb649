package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/danmaku-live/danmaku/dispatch"
	"github.com/danmaku-live/danmaku/gateway"
	"github.com/danmaku-live/danmaku/logic"
	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/bus/kafkabus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/history/chstore"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/presence/redispresence"
)

// Config is the configuration of one danmaku process.
type Config struct {
	// Role is all, gateway, logic or dispatch.
	Role string
	// HTTPAddr serves pages, the API, /metrics and health checks.
	HTTPAddr string
	// WSAddr is the gateway's WebSocket address.
	WSAddr        string
	JWTSecret     string
	DevSecret     bool // JWTSecret was generated: tokens die with the process
	GatewayID     string
	ReusePort     bool
	MaxConnsPerIP int
	Origins       string
	Demo          bool
	Guests        bool
	// Bus is "memory" (one process only) or "kafka" (Brokers).
	Bus         string
	Brokers     string
	TopicPrefix string
	// Kafka client settings (zero: the kafkabus defaults).
	KafkaMaxWait      time.Duration
	KafkaBatchTimeout time.Duration
	KafkaAcks         string
	KafkaCompression  string
	KafkaReplication  int
	// History is "memory" or "clickhouse" (ClickHouse address).
	History    string
	ClickHouse string
	// Presence is "memory" or "redis" (Redis address).
	Presence     string
	Redis        string
	LogLevel     string
	DrainTimeout time.Duration
	// ThinBudget is the default display budget per room (messages/s) for
	// hot-room thinning; 0 is off.
	ThinBudget int
	// FlushRate paces each gateway event loop's batch writes by fan-out
	// cost (writes per second; 0 = the gateway default, -1 = off); see
	// gateway.Config.FlushRate.
	FlushRate int
	// ShedDelay is the lag of a gateway's writes past which it sheds its
	// heavy rooms (0 = the gateway default, negative = off); see
	// gateway.Config.ShedDelay.
	ShedDelay time.Duration
	// OutboundBudgetMiB bounds a gateway's viewers' outbound backlog in
	// MiB (0 = the gateway default, -1 = off); see
	// gateway.Config.OutboundBudget.
	OutboundBudgetMiB int
	// OnlineRate bounds a gateway's online-frame writes per second
	// (gateway.Config.OnlineRate).
	OnlineRate int
	// Loops is the gateway's event loop count (0 = GOMAXPROCS); see
	// gateway.Config.Loops.
	Loops  int
	Logger *slog.Logger

	// PresenceInterval is how often gateways report their counts; a dead
	// gateway's viewers drop out of the counts within 3 intervals. Zero
	// means $DANMAKU_PRESENCE_INTERVAL, else the gateway default (2s).
	PresenceInterval time.Duration
}

// App is one danmaku process: the stages its role runs, on shared
// backends.
type App struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	signer   *auth.Signer
	bus      bus.Bus
	history  history.Store
	presence presence.Presence
	sessions presence.Sessions // one connection per user and device
	bans     presence.Bans     // bans and timeouts with reasons
	kv       presence.KV       // persisted room settings and keyword lists
	dedupe   presence.Dedupe   // accepted message ids, for retries across logic takeovers
	engine   *moderation.Engine

	gw   *gateway.Server
	lg   *logic.Logic
	dp   *dispatch.Dispatcher
	hw   *history.Writer
	api  *moderation.API
	http *http.Server
	ln   net.Listener
}

// NewApp builds the stages of cfg.Role on the embedded backends.
func NewApp(cfg Config) (*App, error) {
	signer, err := auth.NewSigner(cfg.JWTSecret)
	if err != nil {
		return nil, err
	}
	if cfg.PresenceInterval == 0 {
		cfg.PresenceInterval, _ = time.ParseDuration(os.Getenv("DANMAKU_PRESENCE_INTERVAL"))
	}
	a := &App{cfg: cfg, log: cfg.Logger, reg: prometheus.NewRegistry(), signer: signer}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := a.openBackends(); err != nil {
		a.closeBackends()
		return nil, err
	}
	a.engine, err = moderation.New(moderation.Config{Logger: a.log})
	if err != nil {
		return nil, err
	}
	var seqs logic.SeqSource
	if ls, ok := a.history.(history.LastSeqer); ok {
		seqs = ls
	}
	runs := func(stage string) bool { return cfg.Role == "all" || cfg.Role == stage }
	// Moderators' decisions made before this process started.
	rooms := moderation.Loaded(moderation.StateStore{KV: a.kv, Bans: a.bans})

	if runs("logic") {
		if a.lg, err = logic.New(logic.Config{Bus: a.bus, Moderation: a.engine, Engine: a.engine, Seqs: seqs,
			Rooms: rooms, Dedupe: a.dedupe, ID: cfg.GatewayID, Logger: a.log, Registerer: a.reg}); err != nil {
			return nil, err
		}
		if a.hw, err = history.NewWriter(history.WriterConfig{Bus: a.bus, Store: a.history, Logger: a.log}); err != nil {
			return nil, err
		}
		registerWriterMetrics(a.reg, a.hw)
	}
	if runs("dispatch") {
		if a.dp, err = dispatch.New(dispatch.Config{Bus: a.bus, ThinBudget: cfg.ThinBudget, Logger: a.log, Registerer: a.reg}); err != nil {
			return nil, err
		}
	}
	if runs("gateway") {
		var origins []string
		for o := range strings.SplitSeq(cfg.Origins, ",") {
			if o = strings.TrimSpace(o); o != "" {
				origins = append(origins, o)
			}
		}
		if a.gw, err = gateway.New(gateway.Config{
			Addr: cfg.WSAddr, ID: cfg.GatewayID, ReusePort: cfg.ReusePort, Bus: a.bus, History: a.history,
			Presence: a.presence, Signer: signer, MaxConnsPerIP: cfg.MaxConnsPerIP, AllowedOrigins: origins,
			DrainTimeout: cfg.DrainTimeout, Logger: a.log, Registerer: a.reg,
			Sessions: a.sessions, PresenceInterval: cfg.PresenceInterval,
			FlushRate: cfg.FlushRate, OnlineRate: cfg.OnlineRate, Loops: cfg.Loops,
			OutboundBudget: mib(cfg.OutboundBudgetMiB), ShedDelay: cfg.ShedDelay,
		}); err != nil {
			return nil, err
		}
		_, port, _ := net.SplitHostPort(cfg.WSAddr)
		wsPort, _ := strconv.Atoi(port)
		if a.api, err = moderation.NewAPI(moderation.APIConfig{Bus: a.bus, History: a.history, Presence: a.presence,
			Signer: signer, Engine: a.engine, Guests: cfg.Guests, WSPort: wsPort, Logger: a.log,
			Bans: a.bans, KV: a.kv, Rooms: rooms, AllowedOrigins: origins}); err != nil {
			return nil, err
		}
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", a.readyz)
	if a.api != nil {
		a.api.Register(mux)
		gateway.RegisterPages(mux, a.api.AllowedOrigins()...)
		moderation.RegisterDashboard(mux)
	}
	a.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	return a, nil
}

// readyz reports ready once the gateway listens (other roles are ready at
// once).
func (a *App) readyz(w http.ResponseWriter, r *http.Request) {
	if a.gw != nil {
		select {
		case <-a.gw.Ready():
		default:
			http.Error(w, "starting", http.StatusServiceUnavailable)
			return
		}
	}
	_, _ = w.Write([]byte("ready\n"))
}

// Run serves until ctx is done, then drains: the gateway tells clients to
// reconnect and closes them, the pipeline stages stop after it.
func (a *App) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		return fmt.Errorf("http: %w", err)
	}
	a.ln = ln
	stages, stopStages := context.WithCancel(context.Background())
	defer stopStages()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	start := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(stages); err != nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	if a.lg != nil {
		start("logic", a.lg.Run)
		start("history writer", a.hw.Run)
	}
	if a.dp != nil {
		start("dispatch", a.dp.Run)
	}
	if a.api != nil {
		start("api", a.api.Run)
	}
	gwDone := make(chan error, 1)
	if a.gw != nil {
		go func() { gwDone <- a.gw.Run() }()
		select {
		case <-a.gw.Ready():
		case err := <-gwDone:
			return err
		}
		select {
		case <-a.gw.Done(): // Ready because the engine failed (the port is taken)
			return <-gwDone
		default:
		}
	}
	go func() {
		if err := a.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	if a.cfg.Demo {
		start("demo", a.runDemo)
	}
	a.banner()

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		a.log.Error("stage failed; shutting down", "err", runErr)
	case runErr = <-gwDone:
		a.gw = nil
	}
	a.log.Info("shutting down", "drain_timeout", a.cfg.DrainTimeout)
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.DrainTimeout+5*time.Second)
	defer cancel()
	if a.gw != nil {
		if err := a.gw.Shutdown(sctx); err != nil {
			a.log.Warn("gateway drain", "err", err)
		}
	}
	// Let the pipeline finish what is in flight, then stop it.
	time.Sleep(200 * time.Millisecond)
	_ = a.http.Shutdown(sctx)
	stopStages()
	wg.Wait()
	a.closeBackends()
	return runErr
}

// openBackends connects the bus, history and presence backends cfg names.
func (a *App) openBackends() error {
	cfg := a.cfg
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch cfg.Bus {
	case "", "memory":
		if cfg.Role != "all" {
			return fmt.Errorf("%s: the memory bus works inside one process only; use --bus kafka --brokers host:port", cfg.Role)
		}
		a.bus = bus.NewMemory(bus.MemoryConfig{})
	case "kafka":
		if cfg.Brokers == "" {
			return errors.New("--bus kafka needs --brokers (env DANMAKU_BROKERS)")
		}
		kb, err := kafkabus.New(ctx, kafkabus.Config{Brokers: strings.Split(cfg.Brokers, ","), TopicPrefix: cfg.TopicPrefix,
			CreateTopics: true, Logger: a.log, MaxWait: cfg.KafkaMaxWait, BatchTimeout: cfg.KafkaBatchTimeout,
			RequiredAcks: cfg.KafkaAcks, Compression: cfg.KafkaCompression, ReplicationFactor: cfg.KafkaReplication})
		if err != nil {
			return err
		}
		a.bus = kb
	default:
		return fmt.Errorf("unknown --bus %q (memory or kafka)", cfg.Bus)
	}
	switch cfg.History {
	case "", "memory":
		a.history = history.NewMemory(history.MemoryConfig{})
		switch {
		case cfg.Role == "gateway":
			// Nothing writes a separate gateway's memory store: answer
			// incomplete rather than empty.
			a.history = history.Unavailable{}
			a.log.Warn("gateway without a shared history store: joins and resumes beyond the gateway's memory are answered complete:false; use --history clickhouse")
		case cfg.Role == "logic" && cfg.Bus == "kafka":
			// A room whose accepted records left the takeover scan (or
			// Kafka's retention) would start again at seq 1 after a restart
			// or rebalance, and every gateway and client that saw its
			// higher seqs would drop the new messages as seen.
			return errors.New("logic on --bus kafka needs a shared history store to continue each room's seq: use --history clickhouse --clickhouse host:port")
		case cfg.Role == "all" && cfg.Bus == "kafka":
			a.log.Warn("--bus kafka with --history memory: a quiet room's seq starts again at 1 after a restart; use --history clickhouse for anything but tests and benchmarks")
		}
	case "clickhouse":
		if cfg.ClickHouse == "" {
			return errors.New("--history clickhouse needs --clickhouse host:port (env DANMAKU_CLICKHOUSE)")
		}
		addr, user, pass, err := backendAddr("clickhouse", cfg.ClickHouse)
		if err != nil {
			return err
		}
		st, err := chstore.New(ctx, chstore.Config{Addr: addr, Username: user, Password: pass, Logger: a.log})
		if err != nil {
			return err
		}
		a.history = st
	default:
		return fmt.Errorf("unknown --history %q (memory or clickhouse)", cfg.History)
	}
	switch cfg.Presence {
	case "", "memory":
		a.presence = presence.NewMemory()
		a.sessions = presence.NewMemorySessions()
		a.bans = presence.NewMemoryBans()
		a.kv = presence.NewMemoryKV()
		a.dedupe = presence.NewMemoryDedupe(0)
		if cfg.Role == "logic" && cfg.Bus == "kafka" {
			a.log.Warn("logic with --presence memory: a retry that comes after its room moved to another worker, beyond the takeover scan, is not recognised; use --presence redis")
		}
	case "redis":
		if cfg.Redis == "" {
			return errors.New("--presence redis needs --redis host:port (env DANMAKU_REDIS)")
		}
		addr, user, pass, err := backendAddr("redis", cfg.Redis)
		if err != nil {
			return err
		}
		if user != "" && user != "default" {
			return errors.New("--redis: only the default user is supported: redis://:PASSWORD@host:port")
		}
		rp, err := redispresence.New(ctx, redispresence.Config{Addr: addr, Password: pass})
		if err != nil {
			return err
		}
		// Counts go stale rather than failing while Redis is down; the
		// wrapper's Close closes rp.
		a.presence = presence.NewCachedPresence(rp, presence.CacheConfig{})
		a.sessions = rp
		// Bans and settings are read from a local copy while Redis is down.
		a.bans = presence.NewCachedBans(rp, presence.CacheConfig{})
		a.kv = presence.NewCachedKV(rp, presence.CacheConfig{})
		a.dedupe = rp
	default:
		return fmt.Errorf("unknown --presence %q (memory or redis)", cfg.Presence)
	}
	return nil
}

// closeBackends closes the backends that hold connections.
func (a *App) closeBackends() {
	for _, b := range []any{a.bus, a.history, a.presence} {
		if c, ok := b.(interface{ Close() error }); ok {
			_ = c.Close()
		}
	}
}

func (a *App) banner() {
	host, port, _ := net.SplitHostPort(a.ln.Addr().String())
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	base := "http://" + net.JoinHostPort(host, port)
	attrs := []any{"role", a.cfg.Role, "http", base}
	if a.gw != nil {
		attrs = append(attrs, "ws", "ws://"+a.gw.Addr()+"/ws", "viewer", base+"/?room=demo", "dashboard", base+"/dashboard")
	}
	a.log.Info("danmaku is running", attrs...)
	if a.cfg.DevSecret {
		a.log.Warn("no DANMAKU_JWT_SECRET set: using a random development secret; tokens stop working when the process exits")
		if a.api != nil {
			// The dashboard needs a mod token signed with this secret,
			// which nobody else knows: hand one out for the demo room.
			tok, err := a.signer.Sign("dev-mod", "dev moderator", auth.RoleMod, []string{"demo"}, 24*time.Hour)
			if err == nil {
				a.log.Info("development moderator token for room demo: open the dashboard and paste it",
					"dashboard", base+"/dashboard?room=demo", "token", tok)
			}
		}
	}
}

// runDemo posts lines to the demo room so a fresh `make run` shows
// danmaku flying. Runs until ctx is done.
func (a *App) runDemo(ctx context.Context) error {
	lines := []string{
		"666", "前方高能!", "hello from the demo room 👋", "GG", "what a play!", "awsl", "哈哈哈哈哈",
		"弹幕护体", "lol", "first time here, love it", "こんにちは", "nice!", "🔥🔥🔥", "up up up", "打卡",
		"that was close", "clip it!", "where is everyone from?", "wow", "草",
	}
	names := []string{"mika", "lee", "ana", "kenji", "ola", "ravi", "zoe", "tomas"}
	pub := a.bus.Publisher(bus.StreamIngest)
	n := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(400+rand.IntN(800)) * time.Millisecond):
		}
		n++
		name := names[rand.IntN(len(names))]
		in := bus.Ingest{Room: "demo", ID: "demo-" + strconv.Itoa(n) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36),
			UID: "demo-" + name, Name: name, Role: auth.RoleService, Text: lines[rand.IntN(len(lines))],
			TS: time.Now().UnixMilli(), Trusted: true}
		if n%15 == 0 {
			in.Kind, in.Color, in.Text = "highlight", "#ffcc00", "★ thanks for watching the demo ★"
		}
		v, _ := bus.Marshal(in)
		if err := pub.Publish(ctx, bus.Record{Key: in.Room, Value: v}); err != nil && ctx.Err() == nil {
			a.log.Warn("demo publish failed", "err", err)
		}
	}
}

// mib converts a size flag in MiB to bytes, keeping 0 (default) and
// negative (off) as they are.
func mib(n int) int64 {
	if n <= 0 {
		return int64(n)
	}
	return int64(n) << 20
}
