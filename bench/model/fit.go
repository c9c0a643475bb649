package model

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"sort"
	"strings"
	"time"
)

// FitRun is one calibration run as the fit uses it: over its traffic
// window (traffic and drain) of Secs seconds, the gateways' CPU-seconds,
// writes and their bytes; the harness's CPU-seconds, workers, frames and
// deliveries; logic's and dispatch's CPU-seconds and the messages
// accepted; the loop delay's p99 / p50 (0 unless one room).
type FitRun struct {
	Name                              string
	Secs, Gateways                    float64
	GatewayCPU, Writes, WriteBytes    float64
	HarnessCPU, Workers, Frames, Msgs float64
	LogicCPU, DispatchCPU, Accepted   float64
	Spread                            float64
}

// ReadFitRun reads a bench result file for the fit.
func ReadFitRun(path string) (FitRun, error) {
	r, err := readResult(path)
	if err != nil {
		return FitRun{}, err
	}
	f := FitRun{Name: r.Name, Gateways: float64(max(r.Options.Gateways, 1)), GatewayCPU: r.Gateway.CPUTraffic,
		Writes: r.Gateway.Writes, WriteBytes: r.Gateway.WriteBytes, Workers: float64(r.Harness.Workers),
		Frames: r.Frames, Msgs: r.Deliveries, LogicCPU: r.Pipeline["logic"], DispatchCPU: r.Pipeline["dispatch"],
		Accepted: r.accepted()}
	// The window: from the sample before the first of traffic to the last
	// of traffic or drain; the harness's CPU over it from the timeline's
	// per-interval cores.
	prev, start := 0.0, -1.0
	for _, p := range r.Timeline {
		if p.Phase == "traffic" || p.Phase == "drain" {
			if start < 0 {
				start = prev
			}
			f.HarnessCPU += p.HarnessCPU * (p.T - prev)
			f.Secs = p.T - start
		}
		prev = p.T
	}
	switch {
	case r.Options.Gateways == 0 || r.Gateway.IncludesPipeline:
		return FitRun{}, fmt.Errorf("model: %s: the gateways run logic and dispatch too (danmaku all): fit runs need --gateways K", path)
	case f.Writes <= 0 || f.Secs <= 0 || f.GatewayCPU <= 0:
		return FitRun{}, fmt.Errorf("model: %s: no traffic window, gateway CPU or writes (a result from before the gateways counted their writes?)", path)
	}
	if r.Options.Rooms <= 1 && r.Gateway.LoopDelayP50Ms > 0 {
		f.Spread = r.Gateway.LoopDelayP99Ms / r.Gateway.LoopDelayP50Ms
	}
	return f, nil
}

// fitLine is one cost line fitted over the runs: the coefficients by
// name (each ≥ 0) and each run's measured and fitted value.
type fitLine struct {
	what     string
	names    []string
	coef     []float64
	measured []float64
	fitted   []float64
}

