// Prometheus metrics of a gateway: updated from every goroutine and loop.

package gateway

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the gateway's Prometheus collectors. Every field is safe for
// concurrent use.
type metrics struct {
	conns         prometheus.Gauge
	rooms         prometheus.Gauge
	handshakes    *prometheus.CounterVec // by result: ok, rejected, timeout
	closes        *prometheus.CounterVec // by reason
	sends         prometheus.Counter
	sendRejects   *prometheus.CounterVec // rejects decided at the gateway, by code
	batches       prometheus.Counter
	deliveries    prometheus.Counter
	dropped       prometheus.Counter
	slowConsumers prometheus.Counter
	restarts      prometheus.Counter
	historyLoads  *prometheus.CounterVec // by source: memory, store, failed
	sessionKicks  prometheus.Counter
	// What the dispatch goroutine reads from the bus, records and key +
	// value bytes, skipped rooms included: the share of the stream this
	// gateway reads (Config.Affinity); and the dispatch partitions it
	// wants now (with Config.Affinity; 0 without: it reads them all).
	dispatchRecords prometheus.Counter
	dispatchBytes   prometheus.Counter
	readPartitions  prometheus.Gauge
	// Overload shedding (shed.go).
	shed           prometheus.Counter // messages left out, once per gateway
	shedDeliveries prometheus.Counter // messages left out × local viewers of the room
	shedRooms      prometheus.Gauge   // rooms shedding now
}

func newMetrics(reg prometheus.Registerer, outbound *atomic.Int64) *metrics {
	m := &metrics{
		conns: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "connections",
			Help: "Open WebSocket connections, handshakes included."}),
		rooms: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "rooms",
			Help: "Rooms with at least one viewer on this gateway."}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "handshakes_total",
			Help: "WebSocket upgrades by result."}, []string{"result"}),
		closes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "closes_total",
			Help: "Connections closed by the gateway, by reason."}, []string{"reason"}),
		sends: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "sends_total",
			Help: "Send frames received from viewers."}),
		sendRejects: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "send_rejects_total",
			Help: "Sends rejected at the gateway before reaching logic, by code."}, []string{"code"}),
		batches: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "batches_total",
			Help: "Batches received from dispatch."}),
		dispatchRecords: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "dispatch_records_total",
			Help: "Records read from the dispatch stream, of rooms without viewers here too."}),
		dispatchBytes: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "dispatch_read_bytes_total",
			Help: "Key and value bytes of the records read from the dispatch stream."}),
		readPartitions: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "dispatch_partitions_read",
			Help: "Dispatch partitions this gateway reads with room affinity: those of its viewers' rooms and those in their grace (0 without affinity: it reads them all)."}),
		deliveries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "deliveries_total",
			Help: "Messages written to viewers (one per message per viewer)."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "dropped_batches_total",
			Help: "Batches not written to a viewer whose outbound backlog passed the soft cap."}),
		restarts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "engine_restarts_total",
			Help: "Times the event engine stopped by itself (accept failed) and was started again."}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "slow_consumer_closes_total",
			Help: "Viewers closed because their outbound backlog passed the hard cap."}),
		historyLoads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "history_loads_total",
			Help: "Join and resume history served, by source."}, []string{"source"}),
		sessionKicks: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "session_kicks_total",
			Help: "Kicks published because a user logged in again on the same device."}),
		shed: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "shed_messages_total",
			Help: "Messages left out of rooms' streams by overload shedding (the same for every viewer of the room on this gateway; covered by from/to marks, kept in history)."}),
		shedDeliveries: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "shed_deliveries_total",
			Help: "Deliveries overload shedding left out: each shed message times the room's viewers on this gateway."}),
		shedRooms: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "shedding_rooms",
			Help: "Rooms under overload handling on this gateway now: written in fewer, bigger frames, and thinned if that is not enough."}),
	}
	if reg != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: "danmaku", Subsystem: "gateway", Name: "outbound_bytes",
			Help: "Outbound backlog of all viewers in bytes, as last seen (the sum Config.OutboundBudget bounds)."},
			func() float64 { return float64(outbound.Load()) }))
		reg.MustRegister(m.conns, m.rooms, m.handshakes, m.closes, m.sends, m.sendRejects, m.batches,
			m.dispatchRecords, m.dispatchBytes, m.readPartitions,
			m.deliveries, m.dropped, m.slowConsumers, m.restarts, m.historyLoads, m.sessionKicks,
			m.shed, m.shedDeliveries, m.shedRooms)
	}
	return m
}
