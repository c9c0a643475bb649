package model

import (
	"bytes"
	"encoding/json"
	"math"
	"strings"
	"testing"
)

func costs(t *testing.T) Costs {
	t.Helper()
	c, err := DefaultCosts()
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// flat are costs where only the frame write costs, so the arithmetic can
// be done by hand.
func flat(t *testing.T) Costs {
	c := Costs{}
	for k, v := range costs(t) {
		v.Value = 0
		c[k] = v
	}
	set := func(n string, v float64) { x := c[n]; x.Value = v; c[n] = x }
	set("write_us", 10)
	set("loop_spread", 1)
	set("deflate_ratio", 0.25)
	set("bus_compression", 0.5)
	set("delivery_bytes", 100)
	set("ingest_record_bytes", 200)
	set("accepted_record_bytes", 100)
	set("broker_egress_mbs", 100)
	set("broker_ingress_mbs", 100)
	set("pipeline_ms", 20)
	return c
}

func near(t *testing.T, name string, got, want, tol float64) {
	t.Helper()
	if math.Abs(got-want) > tol*math.Max(1e-12, math.Abs(want)) {
		t.Errorf("%s = %.6g, want %.6g (±%.1f %%)", name, got, want, tol*100)
	}
}

func TestDefaultCosts(t *testing.T) {
	c := costs(t)
	for _, n := range costNames {
		if c[n].Command == "" || c[n].Measured == "" || c[n].Unit == "" {
			t.Errorf("%s: command, date and unit required: %+v", n, c[n])
		}
	}
	var buf bytes.Buffer
	c.Print(&buf)
	if !strings.Contains(buf.String(), "BenchmarkConsumeCPU") && !strings.Contains(buf.String(), "ConsumeCPU") {
		t.Errorf("Print lacks the commands:\n%s", buf.String())
	}
}

func TestParseCostsErrors(t *testing.T) {
	good := map[string]Cost(costs(t))
	for _, tc := range []struct {
		name, want string
		mod        func(map[string]Cost)
	}{
		{"missing", `"ping_us" missing`, func(m map[string]Cost) { delete(m, "ping_us") }},
		{"negative", `"write_us" is -1`, func(m map[string]Cost) { x := m["write_us"]; x.Value = -1; m["write_us"] = x }},
		{"no command", `"read_byte_ns" needs the command`, func(m map[string]Cost) { x := m["read_byte_ns"]; x.Command = ""; m["read_byte_ns"] = x }},
		{"ratio", "deflate_ratio is 0", func(m map[string]Cost) { x := m["deflate_ratio"]; x.Value = 0; m["deflate_ratio"] = x }},
		{"spread", "loop_spread is 0.5", func(m map[string]Cost) { x := m["loop_spread"]; x.Value = 0.5; m["loop_spread"] = x }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := map[string]Cost{}
			for k, v := range good {
				m[k] = v
			}
			tc.mod(m)
			b, _ := json.Marshal(m)
			if _, err := ParseCosts(b); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
		})
	}
	if _, err := ParseCosts([]byte("{")); err == nil {
		t.Error("truncated JSON parsed")
	}
}

func TestValidate(t *testing.T) {
	ok := Input{Viewers: 1000, Rooms: 10, Rate: 5}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, want string
		mod        func(*Input)
	}{
		{"no viewers", "--viewers must be at least 1", func(in *Input) { in.Viewers = 0 }},
		{"no rooms", "--rooms must be at least 1", func(in *Input) { in.Rooms = 0 }},
		{"no messages", "give --rate or --msgs-per-viewer-min", func(in *Input) { in.Rate = 0 }},
		{"negative zipf", "--zipf is -1", func(in *Input) { in.Zipf = -1 }},
		{"NaN rate", "--rate is NaN", func(in *Input) { in.Rate = math.NaN() }},
		{"deflate share", "--deflate 2 is a share", func(in *Input) { in.Deflate = 2 }},
		{"target", "--target 1.5", func(in *Input) { in.Target = 1.5 }},
		{"affinity", `--affinity "sometimes"`, func(in *Input) { in.Affinity = "sometimes" }},
		{"tiny gateway", "--gateway-conns must be at least 1", func(in *Input) { in.GatewayConns = 0.5 }},
		{"box", "box: cores 0", func(in *Input) { in.Box = &Box{} }},
		{"too many rooms", "at most 10,000,000", func(in *Input) { in.Rooms = 20_000_000 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := ok
			tc.mod(&in)
			err := in.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want it to say %q", err, tc.want)
			}
			if _, err := Run(in, costs(t)); err == nil {
				t.Error("Run accepted what Validate refuses")
			}
		})
	}
}