// Fit fits the box's unit costs to the runs: per process of each kind,
// CPU = base × seconds + per-op costs × ops, by least squares on the
// relative error with every cost ≥ 0. The gateway's per write and per
// byte written, the harness's per frame and per message read, logic's
// and dispatch's per accepted message; loop_spread is the median p99/p50
// of the loop delay of the one-room runs of 10,000 viewers or more that
// never waited past ShedDelay (a wide loop's delay holds its waits; a
// smaller room's passes are too short to say how much the big ones vary);
// box_pass_eff and box_write_wall_us the pair whose model of those runs
// (bench, the same runs read by ReadRun) has their passes' share of a core
// closest (their messages per write, for runs that did not measure it). It
// returns c with those replaced and the lines, for FitReport.
func Fit(runs []FitRun, bench []BenchRun, c Costs, date string) (Costs, []fitLine, error) {
	if len(runs) < 3 {
		return nil, nil, fmt.Errorf("model: fit: %d runs, want 3 or more of different shapes", len(runs))
	}
	line := func(what string, names []string, row func(FitRun) ([]float64, float64)) (fitLine, error) {
		l := fitLine{what: what, names: names}
		var xs [][]float64
		for _, r := range runs {
			x, y := row(r)
			xs, l.measured = append(xs, x), append(l.measured, y)
		}
		coef, err := nnlsRelative(xs, l.measured)
		if err != nil {
			return l, fmt.Errorf("model: fit %s: %w", what, err)
		}
		l.coef = coef
		for _, x := range xs {
			var v float64
			for i := range x {
				v += x[i] * coef[i]
			}
			l.fitted = append(l.fitted, v)
		}
		return l, nil
	}
	var lines []fitLine
	add := func(l fitLine, err error) error {
		lines = append(lines, l)
		return err
	}
	if err := add(line("gateway CPU-s", []string{"gateway_base_cores", "write_us", "write_byte_ns"}, func(r FitRun) ([]float64, float64) {
		return []float64{r.Secs * r.Gateways, r.Writes * 1e-6, r.WriteBytes * 1e-9}, r.GatewayCPU
	})); err != nil {
		return nil, nil, err
	}
	if err := add(line("harness CPU-s", []string{"harness_base_cores", "harness_frame_us", "harness_msg_us"}, func(r FitRun) ([]float64, float64) {
		return []float64{r.Secs * r.Workers, r.Frames * 1e-6, r.Msgs * 1e-6}, r.HarnessCPU
	})); err != nil {
		return nil, nil, err
	}
	if err := add(line("logic CPU-s", []string{"logic base cores", "logic_msg_us"}, func(r FitRun) ([]float64, float64) {
		return []float64{r.Secs, r.Accepted * 1e-6}, r.LogicCPU
	})); err != nil {
		return nil, nil, err
	}
	if err := add(line("dispatch CPU-s", []string{"dispatch base cores", "dispatch_msg_us"}, func(r FitRun) ([]float64, float64) {
		return []float64{r.Secs, r.Accepted * 1e-6}, r.DispatchCPU
	})); err != nil {
		return nil, nil, err
	}
	out := Costs{}
	for n, v := range c {
		out[n] = v
	}
	names := make([]string, 0, len(runs))
	for _, r := range runs {
		names = append(names, r.Name)
	}
	cmd := "bin/danmaku bench model --fit " + strings.Join(names, ",") + " (make bench-model-fit)"
	set := func(n string, v float64, source string) {
		x := out[n]
		x.Value, x.Command, x.Measured, x.Source = roundSig(v, 4), cmd, date, source
		out[n] = x
	}
	for _, l := range lines[:2] {
		for i, n := range l.names {
			set(n, l.coef[i], fmt.Sprintf("least squares (relative, each ≥ 0) of %s over %d runs: %s", l.what, len(runs), l.spreadText()))
		}
	}
	// A per-message cost the runs cannot tell from the base (0 fitted)
	// keeps its value: 0 would size a platform's pipeline by nothing.
	for i, n := range []string{"logic_msg_us", "dispatch_msg_us"} {
		l := lines[2+i]
		if l.coef[1] > 0 {
			set(n, l.coef[1], fmt.Sprintf("least squares of %s over %d runs: %s", l.what, len(runs), l.spreadText()))
		}
	}
	// The pipeline's base is logic's and dispatch's fitted here and the dev
	// broker's (the bench does not read the broker's CPU).
	broker := c.v("broker_base_cores")
	set("pipeline_base_cores", lines[2].coef[0]+lines[3].coef[0]+broker,
		fmt.Sprintf("logic %.3f + dispatch %.3f fitted + the dev broker's %.3f (broker_base_cores)", lines[2].coef[0], lines[3].coef[0], broker))
	var spreads []float64
	for i, r := range runs {
		if r.Spread >= 1 && i < len(bench) && bench[i].In.Viewers >= 10000 && r.Spread*bench[i].LoopDelayMs <= 500 {
			spreads = append(spreads, r.Spread)
		}
	}
	if len(spreads) > 0 {
		slices.Sort(spreads)
		set("loop_spread", spreads[len(spreads)/2], fmt.Sprintf("median of the loop delay's p99/p50 over the %d one-room runs of 10,000 viewers or more within ShedDelay: %.2f", len(spreads), spreads))
	}
	// box_pass_eff and box_write_wall_us: the one-room runs of 5,000
	// viewers or more, whose passes' speed sets their writes' size. Where
	// runs measured their passes' wall time (pass_s), the model's share of
	// a core during a pass against theirs (their writes' CPU at the costs
	// just fitted, over that time); else their messages per write.
	var fitting []BenchRun
	byShare := false
	for _, b := range bench {
		// A run the model cannot take (no accepted messages counted: no
		// rate) is left out, not the whole fit.
		if _, err := Run(b.In, out); err != nil {
			continue
		}
		if b.In.Rooms == 1 && b.In.Viewers >= 5000 && b.MsgsPerWrite > 0 {
			fitting = append(fitting, b)
			byShare = byShare || b.PassShare(out) > 0
		}
	}
	if byShare {
		fitting = slices.DeleteFunc(fitting, func(b BenchRun) bool { return b.PassShare(out) <= 0 })
	}
	effCost, wallCost := out["box_pass_eff"], out["box_write_wall_us"]
	score := func(eff, wall float64) float64 {
		out["box_pass_eff"], out["box_write_wall_us"] = Cost{Value: eff}, Cost{Value: wall}
		var e float64
		for _, b := range fitting {
			o, err := Run(b.In, out)
			if err != nil || o.MsgsPerWrite <= 0 || o.PassShare <= 0 {
				return math.Inf(1)
			}
			d := math.Log(o.MsgsPerWrite / b.MsgsPerWrite)
			if byShare {
				d = math.Log(o.PassShare / b.PassShare(out))
			}
			e += d * d
		}
		return e
	}
	// A coarse grid, then finer ones around its best.
	bestEff, bestWall, bestErr := effCost.Value, wallCost.Value, math.Inf(1)
	search := func(eff0, eff1, effStep, wall0, wall1, wallStep float64) {
		for eff := eff0; eff <= eff1+1e-9; eff += effStep {
			for wall := wall0; wall <= wall1+1e-9; wall += wallStep {
				if eff <= 0 || wall < 0 {
					continue
				}
				if e := score(eff, wall); e < bestErr {
					bestEff, bestWall, bestErr = eff, wall, e
				}
			}
		}
	}
	if len(fitting) > 0 {
		if !byShare {
			// Messages per write alone cannot tell the two apart: the
			// pass's share only.
			search(0.1, 2, 0.1, wallCost.Value, wallCost.Value, 1)
			search(bestEff-0.1, bestEff+0.1, 0.01, wallCost.Value, wallCost.Value, 1)
		} else {
			search(0.2, 2, 0.2, 0, 20, 2)
			search(bestEff-0.2, bestEff+0.2, 0.05, bestWall-2, bestWall+2, 0.5)
			search(bestEff-0.05, bestEff+0.05, 0.01, bestWall-0.5, bestWall+0.5, 0.1)
		}
	}
	out["box_pass_eff"], out["box_write_wall_us"] = effCost, wallCost
	switch {
	case len(fitting) == 0 || math.IsInf(bestErr, 1):
		set("box_pass_eff", c.v("box_pass_eff"), "no one-room run of 5,000 viewers or more the model can take to fit it to: kept")
		set("box_write_wall_us", c.v("box_write_wall_us"), "no one-room run of 5,000 viewers or more the model can take to fit it to: kept")
	case !byShare:
		set("box_pass_eff", bestEff, fmt.Sprintf("the value in 0.1–2 whose model of the %d one-room runs of 5,000 viewers or more has their messages per write closest (log error, rms %.0f %%; no run measured its passes' wall time)",
			len(fitting), 100*math.Sqrt(bestErr/float64(len(fitting)))))
		set("box_write_wall_us", c.v("box_write_wall_us"), "no run measured its passes' wall time (pass_s): kept")
	default:
		what := fmt.Sprintf("with box_pass_eff, the pair whose model of the %d one-room runs of 5,000 viewers or more that measured their passes' wall time has the share of a core a pass gets closest (log error, rms %.0f %%)",
			len(fitting), 100*math.Sqrt(bestErr/float64(len(fitting))))
		set("box_pass_eff", bestEff, what)
		set("box_write_wall_us", bestWall, what)
	}
	return out, lines, nil
}

