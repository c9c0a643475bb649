package logic

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/metric"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// Seq recovery across failover.
//
// Ingest and accepted have the same partition count and the same keying
// (room), so the rooms of ingest partition p are exactly the rooms whose
// accepted messages are in accepted partition p. When a worker claims
// accepted partition p (claim.go) it reads its tail up to its own fence
// marker, applying the fence rule (pkg/bus/fence.go) so that only valid
// records count:
//
//   - from the history writer group's committed offset (everything before
//     it is in the history store, where SeqSource.LastSeq finds it), or
//     from the oldest retained record when that group has committed
//     nothing, to the marker. The highest seq per room seen there is a
//     floor for the room's next seq: lastSeq = max(floor, LastSeq).
//   - at least Config.ScanWindow records back, and further back until it
//     meets an accepted message made from an ingest record before the
//     first one this generation redelivers (each accepted value carries
//     its ingest offset, field "in"), or one older than DedupeTTL, or the
//     oldest retained record. Every message id seen seeds dedupe, so a
//     send that was published but whose ingest offset was not committed
//     (a worker crashed in between) is answered with its first seq when it
//     is redelivered, instead of being sequenced again. Ids older than the
//     window are found in Config.Dedupe, when one is configured.

// acceptedValue is the value of an accepted record: the message, plus the
// offset of the ingest record it was made from. Readers that decode it as
// a protocol.Message ignore In.
type acceptedValue struct {
	protocol.Message
	// In is the ingest offset (same partition number as the accepted
	// record). Nil in records written without it.
	In *int64 `json:"in,omitempty"`
	// F is the writer's claim (pkg/bus/fence.go).
	F string `json:"f,omitempty"`
}

// Errors of seq recovery.
var (
	ErrPartitionMismatch = errors.New("logic: ingest and accepted must have the same partition count")
)

// newScanCounter returns the counter of accepted records read at takeover.
func newScanCounter(reg prometheus.Registerer) prometheus.Counter {
	return metric.New(reg, "logic").Counter("takeover_scanned_records_total",
		"Accepted records read when taking over ingest partitions (seq and dedupe recovery).")
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

// scanPartition reads the tail of accepted partition p up to offset end
// (this worker's marker; see the comment at the top of this file) and
// returns how many records it read. firstIngest is the offset of the first
// ingest record of p this generation delivered.
func (l *Logic) scanPartition(ctx context.Context, p int, firstIngest, end int64) (int, error) {
	qctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	o, err := l.pr.Offsets(qctx, bus.StreamAccepted, p, l.cfg.SeqGroup)
	if err != nil {
		return 0, err
	}
	if o.End < end {
		// This worker's marker landed at end: a broker that reports less
		// is not caught up with itself (just restarted). Read later.
		return 0, fmt.Errorf("logic: accepted/%d ends at %d as the broker reports it, before this worker's marker at %d", p, o.End, end)
	}
	oldestTS := time.Now().Add(-l.cfg.DedupeTTL).UnixMilli()
	// Find how far back to read, then apply the fence rule forwards.
	chunks, err := l.readBack(qctx, p, o, firstIngest, end, oldestTS)
	if err != nil {
		return 0, err
	}
	return l.applyScanned(qctx, p, chunks, firstIngest, oldestTS)
}

// readBack reads accepted partition p backwards from end in windows that
// double, until a chunk reaches the partition's oldest record, a record
// accepted before firstIngest or one older than the dedupe TTL. The
// chunks come newest first.
func (l *Logic) readBack(qctx context.Context, p int, o bus.PartitionOffsets, firstIngest, end, oldestTS int64) ([][]bus.Record, error) {
	window := l.cfg.ScanWindow
	start := max(o.Oldest, end-window)
	switch {
	case o.Committed < 0:
		start = o.Oldest // nothing is known to be in history
	case o.Committed < start:
		start = max(o.Oldest, o.Committed)
	}
	var chunks [][]bus.Record
	for to := end; ; {
		// Through to: the records just before this worker's marker must
		// all be read, or the floor and dedupe miss the newest.
		recs, err := bus.ReadThrough(qctx, l.pr, bus.StreamAccepted, p, start, to)
		if err != nil {
			return nil, err
		}
		chunks = append(chunks, recs)
		if start <= o.Oldest || reachesBack(recs, firstIngest, oldestTS) {
			return chunks, nil
		}
		// The redelivered ingest records may have been accepted earlier
		// than the window reached: read the records before it too.
		to, window = start, 2*window
		start = max(o.Oldest, start-window)
	}
}

// reachesBack reports whether recs hold a record accepted from an ingest
// offset before firstIngest or one older than oldestTS: reading further
// back would find nothing the scan needs.
func reachesBack(recs []bus.Record, firstIngest, oldestTS int64) bool {
	done := false
	for _, r := range recs {
		var v acceptedValue
		if bus.Unmarshal(r.Value, &v) != nil {
			continue
		}
		if (v.In != nil && *v.In < firstIngest) || (v.Room != "" && v.TS < oldestTS) {
			done = true
		}
	}
	return done
}

// applyScanned walks the chunks oldest first, skips records the fence
// rule rejects, and learns from the rest each room's seq floor, the seqs
// of this generation's ingest offsets and the dedupe entries younger than
// oldestTS (also written to the durable store). It returns how many
// records it read.
func (l *Logic) applyScanned(qctx context.Context, p int, chunks [][]bus.Record, firstIngest, oldestTS int64) (int, error) {
	ff := bus.NewFenceFilter(l.pr, bus.StreamAccepted)
	now := time.Now()
	n := 0
	var durable []durableWrite
	for i := len(chunks) - 1; i >= 0; i-- {
		for _, r := range chunks[i] {
			n++
			valid, err := ff.Valid(qctx, r)
			if err != nil {
				return n, err
			}
			var v acceptedValue
			if !valid || bus.Unmarshal(r.Value, &v) != nil || v.Room == "" {
				continue
			}
			if v.Seq > l.floor[v.Room] {
				l.floor[v.Room] = v.Seq
			}
			if v.ID == "" && v.In != nil && *v.In >= firstIngest {
				if l.inSeen[p] == nil {
					l.inSeen[p] = make(map[int64]uint64)
				}
				l.inSeen[p][*v.In] = v.Seq
			}
			if v.ID != "" && v.TS >= oldestTS {
				key := dedupeKey(bus.Ingest{Room: v.Room, UID: v.UID, ID: v.ID})
				if _, ok := l.dedupe.get(key, now); !ok {
					l.dedupe.put(key, v.UID, dedupeEntry{seq: v.Seq}, now)
				}
				durable = append(durable, durableWrite{key: key, val: strconv.AppendUint(nil, v.Seq, 10),
					expires: time.UnixMilli(v.TS).Add(l.cfg.DedupeTTL)})
			}
		}
	}
	l.reStore(durable)
	return n, nil
}
