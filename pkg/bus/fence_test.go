package bus

import (
	"context"
	"testing"
)

// shortReader is a PartitionReader over a fixed log that, like a broker
// just after a restart, may report an end before records already read
// (end) and serve ranges only up to that end.
type shortReader struct {
	log []Record // offsets 0..len-1
	end int64
}

func (r *shortReader) Partitions(context.Context, string) (int, error) { return 1, nil }

func (r *shortReader) Offsets(context.Context, string, int, string) (PartitionOffsets, error) {
	return PartitionOffsets{Oldest: 0, End: r.end, Committed: -1}, nil
}

func (r *shortReader) ReadRange(_ context.Context, _ string, _ int, from, to int64) ([]Record, error) {
	to = min(to, r.end)
	var out []Record
	for o := from; o < to; o++ {
		out = append(out, r.log[o])
	}
	return out, nil
}

// TestLatestClaimNeverAnswersFromAShortRead: a reader holding record 6
// asks which claim is in force there. Marker "new" at offset 4 is it; a
// broker that reports (and serves) only up to offset 3 must not make the
// answer "old", the marker at 1: every record of "new" would then look
// fenced until the next marker (thousands of records).
func TestLatestClaimNeverAnswersFromAShortRead(t *testing.T) {
	data := func(claim string) Record { v, _ := Marshal(map[string]string{"f": claim}); return Record{Value: v} }
	log := []Record{data(""), {Value: FenceMarker("old", "a")}, data("old"), data("old"), {Value: FenceMarker("new", "b")}, data("new"), data("new")}
	for i := range log {
		log[i].Offset = int64(i)
	}
	r := &shortReader{log: log, end: int64(len(log))}
	ctx := context.Background()
	if claim, err := LatestClaim(ctx, r, StreamAccepted, 0, 6); err != nil || claim != "new" {
		t.Fatalf("whole log: claim %q err %v, want new", claim, err)
	}
	r.end = 3
	if claim, err := LatestClaim(ctx, r, StreamAccepted, 0, 6); err == nil {
		t.Fatalf("end reported at 3, record 6 read: claim %q, want an error (retry)", claim)
	}
	f := NewFenceFilter(r, StreamAccepted)
	if _, err := f.Valid(ctx, log[6]); err == nil {
		t.Fatal("FenceFilter decided record 6 from a short read-back")
	}
	r.end = int64(len(log)) // the broker caught up
	if ok, err := f.Valid(ctx, log[6]); err != nil || !ok {
		t.Fatalf("record 6 of the current claim: valid %v err %v", ok, err)
	}
}
