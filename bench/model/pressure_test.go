package model

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// TestSendLatency checks sendLatency against its rule applied on a grid
// of arrival times over a cycle and members over a pass: a batch that
// comes during the wait is written in the next pass; one that comes during
// a pass at point f, in the next pass too, unless the loop takes batches
// early: then the members after f get it in this pass.
func TestSendLatency(t *testing.T) {
	const n = 600
	for _, tc := range []struct {
		pass, wait, takes float64
	}{{1, 0.3, 1}, {1, 0.3, 0}, {0.2, 1, 1}, {0.2, 1, 0}, {1, 0, 1}, {1, 0, 0}, {0.5, 0.5, 1}, {0, 1, 0}, {1, 0.3, 0.3}} {
		cycle := tc.pass + tc.wait
		xs := make([]float64, 0, n*n)
		for i := range n {
			at := cycle * (float64(i) + 0.5) / n
			for k := range n {
				j := (float64(k) + 0.5) / n
				var d float64
				switch {
				case at >= tc.pass:
					d = cycle - at + j*tc.pass
				case j > at/tc.pass && float64(k%10) < 10*tc.takes:
					// taken for a share takes of the (f, j) pairs
					d = (j - at/tc.pass) * tc.pass
				default:
					d = tc.pass - at + tc.wait + j*tc.pass
				}
				xs = append(xs, d)
			}
		}
		slices.Sort(xs)
		for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
			want := xs[int(q*float64(len(xs)))]
			if got := sendLatency(tc.pass, tc.wait, tc.pass/cycle, tc.takes, q); math.Abs(got-want) > 3*cycle/n {
				t.Errorf("pass %v wait %v takes %v: quantile %v = %v, grid says %v", tc.pass, tc.wait, tc.takes, q, got, want)
			}
		}
	}
}

// TestPressure: one room on a single-loop gateway, writes at 10 µs and
// 100 B per message at 1 ns/B. 10,000 viewers at 10 msg/s: a pass of
// ~0.1 s, the loop keeps its 40 ms pacing. Where cycle + pass passes
// ShedDelay the room goes wide (and is then not late: no shed); where
// even wide passes are late with big frames it sheds, and what it shows
// is the largest share that is not (late with big frames); with small
// frames it stays wide and sheds nothing.
func TestPressure(t *testing.T) {
	c := flat(t)
	set := func(n string, v float64) { x := c[n]; x.Value = v; c[n] = x }
	set("write_byte_ns", 1)
	in := Input{Viewers: 10000, Rooms: 1, Gateways: 1, GatewayCores: 1, GatewayConns: 1e6, MinTickMs: 5}
	at := func(rate, viewers float64) *Output {
		x := in
		x.Rate, x.Viewers = rate, viewers
		return run(t, x, c)
	}
	calm := at(10, 10000)
	if calm.Wide || calm.Shed != 0 {
		t.Errorf("10 msg/s to 10,000: wide %v, shed %.2f; want neither (pass %.0f ms, cycle %.0f ms)", calm.Wide, calm.Shed, calm.HotPassMs, calm.HotCycleMs)
	}
	// 30,000 viewers: a pass of 0.375 s; the oldest batch comes as one
	// starts, the pass takes it 512 members in, and the next pass writes
	// the members before those: late by 0.375 + 0.04 + 0.006 s, within
	// 0.5 s: not wide.
	if o := at(60, 30000); o.Wide {
		t.Errorf("60 msg/s to 30,000: wide, want not (pass %.0f ms, cycle %.0f ms, loop delay %.0f ms)", o.HotPassMs, o.HotCycleMs, o.LoopDelayMs)
	}
	// 45,000: a pass of 0.56 s at least: wide; the wide wait is not
	// lateness, and a pass with the pacing alone is late past 0.5 s, but
	// with 60 msg/s writes are small (60 × a cycle of ~1 s, 6 KB, below
	// the 32 KB the gateway sheds at): wide, never shed.
	wide := at(60, 45000)
	if !wide.Wide || wide.Shed != 0 {
		t.Errorf("60 msg/s to 45,000: wide %v, shed %.2f; want wide, no shed (pass %.0f ms, cycle %.0f ms)", wide.Wide, wide.Shed, wide.HotPassMs, wide.HotCycleMs)
	}
	if wide.MsgsPerWrite < 60*0.25 {
		t.Errorf("wide frames of %.1f messages: a wide loop writes at most every 250 ms", wide.MsgsPerWrite)
	}
	// 2,000 msg/s of 100 B to 30,000: frames of hundreds of messages whose
	// bytes alone (30,000 × 2,000 × 100 B × 1 ns = 6 s per second) cannot
	// be written: the gateway sheds most, and what it shows fits.
	shed := at(2000, 30000)
	if !shed.Wide || shed.Shed < 0.5 || shed.Shed >= 1 {
		t.Fatalf("2,000 msg/s to 30,000: wide %v, shed %.2f; want wide and most shed", shed.Wide, shed.Shed)
	}
	// Protected messages are never left out: only the rest is shed.
	prot := in
	prot.Rate, prot.Viewers, prot.Protected = 2000, 30000, 0.8
	if o := run(t, prot, c); o.Shed > 0.2+1e-9 || o.Shed < 0.1 {
		t.Errorf("80 %% protected: shed %.3f, want some of the other 20 %% and no more", o.Shed)
	}
	prot.Protected = 1
	if o := run(t, prot, c); o.Shed != 0 || !o.Wide {
		t.Errorf("all protected: shed %.3f wide %v, want wide and nothing shed", o.Shed, o.Wide)
	}
	// Showing a little more than the model chose must be late.
	st := func(o *Output) (*state, loopMix, func(float64, loopMix) float64) {
		x := o.In
		bs := rooms(x)
		s := newState(x, c, bs, tick(x.Rate/float64(o.Dispatch), x.MinTickMs/1e3))
		g := gw{}
		share := func(cycle float64, m loopMix) float64 { return s.share(1, cycle, m, &g) }
		m := s.newMix()
		m.members[0] = x.Viewers
		m.wide = true
		return s, m, share
	}
	s, m, share := st(shed)
	late := func(shown float64) bool {
		m.shown = shown
		return s.lateWide(m, share)
	}
	// The size judged is the write's at full delivery, so a loop late for
	// its writes' count alone is cut to the floor (5 msg/s of 2,000).
	floor := shedMin / 2000.0
	shown := 1 - shed.Shed
	if (late(shown) && shown > floor+1e-9) || !late(math.Min(1, shown*1.05)) {
		t.Errorf("shown %.4f: late %v; shown 5 %% more: late %v; want the largest share that is not late, or the floor %.4f",
			shown, late(shown), late(shown*1.05), floor)
	}
	// A deployment is sized so that no gateway is under pressure.
	sized := run(t, Input{Viewers: 300000, Rooms: 1, Rate: 60, GatewayConns: 1e6, GatewayCores: 1, Target: 0.9}, c)
	if sized.Wide || sized.Shed != 0 {
		t.Errorf("sized deployment: %d gateways, wide %v, shed %.2f", sized.Gateways, sized.Wide, sized.Shed)
	}
}

