package main

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/danmaku-live/danmaku/app"
	"github.com/danmaku-live/danmaku/gateway"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/client"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// quietLog discards logs.
var quietLog = slog.New(slog.DiscardHandler)

// pipeline is logic, the history writer, dispatch and one gateway in
// this process on b, with the gateway configured by mod: the App that
// `danmaku all` runs.
type pipeline struct {
	ws  string
	reg *prometheus.Registry
}

func startPipeline(t *testing.T, b bus.Bus, mod func(*gateway.Config)) *pipeline {
	t.Helper()
	cfg := app.Config{Role: app.RoleAll, HTTPAddr: "127.0.0.1:0", JWTSecret: testSecret, Logger: quietLog,
		Backends: app.Backends{Given: b}}
	cfg.Gateway.Addr, cfg.Gateway.DrainTimeout = freeAddr(t), time.Second
	if mod != nil {
		mod(&cfg.Gateway)
	}
	a, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := a.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = stop() })
	return &pipeline{ws: a.WSAddr(), reg: a.Registry()}
}

// scrape reads a registry (or /metrics at url) into name{labels} → value.
func scrape(t *testing.T, reg *prometheus.Registry, url string) map[string]float64 {
	t.Helper()
	out := map[string]float64{}
	add := func(name string, labels []string, v float64) {
		key := name
		if len(labels) > 0 {
			key += "{" + strings.Join(labels, ",") + "}"
		}
		out[key] += v
		out[name] += v
	}
	if reg != nil {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				var labels []string
				for _, l := range m.GetLabel() {
					labels = append(labels, l.GetName()+"="+l.GetValue())
				}
				v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
				add(mf.GetName(), labels, v)
			}
		}
		return out
	}
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	// The text format: name{a="b",c="d"} value
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		sp := strings.LastIndexByte(line, ' ')
		if sp < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[sp+1:], 64)
		if err != nil {
			continue
		}
		name, labels := line[:sp], []string(nil)
		if i := strings.IndexByte(name, '{'); i >= 0 {
			for _, l := range strings.Split(strings.TrimSuffix(name[i+1:], "}"), ",") {
				if l != "" {
					labels = append(labels, strings.ReplaceAll(l, `"`, ""))
				}
			}
			name = name[:i]
		}
		add(name, labels, v)
	}
	return out
}

// latencyProbe is a sender and a viewer in one room: it posts n messages
// every interval and returns each message's send → receive latency.
type latencyProbe struct {
	room   string
	sender *client.Client
	viewer *client.Client
	mu     sync.Mutex
	sent   map[string]time.Time
	lat    []time.Duration
}

func newLatencyProbe(t *testing.T, ctx context.Context, wsAddr, room string) *latencyProbe {
	t.Helper()
	lp := &latencyProbe{room: room, sent: map[string]time.Time{}}
	var err error
	lp.viewer, err = client.Dial(ctx, client.Config{URL: "ws://" + wsAddr + "/ws", OnMessage: func(_ string, m protocol.Message) {
		now := time.Now()
		lp.mu.Lock()
		if at, ok := lp.sent[m.Text]; ok {
			lp.lat = append(lp.lat, now.Sub(at))
			delete(lp.sent, m.Text)
		}
		lp.mu.Unlock()
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lp.viewer.Close() })
	if err := lp.viewer.Join(ctx, room, 0); err != nil {
		t.Fatal(err)
	}
	lp.sender, err = client.Dial(ctx, client.Config{URL: "ws://" + wsAddr + "/ws", Token: token(t, "probe-"+room, "mod", "*")})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lp.sender.Close() })
	if err := lp.sender.Join(ctx, room, 0); err != nil {
		t.Fatal(err)
	}
	return lp
}

// run posts n messages (padded to pad runes) every interval and returns
// their latencies; it fails the test when a message is not acknowledged
// or not delivered within 10 s.
func (lp *latencyProbe) run(t *testing.T, ctx context.Context, n int, interval time.Duration, pad int) []time.Duration {
	t.Helper()
	lp.mu.Lock()
	lp.lat = nil
	lp.mu.Unlock()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := range n {
		<-tick.C
		text := fmt.Sprintf("probe-%d-%d-", time.Now().UnixNano(), i)
		text += strings.Repeat("弹", max(0, pad-len(text))) // 3 bytes each: more bytes within the rune limit
		lp.mu.Lock()
		lp.sent[text] = time.Now()
		lp.mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			f, err := lp.sender.Send(ctx, lp.room, text)
			if err != nil || f.Op != protocol.OpAck {
				if failed.Add(1) == 1 {
					t.Logf("probe send: %+v %v", f, err)
				}
			}
		}()
	}
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d probe messages not acknowledged", failed.Load(), n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		lp.mu.Lock()
		got := len(lp.lat)
		lat := slices.Clone(lp.lat)
		lp.mu.Unlock()
		if got >= n {
			return lat
		}
		if time.Now().After(deadline) {
			t.Fatalf("viewer got %d of %d probe messages", got, n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// latencyBound is the highest p99 accepted under an attack for a viewer
// whose p99 was base without it: 4× or base + 300 ms in the long suite
// (no race detector). Under make test (-race, a shared 2-core machine,
// other packages' tests in parallel) it only catches a viewer starved by
// the attack: 5× or base + 3 s, below the 5 s handshake timeout the
// floods ride on. A viewer p99 of 1.76 s during the floods was measured
// once there with no starvation (the fault schedule's processes still
// winding down); the figure itself belongs to the bench, not to this
// bound.
func latencyBound(base time.Duration) time.Duration {
	if chaosLong() {
		return max(4*base, base+300*time.Millisecond)
	}
	return max(5*base, base+3*time.Second)
}

// pct returns the p-th percentile (0-100) of ds.
func pct(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s)-1) * p / 100)
	return s[i]
}

