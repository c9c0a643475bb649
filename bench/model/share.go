package model

import "math"

// share is the fraction of a core one event loop gets while its flush
// cycle is cycle. In a deployment each loop has a core, less what the
// gateway's other work (reading the bus, handshakes, pings) takes. On a
// box the cores go to the runnable threads max-min fairly (as the
// kernel's scheduler does): the gateways' loops, the harness's workers,
// logic, dispatch, the dev broker and the box's other load (one thread
// of demand 1 per unit); a loop that needs less than its part runs at
// full speed.
func (s *state) share(n int, cycle float64, mix loopMix, g *gw) float64 {
	in, c := s.in, s.c
	loops := float64(in.GatewayCores)
	other := g.cpu.Read + g.cpu.Handshake + g.cpu.Ping
	if in.Box == nil {
		return math.Min(1, math.Max(0.02, (loops-other)/loops))
	}
	b := in.Box
	nl := n * in.GatewayCores
	loopNeed := math.Min(1, s.unmerged(mix)+other/loops)
	pipe := []float64{in.Rate * c.v("logic_msg_us") * 1e-6, in.Rate * c.v("dispatch_msg_us") * 1e-6,
		in.Rate * c.v("broker_msg_us") * 1e-6}
	var harness float64
	hw := math.Ceil(in.Viewers/harnessPerWorker) * b.Cores // workers × an epoll loop per core
	if b.Harness {
		_, writes, msgs := s.work(mix, cycle)
		harness = float64(nl) * (writes*c.v("harness_frame_us") + msgs*c.v("harness_msg_us")) * 1e-6 / cycle
	}
	need := make([]float64, 0, nl+int(hw)+4+int(b.Load)+1)
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
		g.harnessUtil = harness / math.Max(hw*got[nl+3], 1e-9)
	}
	if got[0] >= loopNeed*0.999 {
		return 1
	}
	return math.Max(0.02, got[0]-other/loops)
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

// hot fills the hottest room's figures: the loop that holds it has its
// share of the room's viewers plus, for the rest of its members, the
// average mix; its cycle, the room's pass, and the send → viewer
// latency: a batch waits for the loop's current cycle to reach the
// member (merged every 512 members), so the wait is spread evenly over
// one cycle, after the pipeline's own p99 and, on a box whose logic
// cannot keep up, the backlog the run's traffic built.
func (s *state) hot(g *gw, avg loopMix, n int, perGW float64, share func(float64, loopMix) float64) {
	in, c := s.in, s.c
	loops := float64(in.GatewayCores)
	v := s.bs[0].viewers
	onGW := v / float64(n)
	if in.Affinity != "off" {
		onGW = v / s.pool(v, n, perGW)
	}
	rest := math.Max(0, 1-(onGW-v/float64(n))/math.Max(perGW-v/float64(n), 1))
	mix := loopMix{members: make([]float64, len(avg.members))}
	for i := range avg.members {
		mix.members[i] = avg.members[i] * rest
	}
	mix.members[0] = onGW / loops
	g.hotCycle = s.cycle(mix, share)
	one := loopMix{members: make([]float64, len(avg.members))}
	one.members[0] = mix.members[0]
	cpu, writes, _ := s.work(one, g.hotCycle)
	sh := share(g.hotCycle, mix)
	// A pass writes to every member even when no other batch is waiting.
	if p := -math.Expm1(-s.wrecs[0] * g.hotCycle); p > 0 {
		g.hotPass = cpu / p / sh
		writes /= p
	}
	wait := math.Max(g.hotCycle, g.hotPass+s.pace(writes))
	base := c.v("pipeline_ms") / 1e3
	// On a box, logic or the harness that cannot keep up builds a backlog
	// over the run: the last message waits the run's length × (1 - 1/ρ).
	var backlog float64
	if b := in.Box; b != nil {
		if rho := math.Max(g.pipeUtil, g.harnessUtil); rho > 1 {
			backlog = b.DurationS * (1 - 1/rho)
		}
	}
	g.p50 = base + wait/2 + backlog/2
	g.p99 = base + 0.99*wait + 0.99*backlog
}
