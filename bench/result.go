package bench

import (
	"encoding/json"
	"os"
	"runtime"
	"strings"
)

// Quantiles are latency figures in milliseconds.
type Quantiles struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p999_ms"`
	Max   float64 `json:"max_ms"`
}

func quantiles(h *Hist) Quantiles {
	ms := func(v uint64) float64 { return float64(v) / 1e3 }
	return Quantiles{Count: h.Count(), Mean: h.Mean() / 1e3, P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)),
		P99: ms(h.Quantile(0.99)), P999: ms(h.Quantile(0.999)), Max: ms(h.Max())}
}

// Point is one second of a run's timeline.
type Point struct {
	// T is seconds since the start of the run.
	T      float64 `json:"t"`
	Phase  string  `json:"phase"`
	Open   int64   `json:"open"`
	Failed int64   `json:"failed"` // dial/handshake failures so far
	// FailedBy splits Failed by kind: refused, timeout, closed, http_NNN, error.
	FailedBy   map[string]int64 `json:"failed_by,omitempty"`
	Resumed    int64            `json:"resumed"` // re-joins that got their history so far
	Deliveries float64          `json:"deliveries_per_s"`
	Published  float64          `json:"published_per_s"`
	P50        float64          `json:"p50_ms"`
	P99        float64          `json:"p99_ms"`
	Max        float64          `json:"max_ms"`
	GatewayCPU float64          `json:"gateway_cpu"` // cores busy, summed over gateways
	GatewayRSS int64            `json:"gateway_rss"`
	HarnessCPU float64          `json:"harness_cpu"`
	Load       float64          `json:"load1"`
}

// GatewayCost is what the gateway processes used.
type GatewayCost struct {
	PIDs []int `json:"pids"`
	// RSSBefore is the summed RSS before the viewers connected; RSSConnected
	// after they all connected and settled; RSSEnd at the end.
	RSSBefore    int64 `json:"rss_before"`
	RSSConnected int64 `json:"rss_connected"`
	RSSPeak      int64 `json:"rss_peak"`
	RSSEnd       int64 `json:"rss_end"`
	// BytesPerConn is (RSSConnected - RSSBefore) / connections.
	BytesPerConn float64 `json:"bytes_per_conn"`
	// CPUTraffic is CPU seconds spent from the start of traffic to the end
	// of the deliveries.
	CPUTraffic float64 `json:"cpu_traffic_s"`
	// CPUConnect is CPU seconds spent during the connect phase.
	CPUConnect float64 `json:"cpu_connect_s"`
	// DeliveriesPerCPUSecond is deliveries during traffic / CPUTraffic.
	DeliveriesPerCPUSecond float64 `json:"deliveries_per_cpu_s"`
	// HandshakesPerCPUSecond is connections / CPUConnect.
	HandshakesPerCPUSecond float64 `json:"handshakes_per_cpu_s"`
	// IncludesPipeline is set when the gateway process also runs logic and
	// dispatch (danmaku all): its CPU is not the gateway's alone.
	IncludesPipeline bool `json:"includes_pipeline"`
	// DispatchBytes and DispatchRecords are, per started gateway, the key
	// and value bytes and the records it read from the dispatch stream
	// over the run (its danmaku_gateway_dispatch_* counters at the end;
	// -1 when unreadable).
	DispatchBytes   []float64 `json:"dispatch_bytes,omitempty"`
	DispatchRecords []float64 `json:"dispatch_records,omitempty"`
	// DispatchPublished is the records dispatch published over the run
	// (danmaku_dispatch_batches_total; 0 without a dispatch process).
	DispatchPublished float64 `json:"dispatch_published,omitempty"`
	// Writes and WriteBytes are the gateways' writes of the rooms'
	// streams to viewers over the run and their bytes
	// (danmaku_gateway_stream_writes_total, _write_bytes_total, summed):
	// a write holds one or more frames, so the per-write costs of the
	// model (bench model) read these, not the harness's frames.
	Writes     float64 `json:"writes,omitempty"`
	WriteBytes float64 `json:"write_bytes,omitempty"`
	// PassSeconds is the wall time the gateways' event loops spent in
	// write passes over the run, summed over the loops
	// (danmaku_gateway_write_pass_seconds_total): against the writes'
	// CPU, the share of a core a pass got (bench model --against).
	PassSeconds float64 `json:"pass_s,omitempty"`
	// LoopDelayP50Ms and LoopDelayP99Ms are quantiles of the gateways'
	// write passes' delay over the run: the longest wait of a batch of a
	// pass on its event loop, queued to written to every viewer there
	// (danmaku_gateway_loop_delay_seconds, merged over the gateways and
	// interpolated within its buckets); 0 when it could not be read.
	LoopDelayP50Ms float64 `json:"loop_delay_p50_ms,omitempty"`
	LoopDelayP99Ms float64 `json:"loop_delay_p99_ms,omitempty"`
	// LoopDelayPastTop is set when p99 (perhaps p50 too) is past the
	// histogram's top bucket: it is that bound, the true delay longer.
	LoopDelayPastTop bool `json:"loop_delay_past_top,omitempty"`
	// DispatchAgeP50Ms and DispatchAgeP99Ms are quantiles, over the
	// batches the gateways read for rooms they serve, of the batch's
	// oldest message's age at the read: from logic's acceptance to the
	// gateway (danmaku_gateway_dispatch_age_seconds, merged, interpolated).
	DispatchAgeP50Ms float64 `json:"dispatch_age_p50_ms,omitempty"`
	DispatchAgeP99Ms float64 `json:"dispatch_age_p99_ms,omitempty"`
}

