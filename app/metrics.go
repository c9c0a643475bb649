package app

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/danmaku-live/danmaku/logic/historywriter"
	"github.com/danmaku-live/danmaku/pkg/metric"
)

// registerWriterMetrics exports the history writer's Stats, so an
// operator sees the writer fall behind (deploy/prometheus/alerts.yml,
// DanmakuHistoryWriter*): danmaku_history_writer_inserted_total,
// _append_retries_total, _malformed_total, _fenced_total and the gauge
// danmaku_history_writer_buffered.
func registerWriterMetrics(reg prometheus.Registerer, w *historywriter.Writer) {
	ms := metric.New(reg, "history_writer")
	stat := func(f func(historywriter.Stats) uint64) func() float64 {
		return func() float64 { return float64(f(w.Stats())) }
	}
	ms.CounterFunc("inserted_total", "Messages the history writer appended to the store.",
		stat(func(s historywriter.Stats) uint64 { return s.Inserted }))
	ms.CounterFunc("append_retries_total", "Failed appends to the history store that were retried (the store is down or slow).",
		stat(func(s historywriter.Stats) uint64 { return s.Retries }))
	ms.CounterFunc("malformed_total", "Accepted records that did not decode; skipped.",
		stat(func(s historywriter.Stats) uint64 { return s.Malformed }))
	ms.CounterFunc("fenced_total", "Records skipped because a logic worker wrote them after another took its partition over.",
		stat(func(s historywriter.Stats) uint64 { return s.Fenced }))
	ms.GaugeFunc("buffered", "Messages the history writer fetched but has not stored yet: its lag behind what it read.",
		func() float64 { return float64(w.Stats().Buffered) })
}
