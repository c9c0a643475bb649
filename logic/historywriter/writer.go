package historywriter

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// Writer errors.
var (
	ErrNoBus   = errors.New("history: writer needs a bus")
	ErrNoStore = errors.New("history: writer needs a store")
)

// Config configures a Writer.
type Config struct {
	// Bus carries the accepted stream. Required.
	Bus bus.Bus
	// Store receives the messages. Required.
	Store history.Store
	// Stream is the stream of JSON protocol.Message records. Zero value
	// means bus.StreamAccepted.
	Stream string
	// Group is the consumer group; the writer commits a record only after
	// its message is stored. Zero value means "history".
	Group string
	// BatchSize is the most messages one Append carries; a full batch is
	// written at once. Zero value means 1000.
	BatchSize int
	// FlushInterval is the longest a message waits in the buffer before it
	// is written. Zero value means 200 * time.Millisecond.
	FlushInterval time.Duration
	// MaxBuffered bounds the messages fetched but not yet stored: past it
	// the writer stops fetching (the bus keeps the rest) until the store
	// catches up. It may be passed by one fetch. Zero value means
	// 8 * BatchSize; it is at least BatchSize.
	MaxBuffered int
	// MinBackoff and MaxBackoff bound the wait between retries of a failed
	// Append; the wait doubles after each failure. Zero values mean
	// 100 * time.Millisecond and 5 * time.Second.
	MinBackoff, MaxBackoff time.Duration
	// ShutdownTimeout bounds the final flush when Run's context ends.
	// Zero value means 5 * time.Second.
	ShutdownTimeout time.Duration
	// Logger receives warnings about failed writes. Zero value means
	// slog.Default().
	Logger *slog.Logger
}

// Writer copies the accepted stream into a Store: it reads the stream as
// its own consumer group, appends messages in batches, and commits each
// batch's records only after the store took it, so a crash or an outage
// of the store loses nothing (redelivered messages collapse, since Append
// is idempotent). A failed batch is retried, with backoff, until it is
// stored; meanwhile the writer keeps fetching until MaxBuffered messages
// wait, then leaves the rest on the bus.
type Writer struct {
	cfg Config

	inserted  atomic.Uint64
	retries   atomic.Uint64
	malformed atomic.Uint64
	fenced    atomic.Uint64
	buffered  atomic.Int64
}

// Stats are the writer's counters, for metrics.
type Stats struct {
	// Inserted counts messages appended to the store.
	Inserted uint64
	// Retries counts failed Append attempts that were retried.
	Retries uint64
	// Malformed counts records that did not decode; they are skipped.
	Malformed uint64
	// Fenced counts records the fence rule rejected (written by a logic
	// worker after another took its partition over); they are skipped.
	Fenced uint64
	// Buffered is the number of messages fetched but not yet stored: the
	// writer's own lag behind what it has read.
	Buffered int64
}

// New returns a writer; Run starts it.
func New(cfg Config) (*Writer, error) {
	if cfg.Bus == nil {
		return nil, ErrNoBus
	}
	if cfg.Store == nil {
		return nil, ErrNoStore
	}
	if cfg.Stream == "" {
		cfg.Stream = bus.StreamAccepted
	}
	if cfg.Group == "" {
		cfg.Group = "history"
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 1000
	}
	if cfg.FlushInterval <= 0 {
		cfg.FlushInterval = 200 * time.Millisecond
	}
	if cfg.MaxBuffered <= 0 {
		cfg.MaxBuffered = 8 * cfg.BatchSize
	}
	cfg.MaxBuffered = max(cfg.MaxBuffered, cfg.BatchSize)
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 5 * time.Second
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = cfg.MinBackoff
	}
	if cfg.ShutdownTimeout <= 0 {
		cfg.ShutdownTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Writer{cfg: cfg}, nil
}

// Stats returns the writer's counters.
func (w *Writer) Stats() Stats {
	return Stats{
		Inserted:  w.inserted.Load(),
		Retries:   w.retries.Load(),
		Malformed: w.malformed.Load(),
		Fenced:    w.fenced.Load(),
		Buffered:  w.buffered.Load(),
	}
}

