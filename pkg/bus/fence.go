package bus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"time"
)

// Fencing the writers of a partition.
//
// Logic writes accepted partition p while its group assigns it ingest
// partition p, and the group can move p to another worker while the old one
// is still mid-batch (a rebalance, a scale-up, a process paused past its
// session timeout), or a write of the old owner can land late. Kafka offers
// no conditional append without transactions, so the fence lives in the log
// itself:
//
//   - A writer that takes a partition over first appends a fence marker, a
//     record {"fence":CLAIM} with a claim id of its own, new for every
//     attempt, and remembers the offset it landed at. Each data record it
//     writes afterwards carries the claim as field "f".
//   - The fence rule, which every reader applies alike (FenceFilter):
//     reading a partition in offset order, the current claim is the one of
//     the latest marker; a data record is valid only when its "f" equals
//     it. Before the first marker (none retained) every record is valid.
//     Markers themselves are not data.
//   - A writer knows where its records landed (PartitionWriter). When a
//     write does not land right after its previous one (or its marker),
//     it reads what came in between: a marker there means another writer
//     took the partition, and the records just written are invalid for
//     every reader; the writer must not announce them and gives the
//     partition up. No marker: what came in between is stale records of
//     older claims, invalid anyway, and the write stands.
//   - Before deciding anything, a new claimant reads the partition up to
//     its own marker (with the rule), so it knows every valid record
//     written before its claim. So valid records of a room carry strictly
//     increasing seqs in offset order, whoever wrote them, and one seq
//     names one message.
//   - The writer appends a fresh marker every FenceEvery records, so a
//     reader starting in the middle of a partition finds the current claim
//     by reading a bounded stretch backwards.

// FenceEvery is how many records a writer appends under one claim before it
// claims again, which bounds how far FenceFilter reads back.
const FenceEvery = 4096

// fenceTag is what the fence rule reads from a record.
type fenceTag struct {
	Fence string `json:"fence"` // set on markers
	F     string `json:"f"`     // set on data records
}

// NewClaim returns a new claim id.
func NewClaim() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// FenceMarker returns the value of a fence marker for claim, written by
// (a worker name, for people reading the log).
func FenceMarker(claim, by string) []byte {
	v, _ := Marshal(struct {
		Fence string `json:"fence"`
		By    string `json:"by,omitempty"`
	}{claim, by})
	return v
}

// ParseFence returns the claim of a marker (marker true) or the claim a
// data record carries (empty when it carries none).
func ParseFence(value []byte) (claim string, marker bool) {
	var t fenceTag
	if Unmarshal(value, &t) != nil {
		return "", false
	}
	if t.Fence != "" {
		return t.Fence, true
	}
	return t.F, false
}

// FenceFilter applies the fence rule to the records of one stream as a
// reader gets them. Records of a partition must come in offset order; when
// a record does not follow the previous one of its partition (the first
// one, or a jump after a rebalance or redelivery), the filter first finds
// the claim in force there by reading backwards through PartitionReader.
// A FenceFilter is used by one goroutine.
type FenceFilter struct {
	pr     PartitionReader // nil: no look-back, every jump starts unfenced
	stream string
	parts  map[int]*fenceState
	// dropped counts data records the rule rejected.
	dropped uint64
	// OnDrop, if set, hears of the first record the rule rejects after
	// each change of a partition's claim (for logs: a stale writer's
	// records are rare, a long run of them is a finding).
	OnDrop func(partition int, offset int64, claim, current string)
}

type fenceState struct {
	next   int64  // offset after the last record seen
	claim  string // current claim; "" while no marker is known
	warned bool   // OnDrop was called since claim was set
}

// NewFenceFilter returns a filter for stream, reading back through pr (may
// be nil).
func NewFenceFilter(pr PartitionReader, stream string) *FenceFilter {
	return &FenceFilter{pr: pr, stream: stream, parts: make(map[int]*fenceState)}
}