// TestBurstShare: on a box the loops writing at once want a core each
// and the harness's threads what they read of the pass over its length;
// those and the threads beside run first, the loops split the rest. Two
// loops, a pass of 0.1 CPU-s each, 4 harness threads reading 0.1 CPU-s of
// each loop's pass: 2 cores over 2 loops and 4 threads that want 0.05/P
// each: the loops get s with 2s + 4·(s/2) = 2, s = 0.5 (the harness wants
// a quarter of a core each at that speed). With nothing read the loops
// get a core each; with a thread beside that wants a core, half a core
// each (the max-min split would give three threads two thirds each);
// with three that want half a core each, a quarter each (max-min: 0.4
// for all five); box_pass_eff scales it.
func TestBurstShare(t *testing.T) {
	s := &state{c: Costs{"box_pass_eff": {Value: 1}}}
	b := &Box{Cores: 2, Harness: true}
	near(t, "two loops, harness reading as much", s.burst(b, 2, 4, 0.1, 0.1, 0, nil), 0.5, 1e-4)
	near(t, "no harness", s.burst(b, 2, 4, 0.1, 0, 0, nil), 1, 1e-4)
	near(t, "a thread beside that wants a core", s.burst(b, 2, 0, 0.1, 0, 0, []float64{1}), 0.5, 1e-4)
	near(t, "three beside that want half a core", s.burst(b, 2, 0, 0.1, 0, 0, []float64{0.5, 0.5, 0.5}), 0.25, 1e-4)
	s.c["box_pass_eff"] = Cost{Value: 0.5}
	near(t, "box_pass_eff 0.5, no harness", s.burst(b, 2, 4, 0.1, 0, 0, nil), 0.5, 1e-4)
}