// HarnessCost is what the harness's own workers used.
type HarnessCost struct {
	Workers      int     `json:"workers"`
	CPU          float64 `json:"cpu_s"`
	RSS          int64   `json:"rss"`
	BytesPerConn float64 `json:"bytes_per_conn"`
	// CPUPerMillionDeliveries is worker CPU seconds per 1e6 deliveries.
	CPUPerMillionDeliveries float64 `json:"cpu_per_million_deliveries"`
}

// StormResult describes the reconnect storm of a storm run.
type StormResult struct {
	// Dropped is how many viewers were connected when they were dropped.
	Dropped int64 `json:"dropped"`
	// Resumed is how many re-joined and got their history.
	Resumed int64 `json:"resumed"`
	// AllResumedAfter is seconds from the drop until every viewer resumed
	// (-1: not all did within the run).
	AllResumedAfter float64 `json:"all_resumed_after_s"`
	// Incomplete counts history frames with complete:false after a resume.
	Incomplete int64 `json:"incomplete_histories"`
	Restart    bool  `json:"restart"`
}

// SendResult describes the senders of a send run.
type SendResult struct {
	Sent    int64            `json:"sent"`
	Acks    int64            `json:"acks"`
	AcksPS  float64          `json:"acks_per_s"`
	Rejects map[string]int64 `json:"rejects"`
	AckLat  Quantiles        `json:"ack_latency"`
}

// Result is the outcome of one run: the JSON file and the input of the
// HTML report and of compare.
type Result struct {
	Name     string     `json:"name"`
	Scenario string     `json:"scenario"`
	Command  string     `json:"command"`
	Options  Options    `json:"options"`
	Started  string     `json:"started"`
	Machine  Machine    `json:"machine"`
	Load     [2]float64 `json:"load1_start_end"`

	Viewers   int   `json:"viewers"`
	Senders   int   `json:"senders"`
	Connected int64 `json:"connected"`
	Failed    int64 `json:"connect_failures"`
	// FailedBy splits Failed by kind (see Point.FailedBy); the whole run.
	FailedBy    map[string]int64 `json:"connect_failures_by,omitempty"`
	ConnectSecs float64          `json:"connect_s"`
	ConnectRate float64          `json:"connect_per_s"`
	ConnectLat  Quantiles        `json:"connect_latency"`

	Published     int64 `json:"published"`
	PublishErrors int64 `json:"publish_errors"`
	// PublishLat is the publish API's round trip per accepted message
	// (POST → logic's verdict, which it waits for): the pipeline's accept
	// half, beside the send → viewer latency.
	PublishLat   *Quantiles `json:"publish_latency,omitempty"`
	TrafficSecs  float64    `json:"traffic_s"`
	Deliveries   int64      `json:"deliveries"`
	Expected     int64      `json:"expected"`
	DeliveriesPS float64    `json:"deliveries_per_s"`
	// Lost counts seqs up to each room's final seq a viewer never got;
	// Gaps is the part of it that was skipped (a later seq arrived) rather
	// than still undelivered at the end of the grace period.
	Lost   int64 `json:"lost"`
	Gaps   int64 `json:"gaps"`
	Frames int64 `json:"frames"`
	Bytes  int64 `json:"bytes"`
	// MsgsPerFrame is deliveries / frames: how well the gateway batches.
	MsgsPerFrame float64 `json:"msgs_per_frame"`
	Dups         int64   `json:"dups"`
	// Reconnects counts viewer reconnects: connections the server closed
	// (a 4000, a drain) or that failed, and storm drops.
	Reconnects int64 `json:"reconnects"`
	// Marked counts seqs viewers were shown as left out on purpose (a
	// thinned or shed batch's from/to marks) rather than delivered;
	// ShedFraction is Marked / (Deliveries + Marked), and ShedByRoom the
	// same per room (rooms with anything marked).
	Marked       int64              `json:"marked"`
	ShedFraction float64            `json:"shed_fraction"`
	ShedByRoom   map[string]float64 `json:"shed_by_room,omitempty"`
	// BytesPerDelivery is Bytes / Deliveries: the frame bytes on the wire
	// (compressed when permessage-deflate was negotiated) per message
	// delivered.
	BytesPerDelivery float64   `json:"bytes_per_delivery"`
	Latency          Quantiles `json:"latency"`
	LatencyHist      HistData  `json:"latency_hist"`

	Gateway GatewayCost `json:"gateway"`
	Harness HarnessCost `json:"harness"`
	// PipelineCPU is the CPU seconds the logic and dispatch processes the
	// harness started (--gateways K) spent from the start of traffic to
	// the end of the deliveries, by role; empty otherwise.
	PipelineCPU map[string]float64 `json:"pipeline_cpu_s,omitempty"`
	// Runnable is, with --sample-runnable, the threads running or waiting
	// for a CPU over the traffic phase, averaged over samples 100 ms
	// apart: "host" the machine's (procs_running, every process, the
	// sampling too), "gateway", "harness" and "pipeline" (logic and
	// dispatch, with --gateways K) each summed over its processes.
	Runnable map[string]float64 `json:"runnable,omitempty"`
	// Kernel is what the host's TCP stack counted during the run: memory
	// pressure, drops and retransmit timeouts (bench/kernel.go).
	Kernel   *KernelTCP   `json:"kernel_tcp,omitempty"`
	Storm    *StormResult `json:"storm,omitempty"`
	Send     *SendResult  `json:"send,omitempty"`
	Timeline []Point      `json:"timeline"`
	Notes    []string     `json:"notes,omitempty"`
}

