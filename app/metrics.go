package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/danmaku-live/danmaku/logic/historywriter"
)

// registerWriterMetrics exports the history writer's Stats, so an
// operator sees the writer fall behind (deploy/prometheus/alerts.yml,
// DanmakuHistoryWriter*): danmaku_history_writer_inserted_total,
// _append_retries_total, _malformed_total, _fenced_total and the gauge
// danmaku_history_writer_buffered.
func registerWriterMetrics(reg prometheus.Registerer, w *historywriter.Writer) {
	opts := func(name, help string) prometheus.Opts {
		return prometheus.Opts{Namespace: "danmaku", Subsystem: "history_writer", Name: name, Help: help}
	}
	counter := func(o prometheus.Opts, f func(historywriter.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts(o), func() float64 { return float64(f(w.Stats())) })
	}
	reg.MustRegister(
		counter(opts("inserted_total", "Messages the history writer appended to the store."),
			func(s historywriter.Stats) uint64 { return s.Inserted }),
		counter(opts("append_retries_total", "Failed appends to the history store that were retried (the store is down or slow)."),
			func(s historywriter.Stats) uint64 { return s.Retries }),
		counter(opts("malformed_total", "Accepted records that did not decode; skipped."),
			func(s historywriter.Stats) uint64 { return s.Malformed }),
		counter(opts("fenced_total", "Records skipped because a logic worker wrote them after another took its partition over."),
			func(s historywriter.Stats) uint64 { return s.Fenced }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts(opts("buffered", "Messages the history writer fetched but has not stored yet: its lag behind what it read.")),
			func() float64 { return float64(w.Stats().Buffered) }),
	)
}
