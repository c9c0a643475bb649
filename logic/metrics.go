package logic

import "github.com/prometheus/client_golang/prometheus"

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
	m := &metrics{
		in: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "logic", Name: "messages_in_total",
			Help: "Sends consumed from the ingest stream."}),
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "logic", Name: "messages_accepted_total",
			Help: "Messages accepted and given a seq."}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "logic", Name: "messages_rejected_total",
			Help: "Messages rejected, by code."}, []string{"code"}),
		held: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "logic", Name: "messages_held_total",
			Help: "Messages held for review."}),
		dups: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "logic", Name: "duplicates_total",
			Help: "Retries of an already accepted message id, answered from dedupe."}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "logic", Name: "publish_errors_total",
			Help: "Failed publishes to the bus (retried)."}),
		fenced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "logic", Name: "writes_fenced_total",
			Help: "Writes to the accepted stream that another fence marker made invalid (nothing about them was announced)."}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "logic", Name: "partitions_lost_total",
			Help: "Partitions this worker gave up mid-generation because the group had given them to another worker (their records were left to it)."}),
		unannounced: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "logic", Name: "answers_withheld_total",
			Help: "Rejects and held answers not sent because the ingest commit was refused (the partition's new owner answers)."}),
		dedupeErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "logic", Name: "dedupe_store_errors_total",
			Help: "Failed lookups and writes of the shared dedupe store (logic went on with its own memory)."}),
		rejectsForgotten: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "logic", Name: "rejects_not_remembered_total",
			Help: "Rejects answered but not remembered for retries: the user already had RejectsPerUser remembered."}),
	}
	if reg != nil {
		reg.MustRegister(m.in, m.accepted, m.rejected, m.held, m.dups, m.publishErrors, m.fenced, m.lost, m.unannounced, m.dedupeErrors, m.rejectsForgotten)
	}
	return m
}
