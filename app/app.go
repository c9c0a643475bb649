// Package app builds and runs one danmaku process: the stages its role
// runs (gateway, logic with the history writer, dispatch), the HTTP
// server of pages, API, metrics and health checks, on the backends its
// Config names. `danmaku all|gateway|logic|dispatch` and the tests that
// need the whole pipeline use the same New.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/danmaku-live/danmaku/dispatch"
	"github.com/danmaku-live/danmaku/gateway"
	"github.com/danmaku-live/danmaku/logic"
	"github.com/danmaku-live/danmaku/logic/historywriter"
	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/moderation/httpapi"
	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/presence"
)

// App is one danmaku process: the stages its role runs, on shared
// backends.
type App struct {
	cfg      Config
	log      *slog.Logger
	reg      *prometheus.Registry
	signer   *auth.Signer
	bus      bus.Bus
	ownBus   bool // opened here (not Backends.Given): closed here
	history  history.Store
	presence presence.Presence
	sessions presence.Sessions // one connection per user and device
	bans     presence.Bans     // bans and timeouts with reasons
	kv       presence.KV       // persisted room settings and keyword lists
	dedupe   presence.Dedupe   // accepted message ids, for retries across logic takeovers
	engine   *moderation.Engine

	gw    *gateway.Server
	lg    *logic.Logic
	dp    *dispatch.Dispatcher
	hw    *historywriter.Writer
	api   *httpapi.API
	http  *http.Server
	ln    net.Listener
	ready chan struct{} // closed once Run serves HTTP (and the gateway listens)
}

// New validates cfg, opens its backends and builds the stages of
// cfg.Role.
func New(cfg Config) (*App, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	signer, err := auth.NewSigner(cfg.JWTSecret)
	if err != nil {
		return nil, err
	}
	a := &App{cfg: cfg, log: cfg.Logger, reg: prometheus.NewRegistry(), signer: signer, ready: make(chan struct{})}
	a.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	if err := a.openBackends(); err != nil {
		a.closeBackends()
		return nil, err
	}
	if err := a.buildStages(); err != nil {
		a.closeBackends()
		return nil, err
	}
	a.http = &http.Server{Handler: a.mux(), ReadHeaderTimeout: 5 * time.Second, ReadTimeout: 30 * time.Second,
		WriteTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 16 << 10}
	return a, nil
}

// buildStages builds the moderation engine and the stages of the role,
// each from its own Config with the shared backends filled in.
func (a *App) buildStages() error {
	cfg := a.cfg
	var err error
	if a.engine, err = moderation.New(moderation.Config{Logger: a.log}); err != nil {
		return err
	}
	// Moderators' decisions made before this process started.
	rooms := moderation.Loaded(moderation.StateStore{KV: a.kv, Bans: a.bans})
	if cfg.Role.runs(RoleLogic) {
		lc := cfg.Logic
		lc.Bus, lc.Moderation, lc.Rooms, lc.Dedupe, lc.Logger, lc.Registerer = a.bus, a.engine, rooms, a.dedupe, a.log, a.reg
		if ls, ok := a.history.(history.LastSeqer); ok {
			lc.Seqs = ls
		}
		if vl, ok := a.history.(history.VerdictLog); ok {
			lc.Verdicts = vl
		}
		if a.lg, err = logic.New(lc); err != nil {
			return err
		}
		hc := cfg.HistoryWriter
		hc.Bus, hc.Store, hc.Logger = a.bus, a.history, a.log
		if a.hw, err = historywriter.New(hc); err != nil {
			return err
		}
		registerWriterMetrics(a.reg, a.hw)
	}
	if cfg.Role.runs(RoleDispatch) {
		dc := cfg.Dispatch
		dc.Bus, dc.Logger, dc.Registerer = a.bus, a.log, a.reg
		if a.dp, err = dispatch.New(dc); err != nil {
			return err
		}
	}
	if !cfg.Role.runs(RoleGateway) {
		return nil
	}
	gc := cfg.Gateway
	gc.Bus, gc.History, gc.Presence, gc.Sessions, gc.Signer, gc.Logger, gc.Registerer =
		a.bus, a.history, a.presence, a.sessions, a.signer, a.log, a.reg
	if a.gw, err = gateway.New(gc); err != nil {
		return err
	}
	_, port, _ := net.SplitHostPort(gc.Addr)
	wsPort, _ := strconv.Atoi(port)
	a.api, err = httpapi.NewAPI(httpapi.APIConfig{Bus: a.bus, History: a.history, Presence: a.presence,
		Signer: a.signer, Engine: a.engine, Guests: cfg.Guests, WSPort: wsPort, Logger: a.log,
		Bans: a.bans, KV: a.kv, Rooms: rooms, AllowedOrigins: gc.AllowedOrigins})
	return err
}

// mux routes the HTTP server: metrics and health checks always, the API,
// pages and dashboard where a gateway runs.
func (a *App) mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(a.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", a.readyz)
	if a.api != nil {
		a.api.Register(mux)
		gateway.RegisterPages(mux, a.api.AllowedOrigins()...)
		httpapi.RegisterDashboard(mux)
	}
	return mux
}

// Registry is the process's metrics registry (what /metrics serves).
func (a *App) Registry() *prometheus.Registry { return a.reg }

