package logic

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// Seq recovery across failover.
//
// Ingest and accepted have the same partition count and the same keying
// (room), so the rooms of ingest partition p are exactly the rooms whose
// accepted messages are in accepted partition p. Before a worker decides
// the first record of an ingest partition in a new group generation, it
// reads the tail of accepted partition p (scanPartition):
//
//   - from the history writer group's committed offset (everything before
//     it is in the history store, where SeqSource.LastSeq finds it), or
//     from the oldest retained record when that group has committed
//     nothing, to the partition's end. The highest seq per room seen there
//     is a floor for the room's next seq: lastSeq = max(floor, LastSeq).
//   - at least Config.ScanWindow records back, and further back until it
//     meets an accepted message made from an ingest record before the
//     first one this generation redelivers (each accepted value carries
//     its ingest offset, field "in"), or one older than DedupeTTL, or the
//     oldest retained record. Every message id seen seeds dedupe, so a
//     send that was published but whose ingest offset was not committed
//     (a worker crashed in between) is answered with its first seq when it
//     is redelivered, instead of being sequenced again.
//
// A worker that is still running after the group gave its partitions away
// (a stalled process that missed its session timeout) can publish after
// the new owner scanned; Kafka prevents that only with transactions, which
// this bus does not use. A crashed or killed worker cannot.

// acceptedValue is the value of an accepted record: the message, plus the
// offset of the ingest record it was made from. Readers that decode it as
// a protocol.Message ignore In.
type acceptedValue struct {
	protocol.Message
	// In is the ingest offset (same partition number as the accepted
	// record). Nil in records written without it.
	In *int64 `json:"in,omitempty"`
}

// Errors of seq recovery.
var (
	ErrPartitionMismatch = errors.New("logic: ingest and accepted must have the same partition count")
)

// newScanCounter returns the counter of accepted records read at takeover.
func newScanCounter(reg prometheus.Registerer) prometheus.Counter {
	c := prometheus.NewCounter(prometheus.CounterOpts{Namespace: "danmaku", Subsystem: "logic", Name: "takeover_scanned_records_total",
		Help: "Accepted records read when taking over ingest partitions (seq and dedupe recovery)."})
	if reg != nil {
		reg.MustRegister(c)
	}
	return c
}

// checkPartitions verifies that ingest and accepted are partitioned alike,
// when the bus can tell.
func (l *Logic) checkPartitions(ctx context.Context) error {
	if l.pr == nil {
		return nil
	}
	qctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	in, err := l.pr.Partitions(qctx, bus.StreamIngest)
	if err != nil {
		return err
	}
	acc, err := l.pr.Partitions(qctx, bus.StreamAccepted)
	if err != nil {
		return err
	}
	if in != acc {
		return fmt.Errorf("%w: ingest has %d, accepted %d", ErrPartitionMismatch, in, acc)
	}
	return nil
}

// recover scans the accepted partitions of recs' ingest partitions that
// were not scanned in this generation yet. It retries until it succeeds or
// ctx ends: deciding without the scan could repeat a seq.
func (l *Logic) recover(ctx context.Context, recs []bus.Record) error {
	if l.pr == nil {
		return nil
	}
	first := make(map[int]int64)
	for _, r := range recs {
		if l.scanned[r.Partition] {
			continue
		}
		if o, ok := first[r.Partition]; !ok || r.Offset < o {
			first[r.Partition] = r.Offset
		}
	}
	parts := make([]int, 0, len(first))
	for p := range first {
		parts = append(parts, p)
	}
	slices.Sort(parts)
	for _, p := range parts {
		backoff := 100 * time.Millisecond
		for {
			start := time.Now()
			n, err := l.scanPartition(ctx, p, first[p])
			if err == nil {
				l.scanned[p] = true
				l.scanRecs.Add(float64(n))
				l.cfg.Logger.Info("logic: took over partition", "partition", p, "scanned", n,
					"took", time.Since(start).Round(time.Millisecond))
				break
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			l.cfg.Logger.Warn("logic: reading the accepted partition failed, retrying", "partition", p, "err", err, "backoff", backoff)
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 5*time.Second)
		}
	}
	return nil
}

// scanPartition reads the tail of accepted partition p (see the comment at
// the top of this file) and returns how many records it read. firstIngest
// is the offset of the first ingest record of p this generation delivered.
func (l *Logic) scanPartition(ctx context.Context, p int, firstIngest int64) (int, error) {
	qctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	o, err := l.pr.Offsets(qctx, bus.StreamAccepted, p, l.cfg.SeqGroup)
	if err != nil {
		return 0, err
	}
	window := l.cfg.ScanWindow
	start := max(o.Oldest, o.End-window)
	switch {
	case o.Committed < 0:
		start = o.Oldest // nothing is known to be in history
	case o.Committed < start:
		start = max(o.Oldest, o.Committed)
	}
	now := time.Now()
	oldestTS := now.Add(-l.cfg.DedupeTTL).UnixMilli()
	n := 0
	covered := false
	for to := o.End; ; {
		recs, err := l.pr.ReadRange(qctx, bus.StreamAccepted, p, start, to)
		if err != nil {
			return n, err
		}
		n += len(recs)
		tooOld := false
		for _, r := range recs {
			var v acceptedValue
			if err := bus.Unmarshal(r.Value, &v); err != nil || v.Room == "" {
				continue
			}
			if v.Seq > l.floor[v.Room] {
				l.floor[v.Room] = v.Seq
			}
			if v.ID != "" && v.TS >= oldestTS {
				key := dedupeKey(bus.Ingest{Room: v.Room, UID: v.UID, ID: v.ID})
				if _, ok := l.dedupe.get(key, now); !ok {
					l.dedupe.put(key, dedupeEntry{seq: v.Seq}, now)
				}
			}
			if v.In != nil && *v.In < firstIngest {
				covered = true
			}
			if v.TS < oldestTS {
				tooOld = true
			}
		}
		if covered || tooOld || start <= o.Oldest {
			return n, nil
		}
		// The redelivered ingest records may have been accepted earlier
		// than the window reached: read the records before it too.
		to, window = start, 2*window
		start = max(o.Oldest, start-window)
	}
}
