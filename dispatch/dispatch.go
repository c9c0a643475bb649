// Package dispatch is the fan-out stage: it consumes accepted messages as a
// consumer group, merges them per room per tick, encodes each room's batch
// once, and publishes it to the dispatch stream that every gateway reads.
// Offsets are committed only after the batches are published, so a crash
// re-publishes (gateways drop seqs they have seen) but never loses.
//
// The tick adapts to load: it starts at MinTick after a quiet period, so a
// lone message goes out within MinTick, and doubles up to MaxTick while
// batches are large, so a busy room costs one frame per MaxTick.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// Config configures the dispatcher. Zero values take the documented
// defaults.
type Config struct {
	// Bus is read (accepted) and written (dispatch). Required.
	Bus bus.Bus
	// Group is the consumer group on the accepted stream. Zero value means
	// "dispatch".
	Group string
	// MinTick is the shortest merge window. Zero value means 5ms.
	MinTick time.Duration
	// MaxTick is the longest merge window, used under load. Zero value
	// means 50ms.
	MaxTick time.Duration
	// GrowAt is the number of messages per tick above which the window
	// doubles; below GrowAt/4 it halves. Zero value means 256.
	GrowAt int
	// Logger receives logs. Zero value means slog.Default().
	Logger *slog.Logger
	// Registerer receives metrics. Nil means they are not registered.
	Registerer prometheus.Registerer
}

// Dispatcher merges and publishes batches.
type Dispatcher struct {
	cfg Config
	pub bus.Publisher
	m   *metrics
	// last is the highest seq published per room; owned by Run's goroutine.
	last map[string]uint64
}

// New returns a dispatcher.
func New(cfg Config) (*Dispatcher, error) {
	if cfg.Bus == nil {
		return nil, errors.New("dispatch: Config.Bus is required")
	}
	if cfg.Group == "" {
		cfg.Group = "dispatch"
	}
	if cfg.MinTick == 0 {
		cfg.MinTick = 5 * time.Millisecond
	}
	if cfg.MaxTick == 0 {
		cfg.MaxTick = 50 * time.Millisecond
	}
	if cfg.MinTick > cfg.MaxTick {
		return nil, errors.New("dispatch: MinTick exceeds MaxTick")
	}
	if cfg.GrowAt == 0 {
		cfg.GrowAt = 256
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Dispatcher{cfg: cfg, pub: cfg.Bus.Publisher(bus.StreamDispatch), m: newMetrics(cfg.Registerer), last: make(map[string]uint64)}, nil
}

// Run dispatches until ctx is done; it returns nil then.
func (d *Dispatcher) Run(ctx context.Context) error {
	c, err := d.cfg.Bus.Consumer(bus.StreamAccepted, bus.ConsumerOptions{Group: d.cfg.Group})
	if err != nil {
		return err
	}
	defer c.Close()
	fetched := make(chan []bus.Record, 16)
	fetchErr := make(chan error, 1)
	go func() {
		for {
			recs, err := c.Fetch(ctx)
			if err != nil {
				fetchErr <- err
				return
			}
			select {
			case fetched <- recs:
			case <-ctx.Done():
				return
			}
		}
	}()

	tick := d.cfg.MinTick
	var pending []bus.Record
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	armed := false
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-fetchErr:
			if ctx.Err() != nil {
				return nil
			}
			return err
		case recs := <-fetched:
			pending = append(pending, recs...)
			if !armed {
				timer.Reset(tick)
				armed = true
			}
			continue
		case <-timer.C:
			armed = false
		}
		n := len(pending)
		if err := d.flush(ctx, pending); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if err := c.Commit(ctx, pending...); err != nil && ctx.Err() == nil {
			d.cfg.Logger.Warn("dispatch: commit failed", "err", err)
		}
		pending = pending[:0]
		switch {
		case n >= d.cfg.GrowAt:
			tick = min(2*tick, d.cfg.MaxTick)
		case n < d.cfg.GrowAt/4:
			tick = max(tick/2, d.cfg.MinTick)
		}
		d.m.tick.Set(tick.Seconds())
	}
}

// flush groups recs by room, encodes one batch per room and publishes all
// of them, retrying until it succeeds or ctx ends.
func (d *Dispatcher) flush(ctx context.Context, recs []bus.Record) error {
	var order []string
	byRoom := make(map[string][]protocol.Message)
	for _, rec := range recs {
		var m protocol.Message
		if err := bus.Unmarshal(rec.Value, &m); err != nil || m.Room == "" {
			d.cfg.Logger.Warn("dispatch: dropping malformed accepted record", "partition", rec.Partition, "offset", rec.Offset)
			continue
		}
		if m.Seq <= d.last[m.Room] {
			continue // redelivered after a restart or rebalance
		}
		if _, ok := byRoom[m.Room]; !ok {
			order = append(order, m.Room)
		}
		byRoom[m.Room] = append(byRoom[m.Room], m)
	}
	if len(order) == 0 {
		return nil
	}
	out := make([]bus.Record, 0, len(order))
	msgs := 0
	for _, room := range order {
		ms := byRoom[room]
		out = append(out, bus.Record{Key: room, Value: protocol.EncodeBatch(room, ms)})
		msgs += len(ms)
	}
	backoff := 20 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := d.pub.Publish(pctx, out...)
		cancel()
		if err == nil {
			break
		}
		d.m.publishErrors.Inc()
		d.cfg.Logger.Warn("dispatch: publish failed, retrying", "batches", len(out), "err", err)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
	for _, room := range order {
		ms := byRoom[room]
		d.last[room] = ms[len(ms)-1].Seq
	}
	d.m.batches.Add(float64(len(out)))
	d.m.messages.Add(float64(msgs))
	return nil
}

type metrics struct {
	batches       prometheus.Counter
	messages      prometheus.Counter
	publishErrors prometheus.Counter
	tick          prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		batches: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "dispatch", Name: "batches_total",
			Help: "Batches published to the dispatch stream."}),
		messages: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "dispatch", Name: "messages_total",
			Help: "Messages published in batches."}),
		publishErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "dispatch", Name: "publish_errors_total",
			Help: "Failed publishes (retried)."}),
		tick: prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "danmaku", Subsystem: "dispatch", Name: "tick_seconds",
			Help: "Current merge window."}),
	}
	if reg != nil {
		reg.MustRegister(m.batches, m.messages, m.publishErrors, m.tick)
	}
	return m
}
