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
	// Logic, dispatch, the dev broker, and their base (polling the bus,
	// the runtime) with next to nothing to do.
	pipe := []float64{in.Rate * c.v("logic_msg_us") * 1e-6, in.Rate * c.v("dispatch_msg_us") * 1e-6,
		in.Rate * c.v("broker_msg_us") * 1e-6, c.v("pipeline_base_cores")}
	var harness, read, harnessBase float64
	// Workers × an epoll loop per core: whole threads, at least one
	// (a box of under a core, --box-cores 0.5, still runs a worker).
	hw := math.Ceil(math.Ceil(in.Viewers/harnessPerWorker) * b.Cores)
	// A loop wants what it writes in a cycle of this length, and its
	// share of the gateway's other work.
	cpu, writes, msgs, frames := s.work(mix, cycle)
	loopNeed := math.Min(1, cpu/cycle+other/loops)
	if b.Harness {
		read = (frames*c.v("harness_frame_us") + msgs*c.v("harness_msg_us")) * 1e-6
		harnessBase = math.Ceil(in.Viewers/harnessPerWorker) * c.v("harness_base_cores")
		harness = float64(nl)*read/cycle + harnessBase
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
	if mix.avg {
		// What logic and the harness get is the gateways' average's
		// business: every loop is not the hottest room's.
		g.pipeUtil = pipe[0] / math.Max(got[nl], 1e-9)
		if b.Harness && harness > 0 {
			g.harnessUtil = harness / math.Max(hw*got[nl+len(pipe)], 1e-9)
		}
	}
	// Beside a pass run the pipeline, each gateway's other work (its
	// base: the runtime, metrics, bus polling; reading the bus) and the
	// other load, a thread each of at most a core.
	var beside []float64
	for _, p := range pipe {
		beside = append(beside, math.Min(1, p))
	}
	for range n {
		beside = append(beside, math.Min(1, other))
	}
	for l := b.Load; l > 0; l-- {
		beside = append(beside, math.Min(1, l))
	}
	sh := s.burst(b, nl, hw, cpu, read, harnessBase/math.Max(hw, 1), beside)
	if got[0] < loopNeed*0.999 {
		sh = math.Min(sh, got[0])
	}
	// Each write wakes the bench viewer that reads it, on the same
	// cores: box_write_wall_us of the pass's wall time per write that is
	// not the loop's CPU (fitted to the passes' wall time the gateway
	// measures, write_pass_seconds_total).
	if x := s.c.v("box_write_wall_us") * 1e-6; b.Harness && x > 0 && cpu > 0 {
		sh = sh * cpu / (cpu + writes*x*sh)
	}
	return math.Max(0.02, sh)
}

// burst is a loop's speed during its pass on a box, its pass's CPU being
// cpu: the loops writing at the same time (all of them: a hot room's
// batches reach every loop that holds it at once, so their passes
// coincide) want a core each; the harness's hw threads want what they
// read of the passes (read per loop pass, CPU-seconds) over the pass's
// length, and their base; beside, the other threads' needs. Those
// threads sleep and wake, and the kernel runs them first (a waking
// thread is owed its share); the loops, which write without sleeping,
// split what they leave. Where the others want less than an even part
// of the cores this is the max-min split; where the box is full (six
// gateways and their harness on two cores) the loops get less: in
// bench-mixed at 400 msg/s the others used 1.58 of 2 cores and the
// loops' passes 0.047 of a core each, where the max-min split gives
// 0.059. box_pass_eff (fitted to the passes' measured share, bench model
// --fit) is what this misses.
func (s *state) burst(b *Box, nl int, hw, cpu, read, hbase float64, beside []float64) float64 {
	if cpu <= 0 {
		return 1
	}
	eff := s.c.v("box_pass_eff")
	// The threads that sleep and wake (the harness reading, the
	// pipeline, the processes' runtimes) run first; the loops, which
	// write without sleeping, split what they leave. Beside a pass the
	// others want the same whatever its speed; each harness thread wants
	// what it reads of the passes over their length.
	var others float64
	for _, x := range beside {
		others += math.Min(1, x)
	}
	threads := math.Floor(hw)
	sh := 1.0
	for range 100 {
		left := b.Cores - others
		if threads > 0 {
			left -= threads * math.Min(1, float64(nl)*read/(hw*cpu/sh)+hbase)
		}
		next := math.Min(1, math.Max(left/float64(nl), 0.01)*eff)
		if math.Abs(next-sh) < 1e-7 {
			return next
		}
		sh = 0.5*sh + 0.5*next
	}
	return sh
}

