package model

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"strings"
)

// result is the part of a bench result file (bench.Result's JSON) the
// model reads: the run's shape, to model it (ReadRun), what it measured,
// and what each process did with its CPU, to fit costs to (ReadFitRun).
type result struct {
	Name    string `json:"name"`
	Options struct {
		Rooms       int     `json:"rooms"`
		Zipf        float64 `json:"zipf"`
		Gateways    int     `json:"gateways"`
		Deflate     bool    `json:"deflate"`
		Affinity    bool    `json:"affinity"`
		AffinityHot int     `json:"affinity_hot"`
		AsViewers   bool    `json:"as_viewers"`
		SenderRole  string  `json:"sender_role"`
	} `json:"options"`
	Machine struct {
		Cores int `json:"cores"`
	} `json:"machine"`
	Load         [2]float64         `json:"load1_start_end"`
	Viewers      int                `json:"viewers"`
	Senders      int                `json:"senders"`
	Published    int64              `json:"published"`
	TrafficSecs  float64            `json:"traffic_s"`
	Deliveries   float64            `json:"deliveries"`
	Frames       float64            `json:"frames"`
	ShedFraction float64            `json:"shed_fraction"`
	ShedByRoom   map[string]float64 `json:"shed_by_room"`
	Latency      struct {
		P50 float64 `json:"p50_ms"`
		P99 float64 `json:"p99_ms"`
	} `json:"latency"`
	Gateway struct {
		CPUTraffic       float64 `json:"cpu_traffic_s"`
		IncludesPipeline bool    `json:"includes_pipeline"`
		LoopDelayP50Ms   float64 `json:"loop_delay_p50_ms"`
		LoopDelayP99Ms   float64 `json:"loop_delay_p99_ms"`
		Writes           float64 `json:"writes"`
		WriteBytes       float64 `json:"write_bytes"`
		PassSeconds      float64 `json:"pass_s"`
	} `json:"gateway"`
	Harness struct {
		Workers int `json:"workers"`
	} `json:"harness"`
	Pipeline map[string]float64 `json:"pipeline_cpu_s"`
	Send     *struct {
		Acks int64 `json:"acks"`
	} `json:"send"`
	Timeline []struct {
		T          float64 `json:"t"`
		Phase      string  `json:"phase"`
		GatewayCPU float64 `json:"gateway_cpu"`
		HarnessCPU float64 `json:"harness_cpu"`
	} `json:"timeline"`
}

// readResult reads a bench result file (bench-results/NAME.json).
func readResult(path string) (result, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return result{}, err
	}
	var r result
	if err := json.Unmarshal(b, &r); err != nil {
		return result{}, fmt.Errorf("model: %s: %w", path, err)
	}
	return r, nil
}

// trafficCores is the gateways' CPU in cores over the traffic phase: the
// timeline's samples, weighted by their intervals. cpu_traffic_s runs on
// to the end of the deliveries (the drain, up to the grace), which a
// steady rate must not be divided into; without samples, it over the
// traffic phase's length.
func (r *result) trafficCores() float64 {
	var cpu, secs float64
	for i := 1; i < len(r.Timeline); i++ {
		if p := r.Timeline[i]; p.Phase == "traffic" {
			dt := p.T - r.Timeline[i-1].T
			cpu, secs = cpu+p.GatewayCPU*dt, secs+dt
		}
	}
	if secs < r.TrafficSecs/2 {
		return r.Gateway.CPUTraffic / r.TrafficSecs
	}
	return cpu / secs
}

// accepted is the messages the run's pipeline accepted: published over
// HTTP and acked to senders.
func (r *result) accepted() float64 {
	a := float64(r.Published)
	if r.Send != nil {
		a += float64(r.Send.Acks)
	}
	return a
}

// BenchRun is a bench run read back: the model's input for it (a box of the
// machine's cores, the harness on them, the accepted rate) and what it
// measured.
type BenchRun struct {
	File string
	In   Input
	// Measured: one gateway's CPU in cores over the traffic phase, msgs
	// per write (0: a result without the gateways' writes), the hottest
	// room's shed fraction, the loop delay's p50 (0: not measured, or many
	// rooms) and the send → viewer quantiles.
	GatewayCores, MsgsPerWrite, Shed, LoopDelayMs, P50Ms, P99Ms float64
	Load                                                        [2]float64
	// Writes, WriteBytes and PassSeconds are the gateways' stream
	// writes, their bytes and their loops' wall time in write passes
	// over the run (PassSeconds 0: not measured).
	Writes, WriteBytes, PassSeconds float64
}

// PassShare is the share of a core the run's write passes got: their
// writes' CPU at the costs c over their wall time; 0 when the run did not
// measure it.
func (r BenchRun) PassShare(c Costs) float64 {
	if r.PassSeconds <= 0 || r.Writes <= 0 {
		return 0
	}
	return (r.Writes*c.v("write_us")*1e-6 + r.WriteBytes*c.v("write_byte_ns")*1e-9) / r.PassSeconds
}

