package logic

import (
	"bytes"
	"context"
	"errors"
	"slices"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

// Claims on accepted partitions: how a worker fences the partitions it
// writes (the rule is in pkg/bus/fence.go).
//
// When the group gives this worker ingest partition p in a new generation,
// the worker claims accepted partition p before deciding any record of it:
// it appends a fence marker with a new claim id, then reads the partition
// up to that marker (seq.go) to learn each room's last seq and the message
// ids already accepted. Right after the marker lands it proves to the
// group that it still owns p (bus.Prover): a stale worker whose marker
// landed late, after the rightful owner's, fails the proof and gives p up
// before deciding anything. Every accepted record it writes carries the
// claim, and after each write it checks that no other marker landed
// between its previous write and this one (verify). If one did, its
// records are invalid for every reader, so it announces nothing about them
// (no ack, no reject, no held event) and commits nothing of p; then it
// proves ownership again: if the group still gives it p (the other marker
// was a stale worker's, or its own timed-out attempt that landed late), it
// claims p again and decides the same records anew; if not, it skips p
// until the group's next generation, and the new owner decides them.

// claim is this worker's claim on one accepted partition in the current
// generation. Owned by Run's goroutine, which lends each claim to one
// append goroutine at a time (process).
type claim struct {
	id    string
	end   int64 // offset after the marker or the last verified write
	since int   // records written under id
	from  int64 // ingest offset of the batch's first record of the partition
	lost  bool  // another worker owns the partition
	redo  bool  // fenced, but still ours: claim again and decide the batch anew
}

// claimAll claims, or claims again after bus.FenceEvery records, the
// accepted partitions of recs' ingest partitions. It retries until it
// succeeds or ctx ends: deciding without a claim could repeat a seq.
func (l *Logic) claimAll(ctx context.Context, recs []bus.Record) error {
	first := make(map[int]int64)
	for _, r := range recs {
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
		cl := l.claims[p]
		if cl != nil {
			cl.from = first[p]
		}
		switch {
		case cl == nil:
			if err := l.claim(ctx, p, first[p]); err != nil {
				return err
			}
		case !cl.lost && cl.since >= bus.FenceEvery:
			if err := l.reclaim(ctx, p, cl); err != nil {
				return err
			}
		}
	}
	return nil
}

// claim takes accepted partition p over: marker, proof of ownership, then
// the scan up to the marker.
func (l *Logic) claim(ctx context.Context, p int, firstIngest int64) error {
	start := time.Now()
	id, at, err := l.appendMarker(ctx, p)
	if err != nil {
		return err
	}
	cl := &claim{id: id, end: at + 1, from: firstIngest}
	l.claims[p] = cl
	if owned, err := l.prove(ctx, p, firstIngest); err != nil || !owned {
		if !owned && err == nil {
			l.lose(p, cl, "the group gave the partition to another worker before this claim landed")
		}
		return err
	}
	clear(l.inSeen[p])
	var n int
	err = l.retry(ctx, "reading the accepted partition", func() error {
		var err error
		n, err = l.scanPartition(ctx, p, firstIngest, at)
		return err
	})
	if err != nil {
		return err
	}
	l.scanRecs.Add(float64(n))
	l.cfg.Logger.Info("logic: took over partition", "partition", p, "claim", id, "marker", at, "scanned", n,
		"took", time.Since(start).Round(time.Millisecond))
	return nil
}

// prove asks the group whether this worker still owns ingest partition p
// (bus.Prover), retrying until it can tell or ctx ends. A consumer that
// cannot be asked counts as owning it.
func (l *Logic) prove(ctx context.Context, p int, offset int64) (bool, error) {
	if l.prover == nil {
		return true, nil
	}
	owned := true
	err := l.retry(ctx, "asking the group who owns the partition", func() error {
		pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		err := l.prover.Prove(pctx, p, offset)
		if errors.Is(err, bus.ErrNotOwner) {
			owned = false
			return nil
		}
		return err
	})
	return owned, err
}

// reclaim appends a fresh marker under an existing claim, so that readers
// starting mid-partition find one within bus.FenceEvery records.
func (l *Logic) reclaim(ctx context.Context, p int, cl *claim) error {
	id, at, err := l.appendMarker(ctx, p)
	if err != nil {
		return err
	}
	if err := l.verify(ctx, p, cl, at); err != nil || cl.lost {
		return err
	}
	if cl.redo {
		// Another marker landed before this one: read what it brought.
		delete(l.claims, p)
		return l.claim(ctx, p, cl.from)
	}
	cl.id, cl.end, cl.since = id, at+1, 0
	return nil
}

// appendMarker appends a marker with a new claim id to accepted partition
// p, retrying (each attempt with an id of its own: an attempt that failed
// may still land later, and must then fence what follows instead of
// re-establishing this claim) until it lands or ctx ends.
func (l *Logic) appendMarker(ctx context.Context, p int) (id string, at int64, err error) {
	err = l.retry(ctx, "writing a fence marker", func() error {
		id = bus.NewClaim()
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		at, err = l.pw.Append(actx, bus.StreamAccepted, p, bus.Record{Value: bus.FenceMarker(id, l.cfg.ID)})
		return err
	})
	return id, at, err
}

// appendFenced writes recs (already carrying cl's claim) to accepted
// partition p, retrying until they land or ctx ends, then verifies them.
// It reports whether they stand (false: cl is now lost or to be redone).
func (l *Logic) appendFenced(ctx context.Context, p int, cl *claim, recs []bus.Record) (bool, error) {
	var base int64
	attempt := 0
	err := l.retry(ctx, "publishing accepted messages", func() error {
		if attempt++; attempt > 1 {
			// The previous attempt may have landed though it failed (its
			// answer was lost): then take it instead of writing the
			// records twice.
			if at, ok, err := l.landed(ctx, p, cl, recs); err != nil || ok {
				base = at
				return err
			}
		}
		actx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		var err error
		base, err = l.pw.Append(actx, bus.StreamAccepted, p, recs...)
		if err != nil {
			l.m.publishErrors.Inc()
		}
		return err
	})
	if err != nil {
		return false, err
	}
	if err := l.verify(ctx, p, cl, base); err != nil {
		return false, err
	}
	if cl.lost || cl.redo {
		return false, nil
	}
	cl.end = base + int64(len(recs))
	cl.since += len(recs)
	return true, nil
}

// landed looks for recs, whole and in order, among what accepted partition
// p holds after cl.end, and returns where they start.
func (l *Logic) landed(ctx context.Context, p int, cl *claim, recs []bus.Record) (int64, bool, error) {
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	o, err := l.pr.Offsets(rctx, bus.StreamAccepted, p, "")
	if err != nil {
		return 0, false, err
	}
	got, err := l.pr.ReadRange(rctx, bus.StreamAccepted, p, cl.end, o.End)
	if err != nil {
		return 0, false, err
	}
	for i := range got {
		if i+len(recs) > len(got) {
			break
		}
		match := true
		for j := range recs {
			if got[i+j].Offset != got[i].Offset+int64(j) || !bytes.Equal(got[i+j].Value, recs[j].Value) {
				match = false
				break
			}
		}
		if match {
			return got[i].Offset, true, nil
		}
	}
	return 0, false, nil
}

// verify checks what landed in accepted partition p between cl.end and at,
// where this worker's latest write landed: a marker there (not this
// worker's) means the partition was taken over, and cl is marked lost.
func (l *Logic) verify(ctx context.Context, p int, cl *claim, at int64) error {
	if at == cl.end {
		return nil
	}
	if at < cl.end {
		// The partition's offsets went back (a broker that lost its
		// data): nothing is known any more.
		return l.fenced(ctx, p, cl, "offsets went back")
	}
	var gap []bus.Record
	err := l.retry(ctx, "reading back the accepted partition", func() error {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		defer cancel()
		var err error
		gap, err = l.pr.ReadRange(rctx, bus.StreamAccepted, p, cl.end, at)
		return err
	})
	if err != nil {
		return err
	}
	for _, r := range gap {
		if _, marker := bus.ParseFence(r.Value); marker {
			return l.fenced(ctx, p, cl, "another fence marker landed before this write")
		}
	}
	return nil
}

// fenced handles a write of p that does not stand: if the group still
// gives p to this worker, p is claimed again and the batch redone;
// otherwise p is lost for this generation.
func (l *Logic) fenced(ctx context.Context, p int, cl *claim, why string) error {
	l.m.fenced.Inc()
	owned, err := l.prove(ctx, p, cl.from)
	if err != nil {
		return err
	}
	if !owned {
		l.lose(p, cl, why)
		return nil
	}
	cl.redo = true
	l.cfg.Logger.Warn("logic: a write was fenced but the partition is still this worker's; claiming it again",
		"partition", p, "claim", cl.id, "why", why)
	return nil
}

// lose marks p lost for this generation.
func (l *Logic) lose(p int, cl *claim, why string) {
	cl.lost = true
	l.m.lost.Inc()
	l.cfg.Logger.Warn("logic: partition taken over; its records are left to the new owner",
		"partition", p, "claim", cl.id, "why", why)
}

// dropLost returns recs without the records of partitions lost in this
// generation.
func (l *Logic) dropLost(recs []bus.Record) []bus.Record {
	out := recs[:0:0]
	for _, r := range recs {
		if cl := l.claims[r.Partition]; cl == nil || !cl.lost {
			out = append(out, r)
		}
	}
	return out
}

// retry runs f until it succeeds or ctx ends, with backoff from 20 ms to
// 2 s between attempts.
func (l *Logic) retry(ctx context.Context, what string, f func() error) error {
	backoff := 20 * time.Millisecond
	for {
		err := f()
		if err == nil {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		l.cfg.Logger.Warn("logic: "+what+" failed, retrying", "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}
