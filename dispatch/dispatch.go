// Package dispatch is the fan-out stage: it consumes accepted messages as a
// consumer group, merges them per room per tick, encodes each room's batch
// once, and publishes it to the dispatch stream that every gateway reads.
// Offsets are committed only after the batches are published, so a crash
// re-publishes (gateways drop seqs they have seen) but never loses.
//
// The tick adapts to load: it starts at MinTick after a quiet period, so a
// lone message goes out within MinTick, and doubles up to MaxTick while
// batches are large, so a busy room costs one frame per MaxTick.
//
// Hot-room thinning (off by default) caps what viewers of a room are shown
// to a display budget in messages per second; see Config.ThinBudget.
package dispatch

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/metric"
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
	// ThinBudget is the display budget of every room in messages per
	// second. Past it a room's batch keeps the messages of highest
	// priority — system, then paid and highlighted, then those of mods,
	// streamers and services, then the rest, oldest first within a
	// priority; system messages are always kept — and covers the seqs it
	// left out with Batch.From/To so clients do not take them for a gap:
	// every left-out seq is covered within a tick, by a batch of no
	// messages when a tick's messages were all left out and the room then
	// went quiet.
	// Left-out messages are still acknowledged and stored in history.
	// SetBudget overrides it per room. Zero value means off: no thinning.
	ThinBudget int
	// MaxBatchBytes is the largest dispatch record: a room's batch of one
	// tick that encodes larger goes out as several batches, in seq order
	// (a thinned one keeps covering its whole range). It must stay below
	// the bus's record limit (Kafka's message.max.bytes and kafka-go's
	// Writer.BatchBytes, 1 MiB by default): a record over it is refused,
	// and dispatch would retry it for ever while every room waits. A room
	// a dispatch restart left seconds behind at 1000 msg/s needs this.
	// Zero value means 256 KiB.
	MaxBatchBytes int
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
	// last is the highest seq published per room and when; owned by Run's
	// goroutine. Rooms idle for roomIdle are forgotten (prune): a
	// redelivery of theirs is then published again, and gateways drop the
	// seqs they have seen.
	last      map[string]roomLast
	lastPrune time.Time
	// thin is the thinning state per room; owned by Run's goroutine.
	thin map[string]*thinState
	// uncovered holds the rooms whose last tick was left out entirely
	// (thinState.cover set): the next flush covers it with a batch of no
	// messages if no message of the room comes first. Owned by Run's
	// goroutine.
	uncovered map[string]struct{}
	// ff applies the fence rule to the accepted stream (pkg/bus/fence.go):
	// records a stale logic worker wrote after another took its partition
	// over are never dispatched. Owned by Run's goroutine.
	ff *bus.FenceFilter

	budgetMu sync.Mutex
	budgets  map[string]int // per-room overrides of ThinBudget
}

// roomLast is the highest seq published for a room, and when.
type roomLast struct {
	seq uint64
	at  time.Time
}

// roomIdle is how long dispatch remembers a quiet room's last seq.
const roomIdle = time.Hour

// prune forgets rooms idle for roomIdle, at most once a minute.
func (d *Dispatcher) prune(now time.Time) {
	if now.Sub(d.lastPrune) < time.Minute {
		return
	}
	d.lastPrune = now
	for room, l := range d.last {
		if now.Sub(l.at) >= roomIdle {
			delete(d.last, room)
			if st := d.thin[room]; st == nil || st.cover == 0 {
				delete(d.thin, room)
			}
		}
	}
}

// thinState is a room's display budget bookkeeping.
type thinState struct {
	tokens float64   // messages that may still be shown
	at     time.Time // when tokens was last topped up
	// cover..coverTo are the seqs left out and not yet covered by a
	// published batch (every message of a tick was left out); cover 0 =
	// none.
	cover, coverTo uint64
}

// SetBudget sets room's display budget in messages per second, overriding
// Config.ThinBudget: 0 returns the room to the default, a negative value
// turns thinning off for it. Safe for concurrent use.
func (d *Dispatcher) SetBudget(room string, perSecond int) {
	d.budgetMu.Lock()
	defer d.budgetMu.Unlock()
	if perSecond == 0 {
		delete(d.budgets, room)
		return
	}
	d.budgets[room] = perSecond
}