// Machine describes where a run happened.
type Machine struct {
	CPU    string  `json:"cpu"`
	Cores  int     `json:"cores"`
	MemGB  float64 `json:"mem_gib"`
	OS     string  `json:"os"`
	Go     string  `json:"go"`
	NoFile string  `json:"nofile"`
}

func machine() Machine {
	m := Machine{Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "model name"); ok {
				m.CPU = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb float64
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "MemTotal:"); ok {
				_, _ = fmtSscan(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), &kb)
			}
		}
		m.MemGB = kb / (1 << 20)
	}
	if b, err := os.ReadFile("/etc/os-release"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if v, ok := strings.CutPrefix(l, "PRETTY_NAME="); ok {
				m.OS = strings.Trim(v, `"`)
			}
		}
	}
	if b, err := os.ReadFile("/proc/self/limits"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if strings.HasPrefix(l, "Max open files") {
				f := strings.Fields(l)
				if len(f) >= 5 {
					m.NoFile = f[3]
				}
			}
		}
	}
	return m
}

// Metrics flattens the figures compare looks at. Names ending in _ms,
// lost, dups, failures, bytes_per_conn, cpu_* are better lower; the
// others better higher.
func (r *Result) Metrics() map[string]float64 {
	m := map[string]float64{
		"connected":                          float64(r.Connected),
		"connect_per_s":                      r.ConnectRate,
		"deliveries_per_s":                   r.DeliveriesPS,
		"lost":                               float64(r.Lost),
		"dups":                               float64(r.Dups),
		"gaps":                               float64(r.Gaps),
		"connect_failures":                   float64(r.Failed),
		"latency_p50_ms":                     r.Latency.P50,
		"latency_p90_ms":                     r.Latency.P90,
		"latency_p99_ms":                     r.Latency.P99,
		"latency_p999_ms":                    r.Latency.P999,
		"latency_max_ms":                     r.Latency.Max,
		"gateway_bytes_per_conn":             r.Gateway.BytesPerConn,
		"gateway_deliveries_per_cpu_s":       r.Gateway.DeliveriesPerCPUSecond,
		"gateway_handshakes_per_cpu_s":       r.Gateway.HandshakesPerCPUSecond,
		"harness_bytes_per_conn":             r.Harness.BytesPerConn,
		"harness_cpu_per_million_deliveries": r.Harness.CPUPerMillionDeliveries,
	}
	if r.Storm != nil {
		m["storm_all_resumed_after_s"] = r.Storm.AllResumedAfter
		m["storm_incomplete_histories"] = float64(r.Storm.Incomplete)
	}
	if r.Send != nil {
		m["send_acks_per_s"] = r.Send.AcksPS
		m["send_ack_p99_ms"] = r.Send.AckLat.P99
	}
	return m
}

// LowerIsBetter reports the direction of a metric of Metrics.
func LowerIsBetter(name string) bool {
	for _, s := range []string{"_ms", "lost", "dups", "gaps", "failures", "bytes_per_conn", "cpu_per", "_after_s", "incomplete"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// WriteJSON writes r to path.
func (r *Result) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// ReadResult reads a JSON result file.
func ReadResult(path string) (*Result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var r Result
	if err := json.Unmarshal(b, &r); err != nil {
		return nil, err
	}
	return &r, nil
}