// ReadRun reads a bench result file (bench-results/NAME.json) to model it.
func ReadRun(path string) (BenchRun, error) {
	r, err := readResult(path)
	if err != nil {
		return BenchRun{}, err
	}
	if r.TrafficSecs <= 0 || r.Viewers <= 0 || r.Machine.Cores <= 0 {
		return BenchRun{}, fmt.Errorf("model: %s: no traffic phase, viewers or machine cores: not a bench result", path)
	}
	gateways := max(r.Options.Gateways, 1)
	accepted := r.accepted()
	in := Input{Name: r.Name, Viewers: float64(r.Viewers + r.Senders), Rooms: max(r.Options.Rooms, 1),
		Zipf: r.Options.Zipf, Rate: accepted / r.TrafficSecs, Gateways: gateways, GatewayCores: r.Machine.Cores,
		GatewayConns: 19680, Box: &Box{Cores: float64(r.Machine.Cores), Harness: true, DurationS: r.TrafficSecs}}
	if r.Options.Deflate {
		in.Deflate = 1
	}
	// The publisher posts as the service (protected) unless
	// --as-viewers; senders post as viewers (sheddable) or mods.
	var sheddable float64
	if r.Options.AsViewers {
		sheddable += float64(r.Published)
	}
	if r.Send != nil && r.Options.SenderRole != "mod" {
		sheddable += float64(r.Send.Acks)
	}
	if accepted > 0 {
		in.Protected = 1 - sheddable/accepted
	}
	if r.Options.Affinity {
		// The bench's router, like deploy/nginx/room-affinity.conf,
		// spreads a room over two gateways of its partition.
		in.Affinity, in.AffinitySlots, in.AffinityHot = "partition", 2, float64(r.Options.AffinityHot)
	}
	run := BenchRun{File: path, In: in, GatewayCores: r.trafficCores() / float64(gateways),
		Shed: r.ShedFraction, LoopDelayMs: r.Gateway.LoopDelayP50Ms,
		P50Ms: r.Latency.P50, P99Ms: r.Latency.P99, Load: r.Load,
		Writes: r.Gateway.Writes, WriteBytes: r.Gateway.WriteBytes, PassSeconds: r.Gateway.PassSeconds}
	if r.Gateway.Writes > 0 {
		run.MsgsPerWrite = r.Deliveries / r.Gateway.Writes
	}
	if in.Rooms > 1 {
		// The model's shed and loop delay are the hottest room's and its
		// loop's: the bench names rooms by popularity (…-r0 the
		// hottest), and the gateways' loop delay mixes every loop's
		// passes, most of them over small rooms: not comparable.
		run.Shed, run.LoopDelayMs = 0, 0
		for room, f := range r.ShedByRoom {
			if strings.HasSuffix(room, "-r0") {
				run.Shed = f
			}
		}
	}
	return run, nil
}

// Against writes the model's figures next to what each run measured,
// with the model's error (model / measured - 1).
// The pass share's measured side is the runs' writes at the costs c.
func Against(w io.Writer, runs []BenchRun, outs []*Output, c Costs, md bool) {
	head := []string{"run", "load", "gateway CPU, cores", "msgs per write", "pass share", "shed", "loop delay p50 ms", "p50 ms", "p99 ms"}
	lines := [][]string{head}
	for i, r := range runs {
		o := outs[i]
		pair := func(model, measured float64, f func(float64) string) string {
			e := "–"
			if measured > 0 {
				e = fmt.Sprintf("%+.0f %%", 100*(model/measured-1))
			}
			return fmt.Sprintf("%s / %s (%s)", f(model), f(measured), e)
		}
		pct := func(v float64) string { return fmt.Sprintf("%.0f %%", 100*v) }
		shed := fmt.Sprintf("%s / %s", pct(o.Shed), pct(r.Shed))
		if math.Max(o.Shed, r.Shed) > 0 {
			shed += fmt.Sprintf(" (%+.0f pts)", 100*(o.Shed-r.Shed))
		}
		lines = append(lines, []string{r.In.Name, fmt.Sprintf("%.1f → %.1f", r.Load[0], r.Load[1]),
			pair(o.GW.Total(), r.GatewayCores, f2), pair(o.MsgsPerWrite, r.MsgsPerWrite, f1), pair(o.PassShare, r.PassShare(c), f2), shed,
			pair(o.LoopDelayMs, r.LoopDelayMs, f0), pair(o.P50Ms, r.P50Ms, f0), pair(o.P99Ms, r.P99Ms, f0)})
	}
	writeLines(w, lines, md)
	fmt.Fprintln(w, "each cell: model / measured (model's error)")
}
