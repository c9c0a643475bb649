package logic

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/danmaku-live/danmaku/pkg/metric"
)

// metrics are the worker's Prometheus collectors.
type metrics struct {
	in            prometheus.Counter
	accepted      prometheus.Counter
	rejected      *prometheus.CounterVec
	held          prometheus.Counter
	dups          prometheus.Counter
	publishErrors prometheus.Counter
	fenced        prometheus.Counter
	lost          prometheus.Counter
	unannounced   prometheus.Counter
	dedupeErrors  prometheus.Counter
	// rejectsForgotten counts rejects not remembered (RejectsPerUser).
	rejectsForgotten prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	ms := metric.New(reg, "logic")
	return &metrics{
		in: ms.Counter("messages_in_total",
			"Sends consumed from the ingest stream."),
		accepted: ms.Counter("messages_accepted_total",
			"Messages accepted and given a seq."),
		rejected: ms.CounterVec("messages_rejected_total",
			"Messages rejected, by code.", "code"),
		held: ms.Counter("messages_held_total",
			"Messages held for review."),
		dups: ms.Counter("duplicates_total",
			"Retries of an already accepted message id, answered from dedupe."),
		publishErrors: ms.Counter("publish_errors_total",
			"Failed publishes to the bus (retried)."),
		fenced: ms.Counter("writes_fenced_total",
			"Writes to the accepted stream that another fence marker made invalid (nothing about them was announced)."),
		lost: ms.Counter("partitions_lost_total",
			"Partitions this worker gave up mid-generation because the group had given them to another worker (their records were left to it)."),
		unannounced: ms.Counter("answers_withheld_total",
			"Rejects and held answers not sent because the ingest commit was refused (the partition's new owner answers)."),
		dedupeErrors: ms.Counter("dedupe_store_errors_total",
			"Failed lookups and writes of the shared dedupe store (logic went on with its own memory)."),
		rejectsForgotten: ms.Counter("rejects_not_remembered_total",
			"Rejects answered but not remembered for retries: the user already had RejectsPerUser remembered."),
	}
}