// spreadText is the line's worst relative error over the runs.
func (l fitLine) spreadText() string {
	var worst float64
	for i := range l.measured {
		if l.measured[i] > 0 {
			worst = math.Max(worst, math.Abs(l.fitted[i]/l.measured[i]-1))
		}
	}
	return fmt.Sprintf("each run within %.0f %% of the line", 100*worst)
}

// FitReport writes the fitted lines: coefficients and each run's measured
// and fitted CPU-seconds.
func FitReport(w io.Writer, runs []FitRun, lines []fitLine) {
	for _, l := range lines {
		var parts []string
		for i, n := range l.names {
			parts = append(parts, fmt.Sprintf("%s %.4g", n, l.coef[i]))
		}
		fmt.Fprintf(w, "%s = %s\n", l.what, strings.Join(parts, " + "))
		for i, r := range runs {
			e := "–"
			if l.measured[i] > 0 {
				e = fmt.Sprintf("%+.0f %%", 100*(l.fitted[i]/l.measured[i]-1))
			}
			fmt.Fprintf(w, "  %-28s measured %7.2f fitted %7.2f (%s)\n", r.Name, l.measured[i], l.fitted[i], e)
		}
	}
}

// nnlsRelative solves min Σ ((x_i·c − y_i)/y_i)² over c ≥ 0 (rows with
// y_i ≤ 0 left out), trying every set of coefficients held at 0: the
// lines here have two or three.
func nnlsRelative(xs [][]float64, ys []float64) ([]float64, error) {
	if len(xs) == 0 {
		return nil, fmt.Errorf("no runs")
	}
	k := len(xs[0])
	best, bestErr := []float64(nil), math.Inf(1)
	for mask := 1; mask < 1<<k; mask++ {
		var cols []int
		for j := range k {
			if mask&(1<<j) != 0 {
				cols = append(cols, j)
			}
		}
		// Normal equations of the weighted rows.
		n := len(cols)
		a := make([][]float64, n)
		for i := range a {
			a[i] = make([]float64, n+1)
		}
		rows := 0
		for r, x := range xs {
			if ys[r] <= 0 {
				continue
			}
			rows++
			for i, ci := range cols {
				for j, cj := range cols {
					a[i][j] += x[ci] * x[cj] / (ys[r] * ys[r])
				}
				a[i][n] += x[ci] / ys[r]
			}
		}
		if rows < n {
			continue
		}
		sol, ok := solve(a)
		if !ok || slices.ContainsFunc(sol, func(v float64) bool { return v < 0 }) {
			continue
		}
		c := make([]float64, k)
		for i, ci := range cols {
			c[ci] = sol[i]
		}
		var e float64
		for r, x := range xs {
			if ys[r] <= 0 {
				continue
			}
			var v float64
			for j := range x {
				v += x[j] * c[j]
			}
			e += (v/ys[r] - 1) * (v/ys[r] - 1)
		}
		if e < bestErr {
			best, bestErr = c, e
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no non-negative fit (runs too alike?)")
	}
	return best, nil
}

// solve solves the augmented system a (n × n+1) by Gaussian elimination
// with partial pivoting.
func solve(a [][]float64) ([]float64, bool) {
	n := len(a)
	for col := range n {
		p := col
		for r := col + 1; r < n; r++ {
			if math.Abs(a[r][col]) > math.Abs(a[p][col]) {
				p = r
			}
		}
		if math.Abs(a[p][col]) < 1e-300 {
			return nil, false
		}
		a[col], a[p] = a[p], a[col]
		for r := range n {
			if r == col {
				continue
			}
			f := a[r][col] / a[col][col]
			for j := col; j <= n; j++ {
				a[r][j] -= f * a[col][j]
			}
		}
	}
	x := make([]float64, n)
	for i := range n {
		x[i] = a[i][n] / a[i][i]
	}
	return x, true
}

// WriteCosts writes c in the format of costs.json, names sorted.
func WriteCosts(w io.Writer, c Costs) error {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Strings(names)
	var b strings.Builder
	b.WriteString("{\n")
	for i, n := range names {
		v, err := json.MarshalIndent(c[n], " ", " ")
		if err != nil {
			return err
		}
		k, _ := json.Marshal(n)
		fmt.Fprintf(&b, " %s: %s", k, v)
		if i < len(names)-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("}\n")
	_, err := io.WriteString(w, b.String())
	return err
}

// roundSig rounds v to n significant digits.
func roundSig(v float64, n int) float64 {
	if v == 0 || math.IsInf(v, 0) || math.IsNaN(v) {
		return v
	}
	p := math.Pow(10, float64(n)-math.Ceil(math.Log10(math.Abs(v))))
	return math.Round(v*p) / p
}

// today is the fit's date.
func today() string { return time.Now().UTC().Format("2006-01-02") }