// TestOverloadSlowConsumers: 50 viewers that join 16 busy rooms and never
// read are closed as slow consumers (4000) while a normal viewer's send →
// receive p99 stays close to what it is under the same traffic without
// them.
func TestOverloadSlowConsumers(t *testing.T) {
	p := startPipeline(t, bus.NewMemory(bus.MemoryConfig{}), func(c *gateway.Config) {
		c.SoftOutbound, c.HardOutbound, c.SlowTimeout = 32<<10, 128<<10, 2*time.Second
		c.MaxConnsPerIP = -1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	lp := newLatencyProbe(t, ctx, p.ws, "slow-0")
	rooms := make([]string, 16)
	for i := range rooms {
		rooms[i] = "slow-" + strconv.Itoa(i)
	}
	// Background traffic in every room, the same with and without the
	// non-reading viewers: 4 senders, 100-rune messages.
	stop := make(chan struct{})
	var fwg sync.WaitGroup
	var flooded atomic.Int64
	for s := range 4 {
		c, err := client.Dial(ctx, client.Config{URL: "ws://" + p.ws + "/ws", Token: token(t, "bg"+strconv.Itoa(s), "mod", "*")})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		for _, r := range rooms {
			if err := c.Join(ctx, r, 0); err != nil {
				t.Fatal(err)
			}
		}
		fwg.Add(1)
		go func() {
			defer fwg.Done()
			pad := strings.Repeat("弹", 90)
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Send(ctx, rooms[(i+s)%len(rooms)], fmt.Sprintf("bg%d-%d-%s", s, i, pad)); err != nil {
					return
				}
				flooded.Add(1)
				time.Sleep(2 * time.Millisecond)
			}
		}()
	}
	defer func() { close(stop); fwg.Wait() }()
	const n, interval, pad = 150, 10 * time.Millisecond, 100
	base := lp.run(t, ctx, n, interval, pad)

	for range 50 {
		c, err := net.Dial("tcp", p.ws)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.(*net.TCPConn).SetReadBuffer(4 << 10)
		t.Cleanup(func() { c.Close() })
		req := ws.AppendClientHandshake(nil, "x", "/ws?room=slow-0", ws.NewKey(), "")
		for _, r := range rooms[1:] {
			req = ws.AppendClientFrame(req, ws.OpText, []byte(`{"op":"join","room":"`+r+`"}`), ws.NewMask())
		}
		if _, err := c.Write(req); err != nil {
			t.Fatal(err)
		}
		// and never read
	}
	var loaded, first []time.Duration
	closedAt := time.Duration(0)
	start := time.Now()
	// The kernel takes ~2 MiB per loopback connection before the gateway's
	// backlog grows, so cutting all 50 off takes ~30 s of this traffic:
	// the long suite waits for it, the short one measures 8 s of latency.
	deadline := start.Add(8 * time.Second)
	if chaosLong() {
		deadline = start.Add(60 * time.Second)
	}
	// The first round runs while 50 kernel buffers fill (a one-off cost
	// of accepting them); the bound is on the rounds after it.
	first = lp.run(t, ctx, n, interval, pad)
	for {
		loaded = append(loaded, lp.run(t, ctx, n, interval, pad)...)
		if scrape(t, p.reg, "")["danmaku_gateway_closes_total{reason=slow_consumer}"] >= 50 && len(loaded) >= 2*n {
			closedAt = time.Since(start)
			break
		}
		if time.Now().After(deadline) {
			break
		}
	}
	m := scrape(t, p.reg, "")
	closed := m["danmaku_gateway_closes_total{reason=slow_consumer}"]
	b99, l99 := pct(base, 99), pct(loaded, 99)
	t.Logf("normal viewer p50/p99: %v/%v without, %v/%v in the first %d probes after 50 non-reading viewers joined, %v/%v after that (%d probes); "+
		"%v non-readers closed 4000 within %v; %d background messages, %v batches dropped past the soft cap",
		pct(base, 50).Round(time.Microsecond), b99.Round(time.Microsecond), pct(first, 50).Round(time.Microsecond),
		pct(first, 99).Round(time.Microsecond), n, pct(loaded, 50).Round(time.Microsecond),
		l99.Round(time.Microsecond), len(loaded), closed, closedAt.Round(100*time.Millisecond), flooded.Load(),
		m["danmaku_gateway_dropped_batches_total"])
	if chaosLong() && closed < 50 {
		t.Errorf("%v of 50 non-reading viewers closed as slow consumers", closed)
	}
	if l99 > latencyBound(b99) {
		t.Errorf("p99 %v with non-reading viewers, %v without", l99, b99)
	}
}

// stallBus wraps a bus and makes publishes to the ingest stream block
// while stalled.
type stallBus struct {
	*bus.Memory
	stalled atomic.Bool
}

func (s *stallBus) wait(ctx context.Context) error {
	for s.stalled.Load() {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
	return nil
}

type stallPub struct {
	bus.Publisher
	b *stallBus
}

func (s *stallBus) Publisher(stream string) bus.Publisher {
	p := s.Memory.Publisher(stream)
	if stream != bus.StreamIngest {
		return p
	}
	return stallPub{p, s}
}

func (p stallPub) Publish(ctx context.Context, recs ...bus.Record) error {
	if err := p.b.wait(ctx); err != nil {
		return err
	}
	return p.Publisher.Publish(ctx, recs...)
}

// TestOverloadIngestSaturated: with the bus stalled and a tiny ingest
// queue, every send is answered — "unavailable" with retry_after_ms, never
// silence — and once the bus is back the client's retries (same id) are
// acknowledged, each exactly once.
func TestOverloadIngestSaturated(t *testing.T) {
	sb := &stallBus{Memory: bus.NewMemory(bus.MemoryConfig{})}
	p := startPipeline(t, sb, func(c *gateway.Config) { c.IngestQueue = 4 })
	sb.stalled.Store(true)
	r := wstest.Dial(t, p.ws)
	if st := r.Upgrade("/ws?token="+token(t, "flood", "mod", "*")+"&room=sat", ""); st != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %d", st)
	}
	const n = 60
	for i := range n {
		if err := r.Send(ws.OpText, protocol.Encode(protocol.ClientFrame{Op: protocol.OpSend, Room: "sat",
			ID: "m" + strconv.Itoa(i), Text: "flood " + strconv.Itoa(i)})); err != nil {
			t.Fatal(err)
		}
	}
	answered := map[string]protocol.ServerFrame{}
	unavailable := 0
	deadline := time.Now().Add(15 * time.Second)
	for len(answered) < n && time.Now().Before(deadline) {
		f, err := r.NextFrame(time.Until(deadline))
		if err != nil {
			t.Fatalf("after %d answers: %v", len(answered), err)
		}
		if f.Op != protocol.OpAck && f.Op != protocol.OpReject {
			continue
		}
		if _, dup := answered[f.ID]; dup {
			t.Errorf("send %s answered twice", f.ID)
		}
		answered[f.ID] = f
		if f.Op == protocol.OpReject {
			if f.Code != protocol.CodeUnavailable || f.RetryAfterMs <= 0 {
				t.Errorf("reject %+v, want unavailable with retry_after_ms", f)
			}
			unavailable++
		}
	}
	t.Logf("stalled bus, ingest queue 4: %d sends, %d answered, %d unavailable with retry_after_ms, %d acked",
		n, len(answered), unavailable, len(answered)-unavailable)
	if len(answered) != n {
		t.Fatalf("%d of %d sends answered: the rest were lost silently", len(answered), n)
	}
	if unavailable < n-8 {
		t.Errorf("only %d of %d sends unavailable while the bus was stalled", unavailable, n)
	}
	// The bus comes back: the client retries with the same ids.
	sb.stalled.Store(false)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var rec recorder
	c, err := client.Dial(ctx, client.Config{URL: "ws://" + p.ws + "/ws", Token: token(t, "flood", "mod", "*"), OnMessage: rec.add})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Join(ctx, "sat", 0); err != nil {
		t.Fatal(err)
	}
	acked := map[uint64]string{}
	for i := range n {
		f, err := c.SendID(ctx, "sat", "m"+strconv.Itoa(i), "flood "+strconv.Itoa(i))
		if err != nil || f.Op != protocol.OpAck || f.Seq == 0 {
			t.Fatalf("retry %d: %+v %v", i, f, err)
		}
		acked[f.Seq] = "flood " + strconv.Itoa(i)
	}
	if len(acked) != n {
		t.Fatalf("%d distinct seqs for %d messages", len(acked), n)
	}
	deadline = time.Now().Add(10 * time.Second)
	for len(rec.get("sat")) < n && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	checkStream(t, "viewer of sat", rec.get("sat"), acked)
}
