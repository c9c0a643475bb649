package model

import "math"

// share is the fraction of a core one event loop gets while it writes
// (its pass), when its flush cycle is cycle. In a deployment each loop
// has a core, less what the gateway's other work (reading the bus,
// handshakes, pings) takes. On a box the cores go to the runnable threads
// max-min fairly (as the kernel's scheduler does): the gateways' loops,
// the harness's workers, logic, dispatch, the dev broker and the box's
// other load (one thread of demand 1 per unit). That average is not what
// a pass gets: the bench viewers read what a pass writes while it writes
// it, so during a pass the loops that are writing and the harness reading
// them share what the pipeline, the processes' base and the other load
// leave (burst).
func (s *state) share(n int, cycle float64, mix loopMix, g *gw) float64 {
	in, c := s.in, s.c
	loops := float64(in.GatewayCores)
	other := g.cpu.Read + g.cpu.Handshake + g.cpu.Ping + g.cpu.Base
	if in.Box == nil {
		return math.Min(1, math.Max(0.02, (loops-other)/loops))
	}
	b := in.Box
	nl := n * in.GatewayCores
	loopNeed := math.Min(1, s.unmerged(mix)+other/loops)
	// Logic, dispatch, the dev broker, and their base (polling the bus,
	// the runtime) with next to nothing to do.
	pipe := []float64{in.Rate * c.v("logic_msg_us") * 1e-6, in.Rate * c.v("dispatch_msg_us") * 1e-6,
		in.Rate * c.v("broker_msg_us") * 1e-6, c.v("pipeline_base_cores")}
	var harness, ratio, harnessBase float64
	hw := math.Ceil(in.Viewers/harnessPerWorker) * b.Cores // workers × an epoll loop per core
	cpu, writes, msgs := s.work(mix, cycle)
	if b.Harness {
		read := (writes*c.v("harness_frame_us") + msgs*c.v("harness_msg_us")) * 1e-6
		harnessBase = math.Ceil(in.Viewers/harnessPerWorker) * c.v("harness_base_cores")
		harness = float64(nl)*read/cycle + harnessBase
		if cpu > 0 {
			ratio = read / cpu
		}
	}
	need := make([]float64, 0, nl+int(hw)+len(pipe)+int(b.Load)+1)
	for range nl {
		need = append(need, loopNeed)
	}
	for _, p := range pipe {
		need = append(need, math.Min(1, p))
	}
	for range int(hw) {
		need = append(need, math.Min(1, harness/hw))
	}
	for l := b.Load; l > 0; l-- {
		need = append(need, math.Min(1, l))
	}
	got := fairShare(b.Cores, need)
	g.pipeUtil = pipe[0] / math.Max(got[nl], 1e-9)
	if b.Harness && harness > 0 {
		g.harnessUtil = harness / math.Max(hw*got[nl+len(pipe)], 1e-9)
	}
	// The harness's and the other gateways' base (polling, the runtime),
	// the pipeline and the other load run beside a pass too.
	beside := harnessBase + float64(n-1)*g.cpu.Base + b.Load
	for _, p := range pipe {
		beside += p
	}
	sh := s.burst(b, nl, ratio, beside)
	if got[0] < loopNeed*0.999 {
		sh = math.Min(sh, got[0])
	}
	return math.Max(0.02, sh-other/loops)
}

// burst is a loop's speed during its pass on a box: the loops writing at
// the same time (all of them: a hot room's batches reach every loop that
// holds it at once, so their passes coincide) and the harness reading
// them (ratio of its CPU per CPU written) share the cores the pipeline,
// the bases and the other load leave.
func (s *state) burst(b *Box, nl int, ratio, pipe float64) float64 {
	free := math.Max(0.05*b.Cores, b.Cores-pipe-b.Load)
	return math.Min(1, free/(float64(nl)*(1+ratio)))
}

// harnessPerWorker is the harness's connections per worker process
// (bench --per-worker); each worker runs an epoll loop per core.
const harnessPerWorker = 18000

// unmerged is a loop's CPU need when every batch is its own frame (what
// it would use with a core to itself), in cores.
func (s *state) unmerged(mix loopMix) float64 {
	c := s.c
	var u float64
	for i, b := range s.bs {
		if r := s.wrecs[i]; r > 0 && mix.members[i] > 0 {
			bytes := b.shown/r*c.v("delivery_bytes")*s.wire + 10
			u += mix.members[i] * r * (c.v("write_frame_us")*1e-6 + bytes*c.v("write_byte_ns")*1e-9)
		}
	}
	return u
}

