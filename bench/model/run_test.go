package model

import (
	"bytes"
	"errors"
	"flag"
	"math"
	"strings"
	"testing"
)

func run(t *testing.T, in Input, c Costs) *Output {
	t.Helper()
	o, err := Run(in, c)
	if err != nil {
		t.Fatal(err)
	}
	return o
}

// TestRunByHand: 100 viewers of one room on one single-loop gateway, 10
// msg/s, only writes cost (10 µs a frame). Two dispatch processes at
// 5 msg/s keep the 5 ms window, so the room makes (1-e^-0.05)/0.005 =
// 9.7541 records/s, each a frame to every viewer: 100 × 9.7541 × 10 µs =
// 0.0097541 cores. A batch's pass over 100 viewers takes 1 ms and the
// pacing after it 100/250,000 s = 0.4 ms: a batch waits out what is left
// of the pacing (uniform over 0.4 ms on this mostly idle loop), then the
// pass reaches its viewer (uniform over 1 ms), so p99 = 20 + 1.4 -
// √(2 × 0.4 × 1 × 0.01) ms and p50 = 20 + 0.7 ms.
func TestRunByHand(t *testing.T) {
	o := run(t, Input{Viewers: 100, Rooms: 1, Rate: 10, Gateways: 1, GatewayCores: 1, GatewayConns: 1000}, flat(t))
	recs := -math.Expm1(-0.05) / 0.005
	near(t, "dispatch records/s", o.DispatchRecords, recs, 1e-9)
	near(t, "write cores", o.GW.Write, 100*recs*10e-6, 0.005)
	if o.GW.Read != 0 || o.GW.Handshake != 0 || o.GW.Ping != 0 {
		t.Errorf("free costs cost something: %+v", o.GW)
	}
	near(t, "p99 ms", o.P99Ms, 20+1.4-math.Sqrt(2*0.4*1*0.01), 0.01)
	near(t, "p50 ms", o.P50Ms, 20+0.7, 0.01)
	recBytes := batchEnvelope + 10/recs*100
	mbs := recs * recBytes * 0.5 / 1e6
	near(t, "dispatch MB/s", o.DispatchMBs, mbs, 1e-9)
	in := 10*200*0.5/1e6 + 10*100*0.5/1e6 + mbs
	near(t, "broker ingress MB/s", o.BrokerInMBs, in, 1e-9)
	near(t, "broker egress MB/s", o.BrokerEgressMBs, 10*200*0.5/1e6+2*10*100*0.5/1e6+mbs+2*in, 1e-9)
	if o.Gateways != 1 || o.Logic != 1 || o.Dispatch != 2 || o.Brokers != 3 {
		t.Errorf("gateways %d logic %d dispatch %d brokers %d, want 1 1 2 3", o.Gateways, o.Logic, o.Dispatch, o.Brokers)
	}
}

// TestHeartbeatsAndHandshakes: 60,000 viewers on 3 gateways, 30 s
// heartbeats at 25 µs and 10-minute sessions at 50 µs: each gateway
// pings 20,000/30 per second (0.01667 cores) and takes 20,000/600
// handshakes per second (0.001667 cores).
func TestHeartbeatsAndHandshakes(t *testing.T) {
	c := flat(t)
	for n, v := range map[string]float64{"ping_us": 25, "handshake_us": 50} {
		x := c[n]
		x.Value = v
		c[n] = x
	}
	o := run(t, Input{Viewers: 60000, Rooms: 10, Rate: 1, Gateways: 3, HeartbeatS: 30, SessionMin: 10}, c)
	near(t, "ping cores", o.GW.Ping, 20000.0/30*25e-6, 1e-9)
	near(t, "handshake cores", o.GW.Handshake, 20000.0/600*50e-6, 1e-9)
}

// TestSizedByConnections and TestSizedByCPU: the gateway count is the
// larger of viewers/connections and what keeps a gateway's CPU within
// the target, and one fewer would not do.
func TestSizedByConnections(t *testing.T) {
	o := run(t, Input{Viewers: 1000, Rooms: 5, Rate: 1, GatewayConns: 100}, flat(t))
	if o.Gateways != 10 || o.Binds != "connections per gateway" {
		t.Errorf("gateways %d, binds %q; want 10 by connections", o.Gateways, o.Binds)
	}
}

