// Prometheus metrics of a gateway: updated from every goroutine and loop.

package gateway

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/danmaku-live/danmaku/pkg/metric"
)

// metrics are the gateway's Prometheus collectors. Every field is safe for
// concurrent use.
type metrics struct {
	conns       prometheus.Gauge
	rooms       prometheus.Gauge
	handshakes  *prometheus.CounterVec // by result: ok, rejected, timeout
	closes      *prometheus.CounterVec // by reason
	sends       prometheus.Counter
	sendRejects *prometheus.CounterVec // rejects decided at the gateway, by code
	batches     prometheus.Counter
	deliveries  prometheus.Counter
	// streamWrites and streamBytes are the writes of rooms' message
	// streams to viewers (one per viewer per pass, holding one or more
	// batch frames) and their bytes on the wire.
	streamWrites prometheus.Counter
	streamBytes  prometheus.Counter
	// passSeconds is the wall time the event loops spent in write passes
	// that wrote to someone, summed over the loops.
	passSeconds   prometheus.Counter
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
	// loopDelay is, per write pass that delivered something, the longest
	// a delivery waited on the loop, from being queued there to being
	// written to every member that lacked it (lag.go; what
	// Config.ShedDelay bounds).
	loopDelay prometheus.Histogram
	// dispatchAge is, per batch of a room with viewers here, how old its
	// oldest message was when the dispatch goroutine read it: from
	// logic's acceptance (Message.TS, logic's clock) to here.
	dispatchAge prometheus.Histogram
}

// delayBuckets are the buckets of the gateway's delay histograms, in
// seconds: fine around ShedDelay (500 ms by default), where the shed
// goroutine decides, since the bench interpolates quantiles within a
// bucket; up to a minute.
var delayBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.75, 1, 1.5, 2.5, 5, 10, 30, 60}

func newMetrics(reg prometheus.Registerer, outbound *atomic.Int64) *metrics {
	ms := metric.New(reg, "gateway")
	ms.GaugeFunc("outbound_bytes",
		"Outbound backlog of all viewers in bytes, as last seen (the sum Config.OutboundBudget bounds).",
		func() float64 { return float64(outbound.Load()) })
	return &metrics{
		conns: ms.Gauge("connections",
			"Open WebSocket connections, handshakes included."),
		rooms: ms.Gauge("rooms",
			"Rooms with at least one viewer on this gateway."),
		handshakes: ms.CounterVec("handshakes_total",
			"WebSocket upgrades by result.", "result"),
		closes: ms.CounterVec("closes_total",
			"Connections closed by the gateway, by reason.", "reason"),
		sends: ms.Counter("sends_total",
			"Send frames received from viewers."),
		sendRejects: ms.CounterVec("send_rejects_total",
			"Sends rejected at the gateway before reaching logic, by code.", "code"),
		batches: ms.Counter("batches_total",
			"Batches received from dispatch."),
		streamWrites: ms.Counter("stream_writes_total",
			"Writes of rooms' message streams to viewers: one per viewer per write pass, holding one or more batch frames (at most 256 messages each)."),
		streamBytes: ms.Counter("stream_write_bytes_total",
			"Bytes on the wire of those writes (compressed where the viewer chose deflate)."),
		passSeconds: ms.Counter("write_pass_seconds_total",
			"Wall time the event loops spent in write passes that wrote to viewers, summed over the loops: over the loops and the time, how busy they are writing (near 1 with the loop delay growing: the gateway cannot keep up)."),
		dispatchRecords: ms.Counter("dispatch_records_total",
			"Records read from the dispatch stream, of rooms without viewers here too."),
		dispatchBytes: ms.Counter("dispatch_read_bytes_total",
			"Key and value bytes of the records read from the dispatch stream."),
		readPartitions: ms.Gauge("dispatch_partitions_read",
			"Dispatch partitions this gateway reads with room affinity: those of its viewers' rooms and those in their grace (0 without affinity: it reads them all)."),
		deliveries: ms.Counter("deliveries_total",
			"Messages written to viewers (one per message per viewer)."),
		dropped: ms.Counter("dropped_batches_total",
			"Batches not written to a viewer whose outbound backlog passed the soft cap."),
		restarts: ms.Counter("engine_restarts_total",
			"Times the event engine stopped by itself (accept failed) and was started again."),
		slowConsumers: ms.Counter("slow_consumer_closes_total",
			"Viewers closed because their outbound backlog passed the hard cap."),
		historyLoads: ms.CounterVec("history_loads_total",
			"Join and resume history served, by source.", "source"),
		sessionKicks: ms.Counter("session_kicks_total",
			"Kicks published because a user logged in again on the same device."),
		shed: ms.Counter("shed_messages_total",
			"Messages left out of rooms' streams by overload shedding (the same for every viewer of the room on this gateway; covered by from/to marks, kept in history)."),
		shedDeliveries: ms.Counter("shed_deliveries_total",
			"Deliveries overload shedding left out: each shed message times the room's viewers on this gateway."),
		shedRooms: ms.Gauge("shedding_rooms",
			"Rooms under overload handling on this gateway now: written in fewer, bigger frames, and thinned if that is not enough."),
		loopDelay: ms.Histogram("loop_delay_seconds",
			"Per write pass of an event loop, the longest a batch waited from being queued on the loop to being written to every viewer there that lacked it (what ShedDelay bounds; a wide room's wait included).",
			delayBuckets),
		dispatchAge: ms.Histogram("dispatch_age_seconds",
			"Per batch read from the dispatch stream for a room with viewers here, the age of its oldest message: from logic's acceptance (its clock) to this read. What the pipeline and the bus add before the event loops.",
			delayBuckets),
	}
}
