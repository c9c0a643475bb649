// Package metric makes the Prometheus collectors of danmaku's services:
// every name in the "danmaku" namespace under its service's subsystem
// (danmaku_gateway_connections, danmaku_logic_messages_in_total), each
// collector registered as it is made.
package metric

import "github.com/prometheus/client_golang/prometheus"

// Namespace is the first part of every metric name.
const Namespace = "danmaku"

// Set makes the collectors of one subsystem and registers each with its
// Registerer; with a nil Registerer it only makes them (tests that read no
// metrics). A Set is a value: copy it freely; its methods are safe for
// concurrent use as far as the Registerer's are. Registering a name twice
// panics (prometheus.Registerer.MustRegister), as a programming error.
type Set struct {
	reg       prometheus.Registerer
	subsystem string
}

// New returns the Set of subsystem ("gateway", "logic", "dispatch", ...)
// registering with reg (nil: none).
func New(reg prometheus.Registerer, subsystem string) Set {
	return Set{reg: reg, subsystem: subsystem}
}

func (s Set) opts(name, help string) prometheus.Opts {
	return prometheus.Opts{Namespace: Namespace, Subsystem: s.subsystem, Name: name, Help: help}
}

func (s Set) register(c prometheus.Collector) {
	if s.reg != nil {
		s.reg.MustRegister(c)
	}
}

// Counter makes and registers the counter danmaku_<subsystem>_<name>.
func (s Set) Counter(name, help string) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts(s.opts(name, help)))
	s.register(c)
	return c
}

// CounterVec makes and registers a counter with the given labels.
func (s Set) CounterVec(name, help string, labels ...string) *prometheus.CounterVec {
	c := prometheus.NewCounterVec(prometheus.CounterOpts(s.opts(name, help)), labels)
	s.register(c)
	return c
}

// Gauge makes and registers a gauge.
func (s Set) Gauge(name, help string) prometheus.Gauge {
	g := prometheus.NewGauge(prometheus.GaugeOpts(s.opts(name, help)))
	s.register(g)
	return g
}

// Histogram makes and registers a histogram with the given upper bounds.
func (s Set) Histogram(name, help string, buckets []float64) prometheus.Histogram {
	h := prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: Namespace, Subsystem: s.subsystem,
		Name: name, Help: help, Buckets: buckets})
	s.register(h)
	return h
}

// CounterFunc registers a counter whose value f reports at each scrape.
func (s Set) CounterFunc(name, help string, f func() float64) {
	s.register(prometheus.NewCounterFunc(prometheus.CounterOpts(s.opts(name, help)), f))
}

// GaugeFunc registers a gauge whose value f reports at each scrape.
func (s Set) GaugeFunc(name, help string, f func() float64) {
	s.register(prometheus.NewGaugeFunc(prometheus.GaugeOpts(s.opts(name, help)), f))
}
