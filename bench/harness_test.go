package bench

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/app"
	"github.com/danmaku-live/danmaku/dispatch"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// fakeGateway accepts WebSocket upgrades and sends each connection joined,
// an empty history and seqs 1..n in batches; the connection numbered gapAt
// misses seq 5 and the one numbered dupAt gets seq 7 twice.
func fakeGateway(t *testing.T, n uint64, gapAt, dupAt int64) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var conns atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			k := conns.Add(1)
			go func() {
				defer c.Close()
				h, _, err := readUpgrade(c, make([]byte, 4096))
				if err != nil {
					return
				}
				out := ws.AppendAccept(nil, h.Key, "")
				out = ws.AppendFrame(out, ws.OpText, protocol.Encode(protocol.Joined{Op: protocol.OpJoined, Room: "r", Seq: 0, Online: 1}))
				out = ws.AppendFrame(out, ws.OpText, protocol.EncodeHistory("r", nil, true))
				for s := uint64(1); s <= n; s++ {
					if s == 5 && k == gapAt {
						continue
					}
					msg := protocol.Message{Seq: s, UID: "u", Name: "n", Text: benchText(time.Now().UnixNano(), s)}
					out = ws.AppendFrame(out, ws.OpText, protocol.EncodeBatch("r", []protocol.Message{msg}))
					if s == 7 && k == dupAt {
						out = ws.AppendFrame(out, ws.OpText, protocol.EncodeBatch("r", []protocol.Message{msg}))
					}
				}
				if _, err := c.Write(out); err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, c)
			}()
		}
	}()
	return ln.Addr().String()
}

// TestWorkerCatchesGapAndDuplicate runs a worker against a server that
// skips one seq for one viewer and repeats one for another.
func TestWorkerCatchesGapAndDuplicate(t *testing.T) {
	for _, impl := range []string{ImplEpoll, ImplGoroutine} {
		t.Run(impl, func(t *testing.T) { testWorkerCatchesGapAndDuplicate(t, impl) })
	}
}

func testWorkerCatchesGapAndDuplicate(t *testing.T, impl string) {
	const viewers, n = 4, 10
	addr := fakeGateway(t, n, 2, 3)
	cmds := make(chan Command, 1)
	var final Report
	var lat Hist // reports carry latency deltas since the previous one
	done := make(chan error, 1)
	go func() {
		done <- RunWorker(context.Background(), WorkerSpec{Gateways: []string{addr}, Viewers: []RoomCount{{Room: "r", Count: viewers}},
			Tick: 50 * time.Millisecond, ViewerImpl: impl}, cmds, func(r Report) {
			lat.Merge(HistFrom(r.Lat))
			if r.Type == "final" {
				final = r
			}
		})
	}()
	cmds <- Command{Cmd: "finish", Final: map[string]uint64{"r": n}, Grace: 3 * time.Second}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if final.Established != viewers {
		t.Fatalf("established %d, want %d", final.Established, viewers)
	}
	if final.Deliveries != viewers*n-1 || final.Lost != 1 || final.Dups != 1 || final.Gaps != 1 {
		t.Fatalf("deliveries %d lost %d dups %d gaps %d, want %d 1 1 1", final.Deliveries, final.Lost, final.Dups, final.Gaps, viewers*n-1)
	}
	if lat.Count() != uint64(viewers*n-1) {
		t.Fatalf("latency samples %d, want %d", lat.Count(), viewers*n-1)
	}
}

// startStack runs gateway, logic, dispatch and the HTTP API in this process
// on the in-memory backends (the App that `danmaku all` runs) and returns
// the WebSocket and HTTP addresses.
func startStack(t *testing.T, secret string, mods ...func(*dispatch.Config)) (wsAddr, httpAddr string) {
	t.Helper()
	cfg := app.Config{Role: app.RoleAll, HTTPAddr: "127.0.0.1:0", JWTSecret: secret,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	wsLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wsLn.Close()
	cfg.Gateway.Addr, cfg.Gateway.ID, cfg.Gateway.MaxConnsPerIP, cfg.Gateway.DrainTimeout = wsLn.Addr().String(), "gw-test", -1, time.Second
	for _, m := range mods {
		m(&cfg.Dispatch)
	}
	a, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := a.Start()
	if err != nil {
		t.Fatalf("app: %v", err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("app: %v", err)
		}
	})
	return a.WSAddr(), a.HTTPAddr()
}