// fairShare splits cores max-min fairly over threads that need need[i]
// cores each (at most 1): every thread gets its need or an equal part of
// what is left, whichever is less.
func fairShare(cores float64, need []float64) []float64 {
	got := make([]float64, len(need))
	left, open := cores, len(need)
	done := make([]bool, len(need))
	for open > 0 {
		part := left / float64(open)
		progressed := false
		for i, x := range need {
			if !done[i] && x <= part {
				got[i], done[i] = x, true
				left -= x
				open--
				progressed = true
			}
		}
		if !progressed {
			for i := range need {
				if !done[i] {
					got[i] = part
				}
			}
			break
		}
	}
	return got
}

// hotMix is the loop that holds the hottest room: its share of the
// room's viewers plus, for the rest of its members, the average mix;
// everyLoop is whether the room has viewers on every loop (no affinity,
// or a pool of every gateway).
func (s *state) hotMix(avg loopMix, n int, perGW float64) (mix loopMix, everyLoop bool) {
	loops := float64(s.in.GatewayCores)
	v := s.bs[0].viewers
	onGW := v / float64(n)
	if s.in.Affinity != "off" {
		onGW = v / s.pool(v, n, perGW)
	}
	rest := math.Max(0, 1-(onGW-v/float64(n))/math.Max(perGW-v/float64(n), 1))
	mix = s.newMix()
	for i := range avg.members {
		mix.members[i] = avg.members[i] * rest
	}
	mix.members[0] = onGW / loops
	return mix, s.in.Affinity == "off" || s.pool(v, n, perGW) >= float64(n)
}

// hot fills the hottest room's figures from its loop mix: the loop's
// cycle, the room's pass over its members, and the send → viewer
// latency: a batch waits for the loop's next pass (uniform over a
// cycle, or over the wait after a pass on a mostly idle loop), then for
// the pass to reach its viewer (uniform over the room's pass), after the pipeline's own p99 and, on a box whose logic
// or bench viewers cannot keep up, the backlog the run's traffic built.
func (s *state) hot(g *gw, mix loopMix, share func(float64, loopMix) float64) {
	in, c := s.in, s.c
	g.hotCycle = s.cycle(mix, share)
	one := s.newMix()
	one.members[0], one.shown = mix.members[0], mix.shown
	cpu, _, _ := s.work(one, g.hotCycle)
	sh := share(g.hotCycle, mix)
	// A pass writes to every member even when no other batch is waiting.
	if p := -math.Expm1(-s.wrecs[0] * g.hotCycle); p > 0 {
		g.hotPass = cpu / p / sh
	}
	base := c.v("pipeline_ms") / 1e3
	// On a box, logic or the harness that cannot keep up builds a backlog
	// over the run: the last message waits the run's length × (1 - 1/ρ).
	var backlog float64
	if b := in.Box; b != nil {
		if rho := math.Max(g.pipeUtil, g.harnessUtil); rho > 1 {
			backlog = b.DurationS * (1 - 1/rho)
		}
	}
	// The wait for the next pass: the loop's cycle when it is busy, the
	// pacing after its last pass when it is mostly idle.
	start := math.Max(g.hotCycle, s.afterPass(mix, g.hotPass, mix.members[0]))
	g.loopDelay = start + g.hotPass
	g.p50 = base + g.loopDelay/2 + backlog/2
	// The slowest passes (loop_spread times the typical one) set the
	// tail when their spread is wider than one cycle's.
	tail := math.Max(uniformSumQuantile(start, g.hotPass, 0.99), s.spread()*g.loopDelay/2)
	g.p99 = base + tail + 0.99*backlog
}

// uniformSumQuantile is the q quantile of U(0,a) + U(0,b).
func uniformSumQuantile(a, b, q float64) float64 {
	if a < b {
		a, b = b, a
	}
	if b <= 0 {
		return q * a
	}
	tail := 1 - q
	if tail <= b/(2*a) {
		// In the triangle past a: P(X > x) = (a+b-x)² / 2ab.
		return a + b - math.Sqrt(2*a*b*tail)
	}
	if tail >= 1-b/(2*a) {
		return math.Sqrt(2 * a * b * q)
	}
	// On the flat part between b and a: P(X > x) = (a + b/2 - x) / a.
	return a + b/2 - tail*a
}