// Valid reports whether rec is a valid data record. Markers update the
// filter and are reported not valid (they are not data). It fails only
// when it had to read back and could not; the caller retries.
func (f *FenceFilter) Valid(ctx context.Context, rec Record) (bool, error) {
	st := f.parts[rec.Partition]
	if st == nil || rec.Offset != st.next {
		claim, err := f.claimAt(ctx, rec.Partition, rec.Offset)
		if err != nil {
			return false, err
		}
		st = &fenceState{claim: claim}
		f.parts[rec.Partition] = st
	}
	st.next = rec.Offset + 1
	claim, marker := ParseFence(rec.Value)
	if marker {
		st.claim, st.warned = claim, false
		return false, nil
	}
	if st.claim == "" || claim == st.claim {
		return true, nil
	}
	f.dropped++
	if f.OnDrop != nil && !st.warned {
		st.warned = true
		f.OnDrop(rec.Partition, rec.Offset, claim, st.claim)
	}
	return false, nil
}

// ValidWait is Valid, retrying a failed read-back with backoff (50 ms
// doubling to 5 s; onErr, if not nil, hears of each failure) until it
// succeeds or ctx ends, when it returns ctx's error.
func (f *FenceFilter) ValidWait(ctx context.Context, rec Record, onErr func(error)) (bool, error) {
	backoff := 50 * time.Millisecond
	for {
		ok, err := f.Valid(ctx, rec)
		if err == nil {
			return ok, nil
		}
		if onErr != nil {
			onErr(err)
		}
		select {
		case <-ctx.Done():
			return false, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// Dropped returns how many data records the rule rejected so far.
func (f *FenceFilter) Dropped() uint64 { return f.dropped }

// Reset forgets what the filter knows of partition p (the next record of p
// reads back again).
func (f *FenceFilter) Reset(p int) { delete(f.parts, p) }

// claimAt returns the claim of the latest marker before offset off of
// partition p, reading back FenceEvery*2 records at a time, or "" when no
// marker is retained there.
func (f *FenceFilter) claimAt(ctx context.Context, p int, off int64) (string, error) {
	if f.pr == nil {
		return "", nil
	}
	return LatestClaim(ctx, f.pr, f.stream, p, off)
}

// LatestClaim returns the claim of the latest fence marker of partition p
// of stream before offset off, or "" when none is retained.
//
// It fails rather than answer from less than the whole stretch before off:
// when the partition's end as the broker reports it is before off (a
// reader holds record off, so the broker is not caught up with itself,
// e.g. just after a restart), or a read ends short of the range asked for.
// An older marker found past a stretch that was not read would make every
// record of the current claim look fenced until the next marker.
func LatestClaim(ctx context.Context, pr PartitionReader, stream string, p int, off int64) (string, error) {
	o, err := pr.Offsets(ctx, stream, p, "")
	if err != nil {
		return "", err
	}
	if o.End < off {
		return "", fmt.Errorf("bus: %s/%d ends at %d as the broker reports it, before offset %d that was read: not caught up", stream, p, o.End, off)
	}
	window := int64(2 * FenceEvery)
	for to := off; to > o.Oldest; window *= 2 {
		from := max(o.Oldest, to-window)
		recs, err := ReadThrough(ctx, pr, stream, p, from, to)
		if err != nil {
			return "", err
		}
		for i := len(recs) - 1; i >= 0; i-- {
			if claim, marker := ParseFence(recs[i].Value); marker {
				return claim, nil
			}
		}
		to = from
	}
	return "", nil
}

// ReadThrough is pr.ReadRange(from, to) for a range the caller knows ends
// with a record at to-1 (a reader holds a record at or after to): it fails
// when the answer ends before that, as a broker that is not caught up with
// itself may serve, instead of returning a silently short range.
func ReadThrough(ctx context.Context, pr PartitionReader, stream string, p int, from, to int64) ([]Record, error) {
	if from >= to {
		return nil, nil
	}
	recs, err := pr.ReadRange(ctx, stream, p, from, to)
	if err != nil {
		return nil, err
	}
	if n := len(recs); n == 0 || recs[n-1].Offset != to-1 {
		got := int64(-1)
		if n > 0 {
			got = recs[n-1].Offset
		}
		return nil, fmt.Errorf("bus: reading %s/%d from %d to %d ended at %d: short read", stream, p, from, to, got)
	}
	return recs, nil
}