// Ready is closed once Run serves HTTP and the gateway (if any) listens.
func (a *App) Ready() <-chan struct{} { return a.ready }

// HTTPAddr is the address the HTTP server listens on; valid after Ready.
func (a *App) HTTPAddr() string { return a.ln.Addr().String() }

// WSAddr is the gateway's WebSocket address ("" without a gateway);
// valid after Ready.
func (a *App) WSAddr() string {
	if a.gw == nil {
		return ""
	}
	return a.gw.Addr()
}

// Engine is the process's moderation engine: logic's verdicts and the
// API's settings, bans and keyword lists (every role builds one).
func (a *App) Engine() *moderation.Engine { return a.engine }

// KV is the store of the process's persisted room settings and keyword
// lists.
func (a *App) KV() presence.KV { return a.kv }

// Close closes the backends of an App that was built but never run (Run
// closes them itself).
func (a *App) Close() { a.closeBackends() }

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
// reconnect and closes them, the pipeline stages finish the records
// published before then (drainPipeline), and stop.
func (a *App) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", a.cfg.HTTPAddr)
	if err != nil {
		a.closeBackends()
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
	if err := a.startGateway(gwDone); err != nil {
		stopStages()
		wg.Wait()
		a.closeBackends()
		return err
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
	close(a.ready)

	var runErr error
	gwRunning := a.gw != nil // a.gw stays set: readyz reads it concurrently
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		a.log.Error("stage failed; shutting down", "err", runErr)
	case runErr = <-gwDone:
		gwRunning = false
	}
	drain := a.cfg.Gateway.DrainTimeout
	a.log.Info("shutting down", "drain_timeout", drain)
	sctx, cancel := context.WithTimeout(context.Background(), drain+5*time.Second)
	defer cancel()
	if gwRunning {
		if err := a.gw.Shutdown(sctx); err != nil {
			a.log.Warn("gateway drain", "err", err)
		}
	}
	if runErr == nil {
		a.drainPipeline(sctx)
	}
	_ = a.http.Shutdown(sctx)
	stopStages()
	wg.Wait()
	a.closeBackends()
	return runErr
}

// Start runs the App on its own goroutine and returns once it serves
// (Ready), or with Run's error if Run ended first. stop shuts it down as
// a cancelled Run does and returns Run's error; later calls return the
// same. For tests and programs that run an App beside other work.
func (a *App) Start() (stop func() error, err error) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	select {
	case <-a.ready:
	case err := <-done:
		cancel()
		if err == nil {
			err = errors.New("app: Run returned before it served")
		}
		return nil, err
	}
	var once sync.Once
	var runErr error
	return func() error {
		once.Do(func() {
			cancel()
			runErr = <-done
		})
		return runErr
	}, nil
}

// startGateway runs the gateway (if this role has one) and waits until it
// listens; an engine that fails to start (the port is taken) is an error.
func (a *App) startGateway(done chan error) error {
	if a.gw == nil {
		return nil
	}
	go func() { done <- a.gw.Run() }()
	select {
	case <-a.gw.Ready():
	case err := <-done:
		return err
	}
	select {
	case <-a.gw.Done(): // Ready because the engine failed
		return <-done
	default:
		return nil
	}
}

// drainPipeline waits, at most until ctx is done, for the stages of this
// process to finish the records published before it was called: logic
// the ingest stream (the sends the gateway forwarded while it drained),
// the history writer and dispatch the accepted stream. A stage has
// finished a partition when its group's committed offset reaches the end
// the partition had when the drain began. Without a bus that reports
// offsets (bus.PartitionReader) there is nothing to wait for.
func (a *App) drainPipeline(ctx context.Context) {
	pr, ok := a.bus.(bus.PartitionReader)
	if !ok {
		return
	}
	type consumer interface{ Consumes() (stream, group string) }
	var cs []consumer
	if a.lg != nil {
		cs = append(cs, a.lg, a.hw)
	}
	if a.dp != nil {
		cs = append(cs, a.dp)
	}
	for _, c := range cs {
		stream, group := c.Consumes()
		if err := waitCommitted(ctx, pr, stream, group); err != nil {
			a.log.Warn("pipeline drain: stopping with records unprocessed", "stream", stream, "group", group, "err", err)
			return
		}
	}
}

// waitCommitted waits until group has committed, on every partition of
// stream, the records it held when waitCommitted was called.
func waitCommitted(ctx context.Context, pr bus.PartitionReader, stream, group string) error {
	n, err := pr.Partitions(ctx, stream)
	if err != nil {
		return err
	}
	ends := make([]int64, n)
	for p := range n {
		o, err := pr.Offsets(ctx, stream, p, group)
		if err != nil {
			return err
		}
		ends[p] = o.End
		if o.End == o.Oldest || o.Committed >= o.End {
			ends[p] = -1 // nothing to wait for
		}
	}
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for p := 0; p < n; {
		if ends[p] < 0 {
			p++
			continue
		}
		o, err := pr.Offsets(ctx, stream, p, group)
		if err != nil {
			return err
		}
		if o.Committed >= ends[p] {
			p++
			continue
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("partition %d: committed %d of %d: %w", p, o.Committed, ends[p], ctx.Err())
		case <-tick.C:
		}
	}
	return nil
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