// TestRunCountsDeliveries runs a small fanout against the real pipeline:
// every viewer must get every published message (plus the final marker)
// exactly once.
func TestRunCountsDeliveries(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the pipeline")
	}
	for _, impl := range []string{ImplEpoll, ImplGoroutine} {
		t.Run(impl, func(t *testing.T) { testRunCountsDeliveries(t, impl) })
	}
}

func testRunCountsDeliveries(t *testing.T, impl string) {
	const secret = "bench-test-secret-0123456789"
	wsAddr, httpAddr := startStack(t, secret)
	o := &Options{ViewerImpl: impl, Scenario: "fanout", Viewers: 40, Rooms: 1, Rate: 40, Duration: 2 * time.Second, Warmup: 200 * time.Millisecond,
		Grace: 5 * time.Second, ConnectTimeout: 20 * time.Second, WS: wsAddr, HTTP: httpAddr, Secret: secret,
		InProcess: true, Workers: 2, Out: t.TempDir(), Name: "test", Quiet: true}
	o.Defaults()
	if err := o.Validate(); err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), o, nil)
	if err != nil {
		t.Fatal(err)
	}
	if res.Connected != 40 || res.Failed != 0 {
		t.Fatalf("connected %d failed %d; notes %v", res.Connected, res.Failed, res.Notes)
	}
	if res.Published < 40 || res.PublishErrors != 0 {
		t.Fatalf("published %d errors %d", res.Published, res.PublishErrors)
	}
	// Every viewer gets every published message and the final marker.
	if want := 40 * (res.Published + 1); res.Deliveries != want || res.Lost != 0 || res.Dups != 0 {
		t.Fatalf("deliveries %d, want %d; lost %d dups %d", res.Deliveries, want, res.Lost, res.Dups)
	}
	if res.Deliveries != res.Expected {
		t.Fatalf("deliveries %d expected %d lost %d dups %d", res.Deliveries, res.Expected, res.Lost, res.Dups)
	}
	if res.Latency.Count != uint64(res.Deliveries) || res.Latency.P50 <= 0 {
		t.Fatalf("latency %+v for %d deliveries", res.Latency, res.Deliveries)
	}
	// The publish API answers each message after logic's verdict, before
	// its viewers can have it: its round trip is counted per message and
	// is below the send → viewer latency's maximum.
	if p := res.PublishLat; p == nil || p.Count != uint64(res.Published) || p.P50 <= 0 || p.P50 > res.Latency.Max {
		t.Fatalf("publish latency %+v for %d published (send → viewer max %.1f ms)", p, res.Published, res.Latency.Max)
	}
	// The gateway reports how old batches were when it read them.
	if g := res.Gateway; g.DispatchAgeP99Ms <= 0 || g.DispatchAgeP50Ms > g.DispatchAgeP99Ms {
		t.Fatalf("dispatch age p50 %.1f p99 %.1f ms", g.DispatchAgeP50Ms, g.DispatchAgeP99Ms)
	}
	if err := res.WriteHTML(o.Out + "/r.html"); err != nil {
		t.Fatal(err)
	}
	if err := res.WriteJSON(o.Out + "/r.json"); err != nil {
		t.Fatal(err)
	}
	back, err := ReadResult(o.Out + "/r.json")
	if err != nil {
		t.Fatal(err)
	}
	worse := *back
	worse.Latency.P99 = back.Latency.P99*2 + 10
	worse.Lost = 3
	var regressed []string
	for _, d := range Compare(back, &worse, 0.1) {
		if d.Regressed {
			regressed = append(regressed, d.Name)
		}
	}
	if len(regressed) != 2 || regressed[0] != "latency_p99_ms" || regressed[1] != "lost" {
		t.Fatalf("regressed %v, want [latency_p99_ms lost]", regressed)
	}
}

