package model

import (
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestMirrorsStageDefaults checks the model's copies of the stages'
// defaults (Input.withDefaults, tick) against the Config comments that
// state them, which the stages' own tests check against their code: the
// model's figures assume the binary's defaults.
func TestMirrorsStageDefaults(t *testing.T) {
	stated := func(dir, field string) string {
		t.Helper()
		w, ok := testenv.StatedDefault(t, dir, "Config", field)
		if !ok {
			t.Fatalf("%s Config.%s states no default", dir, field)
		}
		return strings.ReplaceAll(strings.TrimRight(w, ".,;:"), ",", "")
	}
	seconds := func(dir, field string) float64 {
		t.Helper()
		d, err := time.ParseDuration(stated(dir, field))
		if err != nil {
			t.Fatalf("%s Config.%s: %v", dir, field, err)
		}
		return d.Seconds()
	}
	number := func(dir, field string) float64 {
		t.Helper()
		n, err := strconv.ParseFloat(stated(dir, field), 64)
		if err != nil {
			t.Fatalf("%s Config.%s: %v", dir, field, err)
		}
		return n
	}
	in := Input{}.withDefaults()
	near(t, "FlushRate as gateway.Config.FlushRate", in.FlushRate, number("../../gateway", "FlushRate"), 0)
	near(t, "MaxFlushMs as gateway.Config.MaxFlushDelay", in.MaxFlushMs/1e3, seconds("../../gateway", "MaxFlushDelay"), 1e-12)
	near(t, "ShedDelayMs as gateway.Config.ShedDelay", in.ShedDelayMs/1e3, seconds("../../gateway", "ShedDelay"), 1e-12)
	near(t, "ShedFlushMs as gateway.Config.ShedFlushDelay", in.ShedFlushMs/1e3, seconds("../../gateway", "ShedFlushDelay"), 1e-12)
	src, err := os.ReadFile("../../gateway/shed.go")
	if err != nil {
		t.Fatal(err)
	}
	for name, v := range map[string]float64{"shedFrameBytes": shedFrameBytes, "shedMin": shedMin} {
		m := regexp.MustCompile(`(?m)^\s*` + name + `\s*=\s*(\d+)\s*$`).FindSubmatch(src)
		if m == nil {
			t.Fatalf("gateway/shed.go declares no %s", name)
		}
		if got, _ := strconv.ParseFloat(string(m[1]), 64); got != v {
			t.Errorf("the model's %s is %v, gateway/shed.go's %v", name, v, got)
		}
	}
	minTick := seconds("../../dispatch", "MinTick")
	near(t, "MinTickMs as dispatch.Config.MinTick", in.MinTickMs/1e3, minTick, 1e-12)
	maxTick := seconds("../../dispatch", "MaxTick")
	near(t, "tick of a flood as dispatch.Config.MaxTick", tick(1e9, minTick), maxTick, 1e-12)
	growAt := number("../../dispatch", "GrowAt")
	near(t, "tick at GrowAt per window", tick(growAt/minTick, minTick), minTick, 1e-12)
	if got := tick((growAt+1)/minTick, minTick); got <= minTick {
		t.Errorf("tick past GrowAt (dispatch.Config.GrowAt %v) per window: %v, want it to grow", growAt, got)
	}
}
