package model

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

// TestFitRecoversCosts: runs made up from known costs (a gateway base of
// 0.2 cores, 5 µs a write, 0.25 ns a byte; a harness of 0.1 cores a
// worker, 3 µs a frame, 0.005 µs a message; logic 0.07 + 20 µs a message,
// dispatch 0.04 + 10 µs) give those costs back, and the pipeline's base
// adds the broker's kept one.
func TestFitRecoversCosts(t *testing.T) {
	c := flat(t)
	runs := madeUpRuns()
	got, lines, err := Fit(runs, nil, c, "2026-12-07")
	if err != nil {
		t.Fatal(err)
	}
	for n, want := range map[string]float64{"gateway_base_cores": 0.2, "write_us": 5, "write_byte_ns": 0.25,
		"harness_base_cores": 0.1, "harness_frame_us": 3, "harness_msg_us": 0.005, "logic_msg_us": 20, "dispatch_msg_us": 10,
		"pipeline_base_cores": 0.07 + 0.04 + c.v("broker_base_cores")} {
		near(t, n, got.v(n), want, 1e-3)
		if n != "pipeline_base_cores" && (got[n].Measured != "2026-12-07" || !strings.Contains(got[n].Command, "--fit a,b,c,d,e")) {
			t.Errorf("%s: measured %q command %q, want the fit's date and runs", n, got[n].Measured, got[n].Command)
		}
	}
	var b bytes.Buffer
	FitReport(&b, runs, lines)
	if !strings.Contains(b.String(), "gateway CPU-s = gateway_base_cores 0.2 + write_us 5 + write_byte_ns 0.25") {
		t.Errorf("report:\n%s", b.String())
	}
	if _, _, err := Fit(runs[:2], nil, c, "2026-12-07"); err == nil {
		t.Error("a fit of 2 runs: no error")
	}
}

// madeUpRuns are five runs of the costs TestFitRecoversCosts names.
func madeUpRuns() []FitRun {
	var runs []FitRun
	for i, shape := range [][4]float64{{20, 4e5, 7e7, 1}, {20, 2e6, 6e8, 1}, {15, 1e6, 4e9, 2}, {20, 2e6, 4e9, 2}, {15, 3e5, 4e10, 2}} {
		secs, writes, bytes, workers := shape[0], shape[1], shape[2], shape[3]
		frames, msgs, acc := writes*1.1, bytes/120, 1000*float64(i+1)*secs
		runs = append(runs, FitRun{Name: string(rune('a' + i)), Secs: secs, Gateways: 1,
			GatewayCPU: 0.2*secs + writes*5e-6 + bytes*0.25e-9, Writes: writes, WriteBytes: bytes,
			HarnessCPU: 0.1*secs*workers + frames*3e-6 + msgs*0.005e-6, Workers: workers, Frames: frames, Msgs: msgs,
			LogicCPU: 0.07*secs + acc*20e-6, DispatchCPU: 0.04*secs + acc*10e-6, Accepted: acc})
	}
	return runs
}

// TestFitPassShare: one-room box runs at 100 and 1,000 msg/s whose
// passes got the share of a core the model gives with box_pass_eff 0.8
// and box_write_wall_us 3 (their pass_s: their writes' CPU over that
// share) give those two back; runs that did not measure their passes
// keep box_write_wall_us and fit box_pass_eff to their messages per write.
func TestFitPassShare(t *testing.T) {
	c := costs(t)
	runs, shares, sizes := shareRuns(t, c, 0.8, 3)
	got, _, err := Fit(runs, shares, c, "2026-12-07")
	if err != nil {
		t.Fatal(err)
	}
	near(t, "box_pass_eff", got.v("box_pass_eff"), 0.8, 0.011)
	near(t, "box_write_wall_us", got.v("box_write_wall_us"), 3, 0.11)
	if !strings.Contains(got["box_write_wall_us"].Source, "2 one-room runs") {
		t.Errorf("source %q", got["box_write_wall_us"].Source)
	}
	got, _, err = Fit(runs, sizes, c, "2026-12-07")
	if err != nil {
		t.Fatal(err)
	}
	if got.v("box_write_wall_us") != c.v("box_write_wall_us") || !strings.Contains(got["box_write_wall_us"].Source, "kept") {
		t.Errorf("without pass_s: box_write_wall_us %v (%s), want %v kept", got.v("box_write_wall_us"), got["box_write_wall_us"].Source, c.v("box_write_wall_us"))
	}
}

// shareRuns are madeUpRuns and one-room box runs at 100 and 1,000 msg/s
// whose passes got the share of a core the model gives, at the costs
// madeUpRuns fit, with box_pass_eff eff and box_write_wall_us wall: with
// their pass_s (their writes' CPU over that share), and without it.
func shareRuns(t *testing.T, c Costs, eff, wall float64) (runs []FitRun, shares, sizes []BenchRun) {
	t.Helper()
	runs = madeUpRuns()
	fitted, _, err := Fit(runs, nil, c, "2026-12-07")
	if err != nil {
		t.Fatal(err)
	}
	truth := Costs{}
	for n, v := range fitted {
		truth[n] = v
	}
	truth["box_pass_eff"], truth["box_write_wall_us"] = Cost{Value: eff}, Cost{Value: wall}
	for _, rate := range []float64{100, 1000} {
		in := Input{Name: "one-room", Viewers: 19000, Rooms: 1, Rate: rate, Gateways: 1, GatewayCores: 2, GatewayConns: 19680,
			Box: &Box{Cores: 2, Harness: true, DurationS: 20}}
		o, err := Run(in, truth)
		if err != nil {
			t.Fatal(err)
		}
		writes := 1e6
		bytes := writes * (o.MsgsPerWrite*truth.v("delivery_bytes") + 10)
		pass := (writes*truth.v("write_us")*1e-6 + bytes*truth.v("write_byte_ns")*1e-9) / o.PassShare
		shares = append(shares, BenchRun{In: in, MsgsPerWrite: o.MsgsPerWrite, Writes: writes, WriteBytes: bytes, PassSeconds: pass})
		sizes = append(sizes, BenchRun{In: in, MsgsPerWrite: o.MsgsPerWrite})
	}
	return runs, shares, sizes
}

// TestNNLSRelative: a negative least-squares coefficient is held at 0
// and the rest refitted.
func TestNNLSRelative(t *testing.T) {
	// y = 2x₁ exactly; x₂ only adds noise that a free fit would give a
	// negative weight.
	xs := [][]float64{{1, 3}, {2, 1}, {3, 5}, {4, 0}}
	ys := []float64{2, 4.1, 5.9, 8}
	c, err := nnlsRelative(xs, ys)
	if err != nil {
		t.Fatal(err)
	}
	if c[1] < 0 || c[0] < 0 || math.Abs(c[0]-2) > 0.05 {
		t.Errorf("coefficients %v, want about [2 0], none negative", c)
	}
	if _, err := nnlsRelative([][]float64{{1, 1}, {1, 1}}, []float64{1, 1}); err != nil {
		t.Errorf("collinear runs: %v (a fit with one held at 0 should do)", err)
	}
}
