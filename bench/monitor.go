package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

// monitor samples the run every second: the timeline, the progress line
// and soak's summary lines.
type monitor struct {
	o        *Options
	res      *Result
	workers  []*workerHandle
	t0       time.Time
	out      io.Writer // nil: quiet
	pub      *publisher
	mu       sync.Mutex
	pids     []int
	phase    string
	timeline []Point
	peakRSS  int64
	lastDel  int64
	lastPub  int64
	lastCPU  float64
	lastHCPU float64
	lastT    time.Time
	window   Hist // latency since the last soak line
}

func newMonitor(o *Options, res *Result, ws []*workerHandle, pids []int, t0 time.Time, out io.Writer) *monitor {
	return &monitor{o: o, res: res, workers: ws, pids: pids, t0: t0, out: out, phase: "start"}
}

func (m *monitor) setPhase(p string) {
	m.mu.Lock()
	m.phase = p
	m.mu.Unlock()
}

func (m *monitor) setPIDs(p []int) {
	m.mu.Lock()
	m.pids = p
	m.mu.Unlock()
}

func (m *monitor) note(s string) {
	m.mu.Lock()
	m.res.Notes = append(m.res.Notes, s)
	m.mu.Unlock()
}

func (m *monitor) points() []Point {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Point(nil), m.timeline...)
}

func (m *monitor) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	m.lastT = time.Now()
	for {
		select {
		case <-ctx.Done():
			m.sample()
			if m.out != nil {
				fmt.Fprintln(m.out)
			}
			return
		case <-t.C:
			m.sample()
		}
	}
}

func (m *monitor) sample() {
	now := time.Now()
	tot := sumReports(m.workers)
	var lat Hist
	for _, h := range m.workers {
		h.mu.Lock()
		lat.Merge(&h.lat)
		h.lat.Reset()
		h.mu.Unlock()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.window.Merge(&lat)
	gw := gwSample(m.pids)
	dt := now.Sub(m.lastT).Seconds()
	if dt <= 0 {
		dt = 1
	}
	var pubN int64
	if m.pub != nil {
		pubN = m.pub.n.Load()
	}
	p := Point{T: now.Sub(m.t0).Seconds(), Phase: m.phase, Open: tot.Open, Failed: tot.Failed, FailedBy: tot.FailedBy, Resumed: tot.Resumed,
		Deliveries: float64(tot.Deliveries-m.lastDel) / dt, Published: float64(pubN-m.lastPub) / dt,
		P50: float64(lat.Quantile(0.5)) / 1e3, P99: float64(lat.Quantile(0.99)) / 1e3, Max: float64(lat.Max()) / 1e3,
		GatewayRSS: gw.RSS, Load: loadAvg()}
	if m.lastCPU > 0 {
		p.GatewayCPU = (gw.CPU - m.lastCPU) / dt
	}
	if m.lastHCPU > 0 {
		p.HarnessCPU = (tot.cpu - m.lastHCPU) / dt
	}
	m.lastDel, m.lastPub, m.lastCPU, m.lastHCPU, m.lastT = tot.Deliveries, pubN, gw.CPU, tot.cpu, now
	m.peakRSS = max(m.peakRSS, gw.RSS)
	m.timeline = append(m.timeline, p)
	if m.out != nil {
		fmt.Fprintf(m.out, "\r\033[K%s %-7s %4.0fs  conns %d/%d  deliv %s/s  p50 %.1fms p99 %.1fms  lost-gaps %d dup %d  gw cpu %.0f%% rss %s  load %.1f",
			m.o.Scenario, m.phase, p.T, tot.Open, m.o.Viewers+m.o.Senders, human(p.Deliveries), p.P50, p.P99,
			tot.Gaps, tot.Dups, p.GatewayCPU*100, humanBytes(gw.RSS), p.Load)
	}
}

// soakLine prints a summary of the last period (always, even when quiet:
// soak runs are long and these lines are their log).
func (m *monitor) soakLine() {
	m.mu.Lock()
	defer m.mu.Unlock()
	tot := sumReports(m.workers)
	fmt.Fprintf(os.Stderr, "\nsoak %s: open %d deliveries %d p50 %.1fms p99 %.1fms max %.1fms gaps %d dups %d reconnects %d gw rss %s\n",
		time.Since(m.t0).Round(time.Second), tot.Open, tot.Deliveries, float64(m.window.Quantile(0.5))/1e3,
		float64(m.window.Quantile(0.99))/1e3, float64(m.window.Max())/1e3, tot.Gaps, tot.Dups, tot.Reconnects,
		humanBytes(m.peakRSS))
	m.window.Reset()
}

func human(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

func humanBytes(v int64) string {
	switch {
	case v >= 1<<30:
		return fmt.Sprintf("%.2fGiB", float64(v)/(1<<30))
	case v >= 1<<20:
		return fmt.Sprintf("%.1fMiB", float64(v)/(1<<20))
	case v >= 1<<10:
		return fmt.Sprintf("%.1fKiB", float64(v)/(1<<10))
	}
	return fmt.Sprintf("%dB", v)
}

// installKeywords puts a block list of n keywords into every room and
// returns one of them for the senders' bad texts.
func installKeywords(ctx context.Context, httpAddr, modToken string, rooms []string, n int) (string, error) {
	rng := rand.New(rand.NewPCG(7, 7))
	kws := make([]string, n)
	for i := range kws {
		var b strings.Builder
		for range 6 + rng.IntN(6) {
			b.WriteByte(byte('a' + rng.IntN(26)))
		}
		kws[i] = b.String()
	}
	body, _ := json.Marshal(map[string]any{"keywords": kws, "action": "block"})
	for _, r := range rooms {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+httpAddr+"/api/rooms/"+r+"/keywords", bytes.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+modToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return "", err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return "", fmt.Errorf("bench: PUT keywords for %s: %s", r, resp.Status)
		}
	}
	return kws[n/2], nil
}