// Lag returns the number of messages fetched but not yet stored.
func (w *Writer) Lag() int64 { return w.buffered.Load() }

// batch is a unit of Append: its messages and the records to commit once
// they are stored (including records that did not decode).
type batch struct {
	msgs []protocol.Message
	recs []bus.Record
	err  error // set by the flusher when the batch was given up at shutdown
}

// Consumes names the stream and consumer group the writer reads (an App's
// drain waits for the group's commits).
func (w *Writer) Consumes() (stream, group string) { return w.cfg.Stream, w.cfg.Group }

// Run consumes the stream until ctx is done, then writes what it holds
// (within ShutdownTimeout), commits it and returns nil. It returns an
// error if the consumer cannot be opened or the bus closes.
func (w *Writer) Run(ctx context.Context) error {
	cons, err := w.cfg.Bus.Consumer(w.cfg.Stream, bus.ConsumerOptions{Group: w.cfg.Group})
	if err != nil {
		return fmt.Errorf("history: writer consumer: %w", err)
	}
	defer cons.Close()
	// The fence rule (pkg/bus/fence.go): records a stale logic worker
	// wrote after another took its partition over never reach the store.
	pr, _ := w.cfg.Bus.(bus.PartitionReader)
	r := &writerRun{w: w, ctx: ctx, cons: cons, ff: bus.NewFenceFilter(pr, w.cfg.Stream)}
	r.ff.OnDrop = func(p int, off int64, claim, current string) {
		w.cfg.Logger.Warn("history: fenced records dropped (a stale logic worker's writes)", "partition", p, "offset", off, "claim", claim, "current", current)
	}

	// The flusher appends batches in order; the consumer goroutine (this
	// one) fetches and commits, since a Consumer is used by one goroutine.
	// flushCtx outlives ctx by ShutdownTimeout so the last batches land.
	flushCtx, stopFlush := context.WithCancel(context.Background())
	defer stopFlush()
	r.todo = make(chan *batch, w.cfg.MaxBuffered/w.cfg.BatchSize+2)
	r.done = make(chan *batch, cap(r.todo))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer close(r.done)
		for b := range r.todo {
			b.err = w.store(flushCtx, b.msgs)
			r.done <- b
		}
	}()

	var runErr error
	for ctx.Err() == nil {
		if runErr = r.step(); runErr != nil {
			break
		}
	}

	// Shutdown: write what is held, within ShutdownTimeout.
	timer := time.AfterFunc(w.cfg.ShutdownTimeout, stopFlush)
	defer timer.Stop()
	r.hand()
	close(r.todo)
	for b := range r.done {
		r.commit(b)
	}
	wg.Wait()
	return runErr
}

// writerRun is the consumer side of one Writer.Run: the batch being
// filled, the batches handed to the flusher, and the commits of those it
// finished. Used by Run's goroutine only.
type writerRun struct {
	w    *Writer
	ctx  context.Context
	cons bus.Consumer
	ff   *bus.FenceFilter
	todo chan *batch // to the flusher
	done chan *batch // from the flusher, stored or failed

	cur      batch
	firstAt  time.Time // when cur got its first record
	inflight int       // batches sent to the flusher, not yet done
	gaveUp   bool      // a batch was not stored: commit nothing after it
}

// step is one turn of Run's loop: commit what the flusher finished, hand
// over a full or old batch, then wait for the store when the buffer is
// full, or fetch and take the next records. A non-nil error ends Run.
func (r *writerRun) step() error {
	w := r.w
	r.commitDone()
	if len(r.cur.msgs) >= w.cfg.BatchSize || (len(r.cur.recs) > 0 && time.Since(r.firstAt) >= w.cfg.FlushInterval) {
		if r.inflight < cap(r.todo) {
			r.hand()
		}
	}
	if w.buffered.Load() >= int64(w.cfg.MaxBuffered) || r.inflight >= cap(r.todo) {
		// Full: wait for the store, fetch nothing.
		if r.inflight == 0 {
			r.hand()
		}
		select {
		case <-r.ctx.Done():
		case b := <-r.done:
			r.inflight--
			r.commit(b)
		}
		return nil
	}
	wait := w.cfg.FlushInterval
	if len(r.cur.recs) > 0 {
		wait = time.Until(r.firstAt.Add(w.cfg.FlushInterval))
	}
	if wait < time.Millisecond {
		wait = time.Millisecond
	}
	fctx, cancel := context.WithTimeout(r.ctx, wait)
	recs, err := r.cons.Fetch(fctx)
	timedOut := fctx.Err() != nil
	cancel()
	if err != nil {
		if timedOut || errors.Is(err, context.DeadlineExceeded) {
			return nil // time to flush, or ctx is done
		}
		if errors.Is(err, bus.ErrClosed) {
			return fmt.Errorf("history: writer fetch: %w", err)
		}
		w.cfg.Logger.Warn("history: writer fetch", "err", err)
		sleep(r.ctx, w.cfg.MinBackoff)
		return nil
	}
	r.take(recs)
	return nil
}