// TestAgainst: a bench result file read back gives the run's shape (the
// accepted rate from HTTP and senders, viewers and senders, the router's
// two affinity slots, deflate), one gateway's CPU, and the errors printed.
func TestAgainst(t *testing.T) {
	file := filepath.Join(t.TempDir(), "run.json")
	const res = `{"name":"mixed","options":{"rooms":1000,"zipf":1.1,"gateways":6,"deflate":true,"affinity":true},
	"machine":{"cores":2},"load1_start_end":[1.5,3],"viewers":99000,"senders":1000,"published":4000,
	"traffic_s":20,"deliveries":1000,"msgs_per_frame":99,"shed_fraction":0.1,"shed_by_room":{"bench-r1":0.05,"bench-r0":0.3},"latency":{"p50_ms":100,"p99_ms":400},
	"gateway":{"cpu_traffic_s":24,"loop_delay_p50_ms":80,"writes":80,"write_bytes":80000,"pass_s":2},"send":{"acks":4000},
	"timeline":[{"t":1,"phase":"warmup","gateway_cpu":0.1},{"t":2,"phase":"traffic","gateway_cpu":1.2},{"t":12,"phase":"traffic","gateway_cpu":1.2},
		{"t":22,"phase":"traffic","gateway_cpu":0.9},{"t":30,"phase":"drain","gateway_cpu":3}]}`
	if err := os.WriteFile(file, []byte(res), 0o600); err != nil {
		t.Fatal(err)
	}
	r, err := ReadRun(file)
	if err != nil {
		t.Fatal(err)
	}
	in := r.In
	if in.Viewers != 100000 || in.Rooms != 1000 || in.Rate != 400 || in.Gateways != 6 || in.GatewayCores != 2 ||
		in.Deflate != 1 || in.Affinity != "partition" || in.AffinitySlots != 2 || in.Box == nil || in.Box.Cores != 2 ||
		in.Box.DurationS != 20 || in.Protected != 0.5 {
		t.Errorf("input %+v box %+v", in, in.Box)
	}
	// The traffic phase's samples, by their intervals (1.2 for 11 s, 0.9
	// for 10 s) over 6 gateways; not cpu_traffic_s (24 CPU-s, drain
	// included) over the traffic phase's 20 s.
	near(t, "measured gateway cores", r.GatewayCores, (1.2*11+0.9*10)/21/6, 1e-9)
	if r.Shed != 0.3 || r.LoopDelayMs != 0 || r.PassSeconds != 2 || r.Writes != 80 || r.WriteBytes != 80000 {
		t.Errorf("many rooms: shed %v, loop delay %v; want the hottest room's (0.3) and none; passes %v s, writes %v, %v B",
			r.Shed, r.LoopDelayMs, r.PassSeconds, r.Writes, r.WriteBytes)
	}
	r.Shed, r.LoopDelayMs, r.PassSeconds = 0.1, 80, 0.002
	// 80 writes of 1,000 B at 10 µs + 1 ns/B: 0.88 ms of CPU in 2 ms.
	c := Costs{"write_us": {Value: 10}, "write_byte_ns": {Value: 1}}
	near(t, "measured pass share", r.PassShare(c), 0.44, 1e-9)
	var out bytes.Buffer
	o := &Output{In: in, GW: GatewayCPU{Write: 0.25}, MsgsPerWrite: 10, PassShare: 0.55, Shed: 0.2, LoopDelayMs: 100, P50Ms: 150, P99Ms: 300}
	Against(&out, []BenchRun{r}, []*Output{o}, c, true)
	for _, want := range []string{"| mixed | 1.5 → 3.0 | 0.25 / 0.18 (+42 %) | 10.0 / 12.5 (-20 %) | 0.55 / 0.44 (+25 %) | 20 % / 10 % (+10 pts) | 100 / 80 (+25 %) | 150 / 100 (+50 %) | 300 / 400 (-25 %) |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	var errOut bytes.Buffer
	out.Reset()
	if err := Main([]string{"--against", file, "--box-load", "1"}, &out, &errOut); err != nil || !strings.Contains(out.String(), "mixed") {
		t.Errorf("--against: %v\n%s", err, out.String())
	}
	for _, tc := range []struct{ args []string }{
		{[]string{"--against", file, "--preset", "1m"}},
		{[]string{"--against", filepath.Join(t.TempDir(), "none.json")}},
	} {
		if err := Main(tc.args, &out, &errOut); err == nil {
			t.Errorf("%v: no error", tc.args)
		}
	}
	bad := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(bad, []byte(`{"name":"x"}`), 0o600)
	if _, err := ReadRun(bad); err == nil || !strings.Contains(err.Error(), "not a bench result") {
		t.Errorf("a file with no traffic: %v", err)
	}
}

// TestAffinityHotSpreadsTheHottestRoom: with the router's hot rooms
// (AffinityHot), the hottest room under partition affinity reaches the
// distinct gateways of its own slots (about 4 of 6 for 6 slots), so its
// pass is shorter than on its partition's two; a cold room keeps two.
func TestAffinityHotSpreadsTheHottestRoom(t *testing.T) {
	s := &state{in: Input{Affinity: "partition", AffinitySlots: 2}}
	if got := s.pool(18000, 6, 16667); got != 2 {
		t.Errorf("pool without hot rooms = %v, want 2", got)
	}
	s.in.AffinityHot = 3000
	if got := s.pool(18000, 6, 16667); got < 3.9 || got > 4.1 {
		t.Errorf("pool of an 18k room at 3000 per slot = %v, want 6·(1−(5/6)^6) ≈ 3.99", got)
	}
	if got := s.pool(2000, 6, 16667); got != 2 {
		t.Errorf("pool of a 2k room = %v, want 2 (not hot)", got)
	}
	in := presets["box-mixed"]
	in.Affinity, in.AffinitySlots = "partition", 2
	cold, err := Run(in, costs(t))
	if err != nil {
		t.Fatal(err)
	}
	in.AffinityHot = 3000
	hot, err := Run(in, costs(t))
	if err != nil {
		t.Fatal(err)
	}
	if hot.HotPassMs >= cold.HotPassMs {
		t.Errorf("hottest room's pass with hot rooms spread %v ms, by partition %v ms: want shorter", hot.HotPassMs, cold.HotPassMs)
	}
}

// TestUtilFromAverageLoop: the pipeline's and the harness's shares come
// from the gateways' average loop; working out the hottest room's loop
// (every loop is not it) leaves them as they were.
func TestUtilFromAverageLoop(t *testing.T) {
	in := Input{Viewers: 20000, Rooms: 1000, Zipf: 1.1, Rate: 100, Gateways: 6, GatewayCores: 2, GatewayConns: 19680,
		Box: &Box{Cores: 2, Harness: true, DurationS: 20}}
	c, err := DefaultCosts()
	if err != nil {
		t.Fatal(err)
	}
	in = in.withDefaults()
	s := newState(in, c, rooms(in), tick(in.Rate, in.MinTickMs/1e3))
	var g gw
	avg := s.newMix()
	avg.avg = true
	hot := s.newMix()
	for i := range s.bs {
		avg.members[i] = s.bs[i].n * s.bs[i].viewers / 6 / 2
	}
	hot.members[0] = 20 * avg.members[0] // a loop far hotter than the average
	s.share(6, 0.05, avg, &g)
	pipe, harness := g.pipeUtil, g.harnessUtil
	if harness <= 0 {
		t.Fatalf("harness util %v from the average loop, want > 0", harness)
	}
	s.share(6, 0.05, hot, &g)
	if g.pipeUtil != pipe || g.harnessUtil != harness {
		t.Errorf("the hottest loop's share changed the box's utils: pipe %v → %v, harness %v → %v", pipe, g.pipeUtil, harness, g.harnessUtil)
	}
}

// TestTakes: a pass takes a room's newer batches early only while they
// are at the head of the loop's queue: always for a loop of one room of
// more than takeEvery members, never for one of takeEvery or fewer, and
// as often as its records are the loop's next ones where 1,000 rooms
// share the loop.
func TestTakes(t *testing.T) {
	c, err := DefaultCosts()
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in     Input
		lo, hi float64
	}{
		{Input{Viewers: 19000, Rooms: 1, Rate: 100, Gateways: 1}, 1, 1},
		{Input{Viewers: 1000, Rooms: 1, Rate: 100, Gateways: 1}, 0, 0},
		{Input{Viewers: 100000, Rooms: 1000, Zipf: 1.1, Rate: 400, Gateways: 6}, 0.01, 0.5},
	} {
		in := tc.in.withDefaults()
		s := newState(in, c, rooms(in), tick(in.Rate, in.MinTickMs/1e3))
		mix := s.newMix()
		for i := range s.bs {
			mix.members[i] = s.bs[i].n * s.bs[i].viewers / float64(in.Gateways) / float64(in.GatewayCores)
		}
		if got := s.takes(mix); got < tc.lo || got > tc.hi {
			t.Errorf("%d viewers in %d rooms on %d gateways: takes %.3f, want %v–%v", int(in.Viewers), in.Rooms, in.Gateways, got, tc.lo, tc.hi)
		}
	}
}