func TestSizedByCPU(t *testing.T) {
	// Pacing next to nothing: a loop writes as soon as it can.
	in := Input{Viewers: 100000, Rooms: 1, Rate: 10, GatewayConns: 1e6, GatewayCores: 1, Target: 0.5, FlushRate: 1e9}
	c := flat(t)
	o := run(t, in, c)
	if o.Binds != "gateway CPU: writing to viewers" {
		t.Errorf("binds %q", o.Binds)
	}
	if o.GW.Total() > 0.5 {
		t.Errorf("%d gateways at %.3f cores each, past the target 0.5", o.Gateways, o.GW.Total())
	}
	in.Gateways = o.Gateways - 1
	if fewer := run(t, in, c); fewer.GW.Total() <= 0.5 {
		t.Errorf("%d gateways would do (%.3f cores each), the model chose %d", in.Gateways, fewer.GW.Total(), o.Gateways)
	}
	// Unmerged, the room costs 100,000 × 9.754 records/s × 10 µs = 9.75
	// cores: about 20 gateways at 0.5 (fewer as frames merge).
	if o.Gateways < 15 || o.Gateways > 20 {
		t.Errorf("gateways %d, want 15..20", o.Gateways)
	}
}

// TestSizedPaced: with the default flush pacing (a loop waits 4 µs per
// viewer written, writes costing 10 µs) a loop spends 10/14 of its time
// writing whatever its load, until a write holds one message: past the
// 0.5 target, the sizing stops where a tenth more gateways would save
// less than half a tenth of the CPU, and says so, instead of adding
// gateways that only merge less.
func TestSizedPaced(t *testing.T) {
	in := Input{Viewers: 100000, Rooms: 1, Rate: 10, GatewayConns: 1e6, GatewayCores: 1, Target: 0.5}
	c := flat(t)
	o := run(t, in, c)
	if o.Binds != "gateway CPU: writing to viewers (paced)" || len(o.Notes) == 0 || !strings.Contains(o.Notes[0], "pacing holds it") {
		t.Fatalf("binds %q, notes %q", o.Binds, o.Notes)
	}
	if cpu := o.GW.Total(); cpu < 0.5 || cpu > 10.0/14+0.02 {
		t.Errorf("%d gateways at %.3f cores each, want past 0.5 and at most the pacing's 10/14", o.Gateways, cpu)
	}
	more := max(o.Gateways+1, int(math.Ceil(float64(o.Gateways)*1.1)))
	in.Gateways = more
	if next := run(t, in, c); next.GW.Total() <= o.GW.Total()*(1-0.5*(1-float64(o.Gateways)/float64(more))) {
		t.Errorf("%d gateways at %.3f each would have saved enough against %d at %.3f", more, next.GW.Total(), o.Gateways, o.GW.Total())
	}
}

// TestSizedPacedCeiling: a gateway the pacing only just holds (its wait
// a tenth of its cycle) at 91 % of its core is no place to stop: the
// sizing goes on to at most 80 %.
func TestSizedPacedCeiling(t *testing.T) {
	c := costs(t)
	for _, rate := range []float64{3325, 3330} {
		o := run(t, Input{Viewers: 1e6, Rooms: 1, Rate: rate, GatewayConns: 2e5, GatewayCores: 1}, c)
		if cpu := o.GW.Total(); cpu > 0.81 && o.Binds == "gateway CPU: writing to viewers (paced)" {
			t.Errorf("%v msg/s: stopped at %d gateways, %.2f cores each, called paced", rate, o.Gateways, cpu)
		}
	}
}

// TestMonotone: more of the load never needs less, affinity never reads
// more, and a busier box never answers faster.
func TestMonotone(t *testing.T) {
	c := costs(t)
	base := presets["10m"]
	o := run(t, base, c)
	more := base
	more.Viewers *= 2
	more.Rooms *= 2
	if m := run(t, more, c); m.Gateways < o.Gateways || m.Deliveries < o.Deliveries {
		t.Errorf("twice the viewers: %d gateways, %.0f deliveries/s against %d, %.0f", m.Gateways, m.Deliveries, o.Gateways, o.Deliveries)
	}
	chatty := base
	chatty.MsgsPerViewerMin *= 3
	if m := run(t, chatty, c); m.DispatchMBs <= o.DispatchMBs || m.BrokerEgressMBs <= o.BrokerEgressMBs || m.Logic < o.Logic {
		t.Errorf("three times the messages: %.1f MB/s, egress %.0f, logic %d against %.1f, %.0f, %d",
			m.DispatchMBs, m.BrokerEgressMBs, m.Logic, o.DispatchMBs, o.BrokerEgressMBs, o.Logic)
	}
	thin := base
	thin.ThinBudget = 5
	if m := run(t, thin, c); m.Deliveries > o.Deliveries {
		t.Errorf("a smaller budget delivers more: %.0f > %.0f", m.Deliveries, o.Deliveries)
	}
	prev := 2.0
	for _, mode := range []string{"off", "room", "partition"} {
		x := base
		x.Affinity = mode
		m := run(t, x, c)
		if m.ReadFraction > prev || (mode != "off" && m.BrokerEgressMBs >= o.BrokerEgressMBs) {
			t.Errorf("affinity %s: reads %.3f (before %.3f), egress %.0f against %.0f off", mode, m.ReadFraction, prev, m.BrokerEgressMBs, o.BrokerEgressMBs)
		}
		prev = m.ReadFraction
	}
	one, two := base, base
	one.Affinity, two.Affinity, two.AffinitySlots = "room", "room", 2
	if a, b := run(t, one, c), run(t, two, c); b.RoomsPerGateway <= a.RoomsPerGateway || b.ReadFraction <= a.ReadFraction {
		t.Errorf("two slots per room: %.0f rooms per gateway reading %.3f, against %.0f, %.3f with one",
			b.RoomsPerGateway, b.ReadFraction, a.RoomsPerGateway, a.ReadFraction)
	}
	prev = 2.0
	for _, p := range []int{64, 256, 1024, 4096} {
		x := base
		x.Affinity, x.Partitions = "room", p
		if m := run(t, x, c); m.ReadFraction > prev {
			t.Errorf("%d partitions: a gateway reads %.3f, more than with fewer (%.3f)", p, m.ReadFraction, prev)
		} else {
			prev = m.ReadFraction
		}
	}
	lastP99, lastCPU := 0.0, math.Inf(1)
	for _, load := range []float64{0, 2, 5, 10} {
		x := presets["box-latency"]
		b := *x.Box
		b.Load = load
		x.Box = &b
		m := run(t, x, c)
		if m.P99Ms < lastP99 || m.GW.Total() > lastCPU*1.0001 {
			t.Errorf("box load %v: p99 %.0f ms, gateway %.2f cores; at less load %.0f ms, %.2f", load, m.P99Ms, m.GW.Total(), lastP99, lastCPU)
		}
		lastP99, lastCPU = m.P99Ms, m.GW.Total()
	}
}