// take adds fetched records to the current batch (their messages, when
// valid and not fenced), handing it over whenever it is full.
func (r *writerRun) take(recs []bus.Record) {
	w := r.w
	for _, rec := range recs {
		valid, err := r.ff.ValidWait(r.ctx, rec, func(err error) {
			w.cfg.Logger.Warn("history: writer: reading back the accepted partition for its fence failed, retrying", "partition", rec.Partition, "err", err)
		})
		if err != nil {
			return // ctx ended: the records not handed over come again
		}
		var m protocol.Message
		if !valid {
			w.fenced.Store(r.ff.Dropped()) // a fence marker, or a fenced record: nothing to store
		} else if err := bus.Unmarshal(rec.Value, &m); err != nil || m.Room == "" {
			w.malformed.Add(1)
			w.cfg.Logger.Warn("history: writer skips a malformed record", "partition", rec.Partition, "offset", rec.Offset, "err", err)
		} else {
			r.cur.msgs = append(r.cur.msgs, m)
			w.buffered.Add(1)
		}
		if len(r.cur.recs) == 0 {
			r.firstAt = time.Now()
		}
		r.cur.recs = append(r.cur.recs, rec)
		if len(r.cur.msgs) >= w.cfg.BatchSize && r.inflight < cap(r.todo) {
			r.hand()
		}
	}
}

// commitDone commits the batches the flusher finished, without waiting.
func (r *writerRun) commitDone() {
	for {
		select {
		case b := <-r.done:
			r.inflight--
			r.commit(b)
		default:
			return
		}
	}
}

// commit commits a finished batch's records, unless it (or one before
// it) was not stored.
func (r *writerRun) commit(b *batch) {
	r.w.buffered.Add(-int64(len(b.msgs)))
	if b.err != nil || r.gaveUp {
		// Not stored, or stored after one that was not: committing
		// would move the offsets past the unstored records.
		r.gaveUp = true
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(r.ctx), r.w.cfg.ShutdownTimeout)
	defer cancel()
	if err := r.cons.Commit(cctx, b.recs...); err != nil {
		// The records come again after a restart; Append collapses them.
		r.w.cfg.Logger.Warn("history: writer commit", "err", err)
	}
}

// hand sends the current batch, if it holds records, to the flusher.
func (r *writerRun) hand() {
	if len(r.cur.recs) == 0 {
		return
	}
	b := r.cur
	r.cur = batch{}
	r.inflight++
	r.todo <- &b
}

// store appends msgs, retrying with exponential backoff until it succeeds
// or ctx is done.
func (w *Writer) store(ctx context.Context, msgs []protocol.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	backoff := w.cfg.MinBackoff
	for {
		err := w.cfg.Store.Append(ctx, msgs)
		if err == nil {
			w.inserted.Add(uint64(len(msgs)))
			return nil
		}
		if ctx.Err() != nil {
			w.cfg.Logger.Warn("history: writer gave up a batch at shutdown; it stays on the bus", "msgs", len(msgs), "err", err)
			return err
		}
		w.retries.Add(1)
		w.cfg.Logger.Warn("history: writer append failed, retrying", "msgs", len(msgs), "backoff", backoff, "err", err)
		if !sleep(ctx, backoff) {
			return ctx.Err()
		}
		backoff = min(2*backoff, w.cfg.MaxBackoff)
	}
}

// sleep waits d or until ctx is done; it reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