func TestScenarioFile(t *testing.T) {
	dir := t.TempDir()
	files := map[string]string{
		"s.yaml": "viewers: 19000\nrate: 100\nduration: 45s\ngateways: 2\n",
		"s.json": `{"viewers": 19000, "rate": 100, "duration": "45s", "gateways": 2}`,
		"n.json": `{"viewers": 19000, "rate": 100, "duration": 45000000000, "gateways": 2}`,
	}
	for name, body := range files {
		t.Run(name, func(t *testing.T) {
			path := dir + "/" + name
			if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
			o, err := parseOptions("fanout", []string{"--config", path, "--rate", "50", "--brokers", "x:1"}, Options{}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if o.Viewers != 19000 || o.Rate != 50 || o.Duration != 45*time.Second || o.Gateways != 2 || o.Workers != 2 {
				t.Fatalf("viewers %d rate %v duration %v gateways %d workers %d", o.Viewers, o.Rate, o.Duration, o.Gateways, o.Workers)
			}
		})
	}
}

// TestRunDeflateChat runs a small fanout of chat-corpus texts with the
// viewers offering permessage-deflate and without: every message arrives
// either way, and the compressed run puts fewer bytes on the wire per
// delivery. Dispatch merges 40 ms of messages per batch, as it does under
// load (a lone message compressed on its own does not shrink, and the
// gateway then sends it plain).
func TestRunDeflateChat(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the pipeline")
	}
	const secret = "bench-test-secret-0123456789"
	wsAddr, httpAddr := startStack(t, secret, func(c *dispatch.Config) { c.MinTick, c.MaxTick = 40*time.Millisecond, 40*time.Millisecond })
	per := map[bool]float64{}
	for _, deflate := range []bool{false, true} {
		o := &Options{Scenario: "fanout", Viewers: 20, Rooms: 1, Rate: 100, Duration: 1500 * time.Millisecond, Warmup: 200 * time.Millisecond,
			Grace: 5 * time.Second, ConnectTimeout: 20 * time.Second, WS: wsAddr, HTTP: httpAddr, Secret: secret,
			InProcess: true, Workers: 1, Out: t.TempDir(), Name: "test", Quiet: true, Deflate: deflate, Corpus: CorpusChat, AsViewers: true}
		o.Defaults()
		if err := o.Validate(); err != nil {
			t.Fatal(err)
		}
		res, err := Run(context.Background(), o, nil)
		if err != nil {
			t.Fatal(err)
		}
		if want := 20 * (res.Published + 1); res.Published < 100 || res.PublishErrors != 0 || res.Deliveries != want || res.Lost != 0 {
			t.Fatalf("deflate=%v: published %d (errors %d), deliveries %d want %d, lost %d; notes %v",
				deflate, res.Published, res.PublishErrors, res.Deliveries, want, res.Lost, res.Notes)
		}
		per[deflate] = res.BytesPerDelivery
	}
	t.Logf("bytes per delivery: plain %.1f, deflate %.1f", per[false], per[true])
	if per[true] <= 0 || per[true] >= per[false] {
		t.Fatalf("bytes per delivery: plain %.1f, deflate %.1f", per[false], per[true])
	}
}

// TestSendersStopWithTraffic: the quiet command (the end of the traffic
// phase) stops a worker's senders, so nothing is sent while the viewers
// catch up with the final marker and the run's send rate is the one asked
// for.
func TestSendersStopWithTraffic(t *testing.T) {
	const secret = "bench-test-secret-0123456789"
	wsAddr, _ := startStack(t, secret)
	spec := WorkerSpec{ID: 0, Gateways: []string{wsAddr}, Secret: secret, SendRate: 50, ConnectRate: 1000, Concurrency: 10,
		Senders: []RoomCount{{Room: "quiet-room", Count: 4}}, ViewerImpl: ImplEpoll}
	cmds := make(chan Command, 4)
	var mu sync.Mutex
	var last Report
	done := make(chan error, 1)
	go func() {
		done <- RunWorker(context.Background(), spec, cmds, func(r Report) {
			mu.Lock()
			last = r
			mu.Unlock()
		})
	}()
	sent := func() int64 {
		mu.Lock()
		defer mu.Unlock()
		return last.Sent
	}
	cmds <- Command{Cmd: "send"}
	for deadline := time.Now().Add(20 * time.Second); sent() < 20; time.Sleep(50 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the senders sent %d in 20 s", sent())
		}
	}
	cmds <- Command{Cmd: "quiet"}
	time.Sleep(1500 * time.Millisecond) // a report per second carries the count
	atQuiet := sent()
	time.Sleep(1500 * time.Millisecond) // 4 senders at 50/s would send 300 more
	if got := sent(); got != atQuiet {
		t.Fatalf("sent %d after quiet, %d more", got, got-atQuiet)
	}
	cmds <- Command{Cmd: "finish", Grace: time.Second}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := sent(); got != atQuiet {
		t.Fatalf("final report: sent %d, %d at quiet", got, atQuiet)
	}
}