// budget returns room's display budget (0 = no thinning).
func (d *Dispatcher) budget(room string) int {
	d.budgetMu.Lock()
	b, ok := d.budgets[room]
	d.budgetMu.Unlock()
	if !ok {
		b = d.cfg.ThinBudget
	}
	return max(b, 0)
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
	if cfg.MaxBatchBytes == 0 {
		cfg.MaxBatchBytes = 256 << 10
	}
	if cfg.MaxBatchBytes < 0 {
		return nil, errors.New("dispatch: negative MaxBatchBytes")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	pr, _ := cfg.Bus.(bus.PartitionReader)
	ff := bus.NewFenceFilter(pr, bus.StreamAccepted)
	ff.OnDrop = func(p int, off int64, claim, current string) {
		cfg.Logger.Warn("dispatch: fenced records dropped (a stale logic worker's writes)", "partition", p, "offset", off, "claim", claim, "current", current)
	}
	return &Dispatcher{cfg: cfg, pub: cfg.Bus.Publisher(bus.StreamDispatch), m: newMetrics(cfg.Registerer),
		last: make(map[string]roomLast), thin: make(map[string]*thinState), budgets: make(map[string]int),
		uncovered: make(map[string]struct{}),
		ff:        ff}, nil
}

// Consumes names the stream and consumer group the dispatcher reads (an
// App's drain waits for the group's commits).
func (d *Dispatcher) Consumes() (stream, group string) { return bus.StreamAccepted, d.cfg.Group }

// Run dispatches until ctx is done; it returns nil then.
func (d *Dispatcher) Run(ctx context.Context) error {
	c, err := d.cfg.Bus.Consumer(bus.StreamAccepted, bus.ConsumerOptions{Group: d.cfg.Group})
	if err != nil {
		return err
	}
	defer c.Close()
	go d.runControl(ctx)
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
		// A tick with no records still runs when a room's last tick was
		// left out entirely: it publishes the batch that covers it.
		n := len(pending)
		if err := d.flush(ctx, pending); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		if n > 0 {
			if err := c.Commit(ctx, pending...); err != nil && ctx.Err() == nil {
				d.cfg.Logger.Warn("dispatch: commit failed", "err", err)
			}
		}
		pending = pending[:0]
		if len(d.uncovered) > 0 && !armed {
			timer.Reset(tick)
			armed = true
		}
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
	order, byRoom, err := d.group(ctx, recs)
	if err != nil {
		return err
	}
	covers := d.coverQuiet(byRoom)
	if len(order) == 0 && len(covers) == 0 {
		return nil
	}
	now := time.Now()
	out, msgs, thinned := d.batches(order, byRoom, covers, now)
	if err := d.publish(ctx, out); err != nil {
		return err
	}
	for _, room := range order {
		ms := byRoom[room]
		d.last[room] = roomLast{seq: ms[len(ms)-1].Seq, at: now}
	}
	d.prune(now)
	d.m.batches.Add(float64(len(out)))
	d.m.messages.Add(float64(msgs))
	if thinned > 0 {
		d.m.thinned.Add(float64(thinned))
	}
	return nil
}

// group decodes a tick's accepted records into each room's new messages
// (byRoom), rooms in the order they first appear. Fenced records, fence
// markers, malformed records and messages already dispatched are left
// out. It returns an error only when ctx ended while the fence was read.
func (d *Dispatcher) group(ctx context.Context, recs []bus.Record) (order []string, byRoom map[string][]protocol.Message, err error) {
	byRoom = make(map[string][]protocol.Message)
	for _, rec := range recs {
		valid, err := d.ff.ValidWait(ctx, rec, func(err error) {
			d.cfg.Logger.Warn("dispatch: reading back the accepted partition for its fence failed, retrying", "partition", rec.Partition, "err", err)
		})
		if err != nil {
			return nil, nil, err
		}
		if !valid {
			continue // a fence marker, or a fenced record
		}
		var m protocol.Message
		if err := bus.Unmarshal(rec.Value, &m); err != nil || m.Room == "" {
			d.cfg.Logger.Warn("dispatch: dropping malformed accepted record", "partition", rec.Partition, "offset", rec.Offset)
			continue
		}
		if m.Seq <= d.last[m.Room].seq {
			continue // redelivered after a restart or rebalance
		}
		if _, ok := byRoom[m.Room]; !ok {
			order = append(order, m.Room)
		}
		byRoom[m.Room] = append(byRoom[m.Room], m)
	}
	return order, byRoom, nil
}

// coverQuiet returns the batches for rooms whose last tick was left out
// entirely and that got nothing since (not in byRoom): a batch of no
// messages covers the seqs left out, so that they are covered within a
// tick even when the room goes quiet.
func (d *Dispatcher) coverQuiet(byRoom map[string][]protocol.Message) []bus.Record {
	var covers []bus.Record
	for room := range d.uncovered {
		if _, ok := byRoom[room]; ok {
			continue // this tick's batch covers them
		}
		delete(d.uncovered, room)
		if st := d.thin[room]; st != nil && st.cover != 0 {
			covers = append(covers, bus.Record{Key: room, Value: protocol.EncodeThinned(room, st.cover, st.coverTo, nil)})
			st.cover, st.coverTo = 0, 0
		}
	}
	return covers
}

// batches encodes each room's batch of the tick after covers, thinned to
// the room's display budget when it has one, and returns them with the
// messages they carry and the messages thinning left out.
func (d *Dispatcher) batches(order []string, byRoom map[string][]protocol.Message, covers []bus.Record, now time.Time) (out []bus.Record, msgs, thinned int) {
	out = append(make([]bus.Record, 0, len(order)+len(covers)), covers...)
	for _, room := range order {
		ms := byRoom[room]
		if b := d.budget(room); b > 0 || d.thin[room] != nil {
			shown, from, ok := d.thinRoom(room, ms, b, now)
			thinned += len(ms) - len(shown)
			msgs += len(shown)
			if ok {
				delete(d.uncovered, room)
				out = d.encode(out, room, from, ms[len(ms)-1].Seq, shown)
			} else {
				d.uncovered[room] = struct{}{}
			}
			continue
		}
		out = d.encode(out, room, 0, 0, ms)
		msgs += len(ms)
	}
	return out, msgs, thinned
}

// encode appends room's batch of ms to out — thinned, covering from..to,
// when to is not 0 — as one record, or as several in seq order when it
// would encode larger than MaxBatchBytes: halves, recursively, down to
// one message per record. The first part of a thinned batch covers from
// up to its last message, each next part from there on, and the last
// part up to to, so together they cover the same seqs.
func (d *Dispatcher) encode(out []bus.Record, room string, from, to uint64, ms []protocol.Message) []bus.Record {
	var v []byte
	if to != 0 {
		v = protocol.EncodeThinned(room, from, to, ms)
	} else {
		v = protocol.EncodeBatch(room, ms)
	}
	if len(v) <= d.cfg.MaxBatchBytes || len(ms) < 2 {
		return append(out, bus.Record{Key: room, Value: v})
	}
	d.m.splits.Inc()
	half := len(ms) / 2
	if to == 0 {
		out = d.encode(out, room, 0, 0, ms[:half])
		return d.encode(out, room, 0, 0, ms[half:])
	}
	mid := ms[half-1].Seq
	out = d.encode(out, room, from, mid, ms[:half])
	return d.encode(out, room, mid+1, to, ms[half:])
}

// publish writes out to the dispatch stream, retrying with a backoff
// (20 ms doubling to 2 s) until it succeeds or ctx ends.
func (d *Dispatcher) publish(ctx context.Context, out []bus.Record) error {
	backoff := 20 * time.Millisecond
	for {
		pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		err := d.pub.Publish(pctx, out...)
		cancel()
		if err == nil {
			return nil
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
}

// Priorities for thinning, highest first.
const (
	prioSystem = iota
	prioPaid
	prioStaff
	prioOther
	numPrio
)

func priority(m *protocol.Message) int {
	switch {
	case m.Kind == protocol.KindSystem:
		return prioSystem
	case m.Kind == protocol.KindPaid || m.Kind == protocol.KindHighlight:
		return prioPaid
	case m.Role == auth.RoleMod || m.Role == auth.RoleStreamer || m.Role == auth.RoleService:
		return prioStaff
	}
	return prioOther
}

// thinRoom applies room's display budget (perSecond, 0 = off) to ms, the
// room's messages of this tick in seq order. It returns the messages to
// show, the first seq the batch covers, and whether to publish a batch at
// all (not when every message was left out: the next batch covers them,
// or the next tick's flush with a batch of no messages, see flush).
func (d *Dispatcher) thinRoom(room string, ms []protocol.Message, perSecond int, now time.Time) (shown []protocol.Message, from uint64, publish bool) {
	st := d.thin[room]
	if perSecond <= 0 {
		// Thinning was turned off: cover what an earlier tick left out.
		delete(d.thin, room)
		if st != nil && st.cover != 0 {
			return ms, st.cover, true
		}
		return ms, ms[0].Seq, true
	}
	if st == nil {
		st = &thinState{tokens: float64(perSecond), at: now}
		d.thin[room] = st
	}
	st.tokens = min(float64(perSecond), st.tokens+float64(perSecond)*now.Sub(st.at).Seconds())
	st.at = now
	from = ms[0].Seq
	if st.cover != 0 {
		from = st.cover
	}
	keep := max(int(st.tokens), 0)
	if keep >= len(ms) {
		shown = ms
	} else {
		// Keep every message of the priorities above the cut and the
		// oldest of the priority at the cut; system messages always.
		var count [numPrio]int
		for i := range ms {
			count[priority(&ms[i])]++
		}
		cut, left := prioOther, max(keep, count[prioSystem])
		for p := range numPrio {
			if count[p] >= left {
				cut = p
				break
			}
			left -= count[p]
		}
		shown = make([]protocol.Message, 0, keep)
		for i := range ms {
			switch p := priority(&ms[i]); {
			case p < cut:
				shown = append(shown, ms[i])
			case p == cut && left > 0:
				shown = append(shown, ms[i])
				left--
			}
		}
	}
	st.tokens -= float64(len(shown))
	if len(shown) == 0 {
		st.cover, st.coverTo = from, ms[len(ms)-1].Seq
		return nil, from, false
	}
	st.cover, st.coverTo = 0, 0
	return shown, from, true
}

type metrics struct {
	batches       prometheus.Counter
	messages      prometheus.Counter
	publishErrors prometheus.Counter
	thinned       prometheus.Counter
	splits        prometheus.Counter
	tick          prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	ms := metric.New(reg, "dispatch")
	return &metrics{
		batches: ms.Counter("batches_total",
			"Batches published to the dispatch stream."),
		messages: ms.Counter("messages_total",
			"Messages published in batches."),
		publishErrors: ms.Counter("publish_errors_total",
			"Failed publishes (retried)."),
		thinned: ms.Counter("thinned_total",
			"Messages left out of batches by hot-room thinning (still in history)."),
		splits: ms.Counter("batch_splits_total",
			"Room batches split in two because they encoded larger than MaxBatchBytes (a backlog being caught up)."),
		tick: ms.Gauge("tick_seconds",
			"Current merge window."),
	}
}

// runControl applies rooms' display budgets from settings events on the
// control stream (the "display_budget" field of moderation settings).
// Runs on its own goroutine until ctx is done.
func (d *Dispatcher) runControl(ctx context.Context) {
	bus.FollowControl(ctx, d.cfg.Bus, func(ev bus.Control) {
		if ev.Op != bus.ControlSettings {
			return
		}
		var s struct {
			DisplayBudget int `json:"display_budget"`
		}
		if bus.Unmarshal(ev.Data, &s) == nil {
			d.SetBudget(ev.Room, s.DisplayBudget)
		}
	}, nil)
}
