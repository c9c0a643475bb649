package metric

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// gathered returns reg's metrics: full name → value of its one series.
func gathered(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				got[mf.GetName()] = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[mf.GetName()] = m.GetGauge().GetValue()
			}
		}
		if mf.GetHelp() == "" {
			t.Errorf("%s: no help", mf.GetName())
		}
	}
	return got
}

func TestSetRegistersUnderNamespaceAndSubsystem(t *testing.T) {
	reg := prometheus.NewRegistry()
	s := New(reg, "stage")
	s.Counter("things_total", "Things.").Add(2)
	s.CounterVec("codes_total", "Codes.", "code").WithLabelValues("x").Inc()
	s.Gauge("level", "Level.").Set(7)
	s.CounterFunc("seen_total", "Seen.", func() float64 { return 3 })
	s.GaugeFunc("backlog", "Backlog.", func() float64 { return 4 })
	want := map[string]float64{
		"danmaku_stage_things_total": 2,
		"danmaku_stage_codes_total":  1,
		"danmaku_stage_level":        7,
		"danmaku_stage_seen_total":   3,
		"danmaku_stage_backlog":      4,
	}
	got := gathered(t, reg)
	if len(got) != len(want) {
		t.Errorf("gathered %v, want %v", got, want)
	}
	for name, v := range want {
		if got[name] != v {
			t.Errorf("%s = %v, want %v", name, got[name], v)
		}
	}
}

func TestSetWithoutRegistererOnlyMakes(t *testing.T) {
	s := New(nil, "stage")
	c := s.Counter("things_total", "Things.")
	c.Inc()
	c.Inc() // usable, and nothing registered twice
	s.GaugeFunc("backlog", "Backlog.", func() float64 { return 1 })
}

func TestSetPanicsOnADuplicateName(t *testing.T) {
	s := New(prometheus.NewRegistry(), "stage")
	s.Counter("things_total", "Things.")
	defer func() {
		if recover() == nil {
			t.Fatal("registering danmaku_stage_things_total twice did not panic")
		}
	}()
	s.Counter("things_total", "Things again.")
}