// harnessPerWorker is the harness's connections per worker process
// (bench --per-worker); each worker runs an epoll loop per core.
const harnessPerWorker = 18000

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
// cycle, the room's pass over its members, and the send → viewer latency
// (sendLatency), after the pipeline's own p99 and, on a box whose logic
// or bench viewers cannot keep up, the backlog the run's traffic built.
func (s *state) hot(g *gw, mix loopMix, share func(float64, loopMix) float64) {
	in, c := s.in, s.c
	g.hotCycle = s.cycle(mix, share)
	one := s.newMix()
	one.members[0], one.shown = mix.members[0], mix.shown
	cpu, _, _, _ := s.work(one, g.hotCycle)
	sh := share(g.hotCycle, mix)
	// A pass writes to every member even when no other batch is waiting.
	if p := -math.Expm1(-s.wrecs[0] * g.hotCycle); p > 0 {
		g.hotPass = cpu / p / sh
	}
	base := c.v("pipeline_ms") / 1e3
	// On a box, logic, the harness or the loop that cannot keep up builds
	// a backlog over the run: the last message waits the run's length ×
	// (1 - 1/ρ). The loop cannot when a cycle brings more of the room's
	// messages than a write holds at most (the soft cap, where the cycle
	// stops growing here: the gateway's own writes of a wide room keep
	// growing, a pass per cycle, as long as the run lasts).
	var backlog float64
	if b := in.Box; b != nil {
		g.loopUtil = s.bs[0].shown * mix.shown * g.hotCycle / s.writeCap()
		if rho := math.Max(math.Max(g.pipeUtil, g.harnessUtil), g.loopUtil); rho > 1 {
			backlog = b.DurationS * (1 - 1/rho)
		}
	}
	// A delivery on the loop is at a uniform place of the loop's pass over
	// all its rooms (a pass's time is its writes), the hottest room's and
	// the others'. A batch comes during a pass as often as the loop is in
	// one; otherwise it waits out the rest of the cycle, or on a mostly
	// idle loop at most the pacing after the room's last pass.
	pass := g.hotPass
	var during float64
	if g.hotCycle > 0 {
		all, _, _, _ := s.work(mix, g.hotCycle)
		pass = math.Max(pass, math.Min(all/sh, g.hotCycle))
		during = math.Min(1, all/sh/g.hotCycle)
	}
	wait := math.Max(g.hotCycle-pass, s.afterPass(mix, pass, mix.members[0], g.hotCycle))
	takes := s.takes(mix)
	g.loopDelay = s.lag(mix, pass, wait)
	q50, q99 := sendLatency(pass, wait, during, takes, 0.5), sendLatency(pass, wait, during, takes, 0.99)
	g.p50 = base + q50 + backlog/2
	// The slowest passes (loop_spread times the typical one) set the
	// tail when their spread is wider than the typical cycle's.
	g.p99 = base + math.Max(q99, s.spread()*q50) + 0.99*backlog
}

// sendLatency is the q quantile of a batch's wait on a loop whose pass over
// the room takes pass, with wait between passes; the batch comes during a
// pass with probability during, at a uniform point of it, else at a
// uniform point of the wait; its viewer is at a uniform place in the pass.
// One that comes during the wait is written in the next pass; one that
// comes during a pass, in the next pass too, unless the running pass takes
// it (with probability takes, s.takes) for the members it has not reached
// yet: then only those before wait for the next (gateway/flush.go
// takeMore).
func sendLatency(pass, wait, during, takes float64, q float64) float64 {
	if pass+wait <= 0 {
		return 0
	}
	cdf := func(x float64) float64 {
		var inPass float64
		if pass > 0 {
			// Taken: members after the batch's arrival point f get it at
			// (j−f)·pass, those before at (1−(f−j))·pass + wait, each
			// half the unit square of (f, j).
			d := math.Min(1, math.Max(0, x/pass))
			e := math.Min(1, math.Max(0, 1-(x-wait)/pass))
			taken := (0.5 - (1-d)*(1-d)/2) + (1-e)*(1-e)/2
			inPass = takes*taken + (1-takes)*uniformSumCDF(pass, pass, x-wait)
		}
		return during*inPass + (1-during)*uniformSumCDF(wait, pass, x)
	}
	lo, hi := 0.0, wait+2*pass
	for range 60 {
		mid := (lo + hi) / 2
		if cdf(mid) < q {
			lo = mid
		} else {
			hi = mid
		}
	}
	return hi
}

// uniformSumCDF is P(U(0,a) + U(0,b) ≤ x).
func uniformSumCDF(a, b, x float64) float64 {
	if a < b {
		a, b = b, a
	}
	switch {
	case x <= 0:
		return 0
	case x >= a+b:
		return 1
	case b <= 0:
		return x / a
	case x <= b:
		return x * x / (2 * a * b)
	case x <= a:
		return (x - b/2) / a
	default:
		return 1 - (a+b-x)*(a+b-x)/(2*a*b)
	}
}