// TestRoomsByHand: 3 rooms, Zipf 1, 11 viewers: H = 11/6, so 6, 3 and 2
// viewers; 11 msg/s proportional to viewers: 6, 3, 2; a budget of 4
// shows 4, 3, 2.
func TestRoomsByHand(t *testing.T) {
	bs := rooms(Input{Viewers: 11, Rooms: 3, Zipf: 1, Rate: 11, RateExp: 1, ThinBudget: 4})
	want := [][3]float64{{6, 6, 4}, {3, 3, 3}, {2, 2, 2}}
	if len(bs) != 3 {
		t.Fatalf("%d buckets, want 3", len(bs))
	}
	for i, b := range bs {
		near(t, "viewers", b.viewers, want[i][0], 1e-9)
		near(t, "rate", b.rate, want[i][1], 1e-9)
		near(t, "shown", b.shown, want[i][2], 1e-9)
	}
	// RateExp 0: every room the same rate whatever its size.
	for _, b := range rooms(Input{Viewers: 11, Rooms: 3, Zipf: 1, Rate: 9, RateExp: 0}) {
		near(t, "rate with rate-exp 0", b.rate, 3, 1e-9)
	}
}

// TestRoomsBucketsKeepTotals: the tail's buckets add up to every viewer
// and message, and the head stays one room per bucket.
func TestRoomsBucketsKeepTotals(t *testing.T) {
	in := Input{Viewers: 5e6, Rooms: 300000, Zipf: 1.1, Rate: 20000, RateExp: 0.8}
	bs := rooms(in)
	var v, r, n float64
	for _, b := range bs {
		v += b.n * b.viewers
		r += b.n * b.rate
		n += b.n
	}
	near(t, "viewers", v, in.Viewers, 1e-9)
	near(t, "rate", r, in.Rate, 1e-9)
	near(t, "rooms", n, float64(in.Rooms), 0)
	if len(bs) > 1000 || bs[0].n != 1 || bs[exactRanks-1].n != 1 {
		t.Errorf("%d buckets, head sizes %v %v", len(bs), bs[0].n, bs[exactRanks-1].n)
	}
	for i := 1; i < len(bs); i++ {
		if bs[i].viewers > bs[i-1].viewers {
			t.Fatalf("bucket %d has more viewers per room than %d", i, i-1)
		}
	}
}

// TestTick: a window grows only while it holds more than 256 messages,
// and doubling the window doubles what it holds, so a dispatch process
// runs at MinTick up to 51,200 msg/s (256 per 5 ms) and at 50 ms past it.
func TestTick(t *testing.T) {
	for _, tc := range []struct{ rate, min, want float64 }{
		{1000, 0.005, 0.005},
		{51200, 0.005, 0.005},
		{51300, 0.005, 0.05},
		{1e6, 0.005, 0.05},
		{30000, 0.01, 0.05}, // 300 in 10 ms
		{100, 0.1, 0.1},     // a MinTick past 50 ms stays
	} {
		near(t, "tick", tick(tc.rate, tc.min), tc.want, 1e-9)
	}
	near(t, "records of a quiet room", recordsPerS(0.01, 0.005), 0.01, 1e-4)
	near(t, "records of a busy room", recordsPerS(1e5, 0.005), 200, 1e-9)
}

func TestFairShare(t *testing.T) {
	for _, tc := range []struct {
		cores      float64
		need, want []float64
	}{
		{2, []float64{0.2, 1, 1, 1}, []float64{0.2, 0.6, 0.6, 0.6}},
		{2, []float64{0.5, 0.5}, []float64{0.5, 0.5}},
		{1, []float64{1, 1, 1, 1}, []float64{0.25, 0.25, 0.25, 0.25}},
		{2, []float64{0.1, 0.3, 1, 1}, []float64{0.1, 0.3, 0.8, 0.8}},
	} {
		got := fairShare(tc.cores, tc.need)
		for i := range got {
			near(t, "share", got[i], tc.want[i], 1e-9)
		}
	}
}