func TestMain(t *testing.T) {
	var out, errOut bytes.Buffer
	if err := Main([]string{"--preset", "box-latency,1m", "--markdown"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"|  | box-latency | 1m |", "| binds first |", "| hottest room: p50 / p99 ms |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
	out.Reset()
	if err := Main([]string{"--preset", "1m", "--viewers", "2000000"}, &out, &errOut); err != nil || !strings.Contains(out.String(), "2.0M") {
		t.Errorf("--viewers did not override the preset: %v\n%s", err, out.String())
	}
	out.Reset()
	if err := Main([]string{"--costs-list"}, &out, &errOut); err != nil || !strings.Contains(out.String(), "measured 2026-") {
		t.Errorf("--costs-list: %v\n%s", err, out.String())
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--preset", "nope"}, `no preset "nope"`},
		{[]string{"--viewers", "-5", "--rooms", "1", "--rate", "1"}, "--viewers"},
		{[]string{"--preset", "1m", "--box-load", "3"}, errNoBox.Error()},
		{[]string{"--viewers", "10", "--rooms", "1", "--rate", "1", "--box-load", "3"}, errNoBox.Error()},
		{[]string{"--costs", "/nonexistent/costs.json"}, "no such file"},
		{[]string{"--viewers", "10", "--rooms", "1", "--rate", "1", "extra"}, `unexpected argument "extra"`},
	} {
		err := Main(tc.args, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err = %v, want %q", tc.args, err, tc.want)
		}
	}
	if err := Main([]string{"--preset", "1m", "--box-load", "3"}, &out, &errOut); !errors.Is(err, errNoBox) {
		t.Errorf("err = %v, want errNoBox", err)
	}
}

// TestPresetBoxCores: --box-cores applies on top of a preset: other cores
// for a box preset, a box for a deployment preset, none with 0.
func TestPresetBoxCores(t *testing.T) {
	parse := func(args ...string) []Input {
		t.Helper()
		fs := flag.NewFlagSet("model", flag.ContinueOnError)
		var in Input
		var box Box
		bindFlags(fs, &in, &box)
		if err := fs.Parse(args); err != nil {
			t.Fatal(err)
		}
		ins, err := resolve("box-mixed,1m", fs, in, box)
		if err != nil {
			t.Fatal(err)
		}
		return ins
	}
	if ins := parse("--box-cores", "8", "--box-load", "3"); ins[0].Box == nil || ins[0].Box.Cores != 8 || ins[0].Box.Load != 3 ||
		ins[1].Box == nil || ins[1].Box.Cores != 8 {
		t.Errorf("--box-cores 8: boxes %+v, %+v", ins[0].Box, ins[1].Box)
	}
	if ins := parse("--box-cores", "0"); ins[0].Box != nil || ins[1].Box != nil {
		t.Errorf("--box-cores 0: boxes %+v, %+v, want none", ins[0].Box, ins[1].Box)
	}
	if ins := parse(); ins[0].Box == nil || ins[0].Box.Cores != presets["box-mixed"].Box.Cores || ins[1].Box != nil {
		t.Errorf("no --box-cores: the presets' own boxes, got %+v, %+v", ins[0].Box, ins[1].Box)
	}
	if presets["box-mixed"].Box.Cores == 8 {
		t.Error("--box-cores changed the preset itself")
	}
}
