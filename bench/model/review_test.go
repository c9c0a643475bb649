package model

import (
	"math"
	"testing"
)

// TestBoxUnderOneCore: a box of less than a core (--box-cores 0.5) with
// fewer viewers than one harness worker holds still has a harness thread:
// the model must not index past the threads it made, and its figures stay
// finite.
func TestBoxUnderOneCore(t *testing.T) {
	c := costs(t)
	for _, cores := range []float64{0.25, 0.5, 0.9, 1.5} {
		in := Input{Viewers: 1000, Rooms: 1, Rate: 100, Gateways: 1, GatewayCores: 2,
			Box: &Box{Cores: cores, Harness: true, DurationS: 20}}
		o := run(t, in, c)
		for name, v := range map[string]float64{"gateway CPU": o.GW.Total(), "pass share": o.PassShare,
			"harness util": o.HarnessUtil, "p99": o.P99Ms} {
			if math.IsNaN(v) || math.IsInf(v, 0) || v <= 0 {
				t.Errorf("box of %v cores: %s %v", cores, name, v)
			}
		}
	}
}

// TestFitSkipsARunItCannotModel: a pass-share run the model cannot take
// (no accepted messages counted: rate 0) among good ones is left out of
// the box_pass_eff / box_write_wall_us fit, not made to fail every point
// of the grid (which kept the old values, labelled fitted, "rms +Inf %").
func TestFitSkipsARunItCannotModel(t *testing.T) {
	c := costs(t)
	runs, shares, _ := shareRuns(t, c, 0.8, 3)
	bad := shares[0]
	bad.In.Rate = 0 // a run whose accepted messages were not counted
	got, _, err := Fit(runs, append(shares, bad), c, "2026-12-07")
	if err != nil {
		t.Fatal(err)
	}
	near(t, "box_pass_eff", got.v("box_pass_eff"), 0.8, 0.011)
	near(t, "box_write_wall_us", got.v("box_write_wall_us"), 3, 0.11)
}
