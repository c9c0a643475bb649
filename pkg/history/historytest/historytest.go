// Package historytest is the shared test suite for history.Store
// implementations. Every store runs it: the in-memory default and
// pkg/history/chstore against a real ClickHouse.
package historytest

import (
	"context"
	"fmt"
	"reflect"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// baseMs is the TS of seq 0 in the messages the suite writes: a recent,
// fixed-offset time so stores that partition or expire by time keep them.
var baseMs = time.Now().Add(-time.Hour).UnixMilli() / 1000 * 1000

var roomCounter atomic.Uint64

// room returns a room id unique to this test run, so suites sharing a
// database never see each other's rows.
func room(name string) string {
	return fmt.Sprintf("%s-%d-%d", name, time.Now().UnixNano()%1e9, roomCounter.Add(1))
}

// msg returns message seq of room sent by uid, at baseMs + seq seconds.
func msg(room string, seq uint64, uid string) protocol.Message {
	return protocol.Message{
		Room: room,
		Seq:  seq,
		ID:   fmt.Sprintf("id-%d", seq),
		UID:  uid,
		Name: "name-" + uid,
		Text: fmt.Sprintf("text %d ✓", seq),
		TS:   baseMs + int64(seq)*1000,
	}
}

// msgs returns messages from..to (inclusive) of room sent by "u".
func msgs(room string, from, to uint64) []protocol.Message {
	var out []protocol.Message
	for s := from; s <= to; s++ {
		out = append(out, msg(room, s, "u"))
	}
	return out
}

func seqs(ms []protocol.Message) []uint64 {
	out := []uint64{}
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return out
}

func span(from, to uint64) []uint64 {
	out := []uint64{}
	for s := from; s <= to; s++ {
		out = append(out, s)
	}
	return out
}

func ctxT(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func mustAppend(t *testing.T, s history.Store, ms []protocol.Message) {
	t.Helper()
	if err := s.Append(ctxT(t), ms); err != nil {
		t.Fatalf("Append: %v", err)
	}
}

func mustRange(t *testing.T, s history.Store, room string, f history.Filter) []protocol.Message {
	t.Helper()
	got, err := s.Range(ctxT(t), room, f)
	if err != nil {
		t.Fatalf("Range(%+v): %v", f, err)
	}
	return got
}

func wantSeqs(t *testing.T, s history.Store, room string, f history.Filter, want []uint64) {
	t.Helper()
	if got := seqs(mustRange(t, s, room, f)); !slices.Equal(got, want) {
		t.Errorf("Range(%+v) seqs = %v, want %v", f, got, want)
	}
}

// subtest is one named part of the suite, run on a store of its own.
type subtest struct {
	name string
	f    func(t *testing.T, s history.Store)
}

// as returns s as an I (an optional interface of history), or skips the
// test when s does not implement it.
func as[I any](t *testing.T, s history.Store) I {
	t.Helper()
	i, ok := s.(I)
	if !ok {
		t.Skipf("store does not implement %v", reflect.TypeFor[I]())
	}
	return i
}

// rangeCase is a Range filter and the seqs it must return.
type rangeCase struct {
	name string
	f    history.Filter
	want []uint64
}

// wantRanges runs each case as a subtest reading room r of s.
func wantRanges(t *testing.T, s history.Store, r string, cases []rangeCase) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { wantSeqs(t, s, r, c.f, c.want) })
	}
}

// Run runs the suite. newStore returns a store for one subtest; it may
// return the same store every time, since every subtest uses its own rooms.
func Run(t *testing.T, newStore func(t *testing.T) history.Store) {
	for _, c := range []subtest{
		{"RoundTrip", testRoundTrip},
		{"AfterSeqLimit", testAfterSeqLimit},
		{"Tail", testTail},
		{"TimeRange", testTimeRange},
		{"IdempotentAppend", testIdempotentAppend},
		{"RoomsIsolated", testRoomsIsolated},
		{"EmptyRoom", testEmptyRoom},
		{"Delete", testDelete},
		{"Purge", testPurge},
		{"PurgeCoversLaterWrites", testPurgeCoversLaterWrites},
		{"EndPurgesKeepsLaterWrites", testEndPurgesKeepsLaterWrites},
		{"PurgeRacesWrites", testPurgeRacesWrites},
		{"LastSeq", testLastSeq},
		// analytics.go: for stores with Sessions, Analytics, VerdictLog
		{"Sessions", testSessions},
		{"Analytics", testAnalytics},
		{"PhraseTokens", testPhraseTokens},
		{"PhraseCaseFoldingBlocksEveryCase", testPhraseCaseFoldingBlocksEveryCase},
		{"Verdicts", testVerdicts},
	} {
		t.Run(c.name, func(t *testing.T) { c.f(t, newStore(t)) })
	}
}

// testRoundTrip is the subtest RoundTrip.
func testRoundTrip(t *testing.T, s history.Store) {
	r := room("rt")
	m := protocol.Message{Room: r, Seq: 1, ID: "m-1", UID: "u1", Name: "Ann ✓", Text: "hello \"world\" 弹幕",
		TS: baseMs, Kind: protocol.KindHighlight, Role: "mod", Color: "#ff0000", Mode: protocol.ModeTop, Size: protocol.SizeLarge}
	mustAppend(t, s, []protocol.Message{m})
	got := mustRange(t, s, r, history.Filter{})
	if len(got) != 1 || got[0] != m {
		t.Fatalf("Range = %+v, want [%+v]", got, m)
	}
}

// testAfterSeqLimit is the subtest AfterSeqLimit.
func testAfterSeqLimit(t *testing.T, s history.Store) {
	r := room("asl")
	mustAppend(t, s, msgs(r, 11, 20)) // out of order across calls
	mustAppend(t, s, msgs(r, 1, 10))
	wantRanges(t, s, r, []rangeCase{
		{"all", history.Filter{}, span(1, 20)},
		{"after0limit3", history.Filter{Limit: 3}, span(1, 3)},
		{"after5limit3", history.Filter{AfterSeq: 5, Limit: 3}, span(6, 8)},
		{"after18limit10", history.Filter{AfterSeq: 18, Limit: 10}, span(19, 20)},
		{"after19", history.Filter{AfterSeq: 19}, span(20, 20)},
		{"after20", history.Filter{AfterSeq: 20}, []uint64{}},
		{"after100", history.Filter{AfterSeq: 100, Limit: 5}, []uint64{}},
	})
}

// testTail is the subtest Tail.
func testTail(t *testing.T, s history.Store) {
	r := room("tail")
	mustAppend(t, s, msgs(r, 1, 20))
	wantRanges(t, s, r, []rangeCase{
		{"newest5", history.Filter{Tail: true, Limit: 5}, span(16, 20)},
		{"newest1", history.Filter{Tail: true, Limit: 1}, span(20, 20)},
		{"moreThanStored", history.Filter{Tail: true, Limit: 50}, span(1, 20)},
		{"afterSeqCaps", history.Filter{Tail: true, AfterSeq: 17, Limit: 5}, span(18, 20)},
		{"afterSeqWide", history.Filter{Tail: true, AfterSeq: 3, Limit: 5}, span(16, 20)},
		{"withTimeRange", history.Filter{Tail: true, Limit: 3, FromMs: baseMs + 5000, ToMs: baseMs + 10000}, span(7, 9)},
	})
}

// testTimeRange is the subtest TimeRange.
func testTimeRange(t *testing.T, s history.Store) {
	r := room("time")
	mustAppend(t, s, msgs(r, 1, 20)) // TS of seq n is baseMs + n s
	wantRanges(t, s, r, []rangeCase{
		{"fromInclusiveToExclusive", history.Filter{FromMs: baseMs + 5000, ToMs: baseMs + 10000}, span(5, 9)},
		{"fromBetween", history.Filter{FromMs: baseMs + 5001, ToMs: baseMs + 10001}, span(6, 10)},
		{"fromOnly", history.Filter{FromMs: baseMs + 18000}, span(18, 20)},
		{"toOnly", history.Filter{ToMs: baseMs + 3000}, span(1, 2)},
		{"withLimit", history.Filter{FromMs: baseMs + 5000, Limit: 2}, span(5, 6)},
		{"withAfterSeq", history.Filter{FromMs: baseMs + 5000, ToMs: baseMs + 10000, AfterSeq: 7}, span(8, 9)},
		{"empty", history.Filter{FromMs: baseMs + 100000}, []uint64{}},
		// Past DateTime's end (2106): a store must not wrap the bound.
		{"farFutureTo", history.Filter{FromMs: baseMs + 18000, ToMs: 9999999999999}, span(18, 20)},
		{"maxTo", history.Filter{ToMs: 1<<62 - 1, Limit: 2}, span(1, 2)},
		{"farFutureFrom", history.Filter{FromMs: 9999999999999}, []uint64{}},
	})
}

// testIdempotentAppend is the subtest IdempotentAppend.
func testIdempotentAppend(t *testing.T, s history.Store) {
	r := room("idem")
	mustAppend(t, s, msgs(r, 1, 5))
	mustAppend(t, s, msgs(r, 1, 5))
	mustAppend(t, s, append(msgs(r, 3, 6), msgs(r, 6, 6)...)) // overlap and a duplicate within one call
	got := mustRange(t, s, r, history.Filter{})
	if !slices.Equal(seqs(got), span(1, 6)) {
		t.Fatalf("seqs = %v, want 1..6 once each", seqs(got))
	}
	for _, m := range got {
		if m != msg(r, m.Seq, "u") {
			t.Errorf("message %d = %+v, want %+v", m.Seq, m, msg(r, m.Seq, "u"))
		}
	}
	wantSeqs(t, s, r, history.Filter{Tail: true, Limit: 2}, span(5, 6))
}

// testRoomsIsolated is the subtest RoomsIsolated.
func testRoomsIsolated(t *testing.T, s history.Store) {
	a, b := room("iso-a"), room("iso-b")
	mustAppend(t, s, append(msgs(a, 1, 3), msgs(b, 1, 5)...))
	wantSeqs(t, s, a, history.Filter{}, span(1, 3))
	wantSeqs(t, s, b, history.Filter{}, span(1, 5))
	for _, m := range mustRange(t, s, a, history.Filter{}) {
		if m.Room != a {
			t.Errorf("Range(%q) returned a message of room %q", a, m.Room)
		}
	}
}

// testEmptyRoom is the subtest EmptyRoom.
func testEmptyRoom(t *testing.T, s history.Store) {
	r := room("empty")
	for _, f := range []history.Filter{{}, {Limit: 10}, {Tail: true, Limit: 10}, {FromMs: 1, ToMs: baseMs * 2}} {
		if got := mustRange(t, s, r, f); len(got) != 0 {
			t.Errorf("Range(%+v) of an empty room = %v, want none", f, got)
		}
	}
	if err := s.Append(ctxT(t), nil); err != nil {
		t.Errorf("Append(nil) = %v, want nil", err)
	}
}

// testDelete is the subtest Delete.
func testDelete(t *testing.T, s history.Store) {
	d := as[history.Deleter](t, s)
	r := room("del")
	mustAppend(t, s, msgs(r, 1, 10))
	n, err := d.Delete(ctxT(t), r, []uint64{2, 3, 10, 99})
	if err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if n != 3 {
		t.Errorf("Delete reported %d, want 3 (seq 99 does not exist)", n)
	}
	wantSeqs(t, s, r, history.Filter{}, []uint64{1, 4, 5, 6, 7, 8, 9})
	wantSeqs(t, s, r, history.Filter{Tail: true, Limit: 3}, []uint64{7, 8, 9})
	wantSeqs(t, s, r, history.Filter{Limit: 3}, []uint64{1, 4, 5})
	all := mustRange(t, s, r, history.Filter{IncludeDeleted: true})
	if !slices.Equal(seqs(all), span(1, 10)) {
		t.Fatalf("IncludeDeleted seqs = %v, want 1..10", seqs(all))
	}
	for _, m := range all {
		wantDel := m.Seq == 2 || m.Seq == 3 || m.Seq == 10
		want := msg(r, m.Seq, "u")
		want.Deleted = wantDel
		if m != want {
			t.Errorf("IncludeDeleted message %d = %+v, want %+v", m.Seq, m, want)
		}
	}
	// A redelivered message does not come back to life.
	mustAppend(t, s, msgs(r, 1, 10))
	wantSeqs(t, s, r, history.Filter{}, []uint64{1, 4, 5, 6, 7, 8, 9})
	if n, err := d.Delete(ctxT(t), room("del-none"), []uint64{1}); err != nil || n != 0 {
		t.Errorf("Delete in an empty room = %d, %v; want 0, nil", n, err)
	}
}

// testPurge is the subtest Purge.
func testPurge(t *testing.T, s history.Store) {
	d := as[history.Deleter](t, s)
	r, other := room("purge"), room("purge-other")
	var ms []protocol.Message
	for seq := uint64(1); seq <= 10; seq++ {
		uid := "good"
		if seq%2 == 0 {
			uid = "bad"
		}
		ms = append(ms, msg(r, seq, uid), msg(other, seq, uid))
	}
	mustAppend(t, s, ms)
	got, err := d.Purge(ctxT(t), r, "bad", baseMs+4000, baseMs+100000) // TS >= seq 4's
	if err != nil {
		t.Fatalf("Purge: %v", err)
	}
	if want := []uint64{4, 6, 8, 10}; !slices.Equal(got, want) {
		t.Errorf("Purge = %v, want %v", got, want)
	}
	wantSeqs(t, s, r, history.Filter{}, []uint64{1, 2, 3, 5, 7, 9})
	wantSeqs(t, s, other, history.Filter{}, span(1, 10))
	got, err = d.Purge(ctxT(t), r, "nobody", 0, baseMs+100000)
	if err != nil || len(got) != 0 {
		t.Errorf("Purge of an unknown uid = %v, %v; want none", got, err)
	}
}

// testPurgeCoversLaterWrites is the subtest PurgeCoversLaterWrites.
//
// A purge lands between a message's accept and its write: the
// message reaches history after the purge (late, or redelivered
// after the writer restarted) and must come back deleted.
func testPurgeCoversLaterWrites(t *testing.T, s history.Store) {
	d := as[history.Deleter](t, s)
	r, other := room("purge-late"), room("purge-late-other")
	// Seq 12 is stored before the purge with a TS past its until (the
	// accepting clock ran ahead): stored already, it is purged too.
	mustAppend(t, s, []protocol.Message{msg(r, 1, "good"), msg(r, 2, "bad"), msg(r, 12, "bad")})
	got, err := d.Purge(ctxT(t), r, "bad", baseMs, baseMs+8000) // TS < seq 8's
	if err != nil || !slices.Equal(got, []uint64{2, 12}) {
		t.Fatalf("Purge = %v, %v; want [2 12]", got, err)
	}
	mustAppend(t, s, []protocol.Message{msg(r, 3, "good"), msg(r, 4, "bad"), msg(other, 4, "bad")})
	mustAppend(t, s, []protocol.Message{msg(r, 5, "bad"), msg(r, 8, "bad"), msg(r, 9, "good")})
	mustAppend(t, s, []protocol.Message{msg(r, 2, "bad"), msg(r, 4, "bad")}) // redelivered
	wantSeqs(t, s, r, history.Filter{}, []uint64{1, 3, 8, 9})
	wantSeqs(t, s, other, history.Filter{}, []uint64{4})
	for _, m := range mustRange(t, s, r, history.Filter{IncludeDeleted: true}) {
		if want := m.Seq == 2 || m.Seq == 4 || m.Seq == 5 || m.Seq == 12; m.Deleted != want {
			t.Errorf("seq %d Deleted = %v, want %v", m.Seq, m.Deleted, want)
		}
	}
	if got, err := d.Purge(ctxT(t), r, "good", baseMs+5000, baseMs+5000); err != nil || len(got) != 0 {
		t.Errorf("Purge of an empty range = %v, %v; want none", got, err)
	}
	wantSeqs(t, s, r, history.Filter{}, []uint64{1, 3, 8, 9})
}

// testEndPurgesKeepsLaterWrites is the subtest EndPurgesKeepsLaterWrites.
//
// A ban's purge reaches past the ban; the ban is lifted at once.
// The user's messages after the lift are stored live, those
// before it still deleted, other users' and rooms' purges stand,
// and a purge recorded after the lift reaches as far as it says.
func testEndPurgesKeepsLaterWrites(t *testing.T, s history.Store) {
	d := as[history.Deleter](t, s)
	r, other := room("purge-end"), room("purge-end-other")
	mustAppend(t, s, []protocol.Message{msg(r, 1, "bad")})
	for _, p := range []struct {
		room, uid string
	}{{r, "bad"}, {r, "else"}, {other, "bad"}} {
		if _, err := d.Purge(ctxT(t), p.room, p.uid, baseMs, baseMs+8000); err != nil { // TS < seq 8's
			t.Fatalf("Purge: %v", err)
		}
	}
	if err := d.EndPurges(ctxT(t), r, "bad", baseMs+5000); err != nil { // lifted at seq 5's TS
		t.Fatalf("EndPurges: %v", err)
	}
	mustAppend(t, s, []protocol.Message{msg(r, 3, "bad"), msg(r, 4, "else"), msg(r, 5, "bad"), msg(r, 6, "bad"), msg(other, 6, "bad")})
	wantSeqs(t, s, r, history.Filter{}, []uint64{5, 6})
	wantSeqs(t, s, other, history.Filter{}, nil)
	// Banned again after the lift: the new purge is whole.
	if got, err := d.Purge(ctxT(t), r, "bad", baseMs, baseMs+9000); err != nil || !slices.Equal(got, []uint64{5, 6}) {
		t.Fatalf("Purge after the lift = %v, %v; want [5 6]", got, err)
	}
	mustAppend(t, s, []protocol.Message{msg(r, 7, "bad"), msg(r, 9, "bad")})
	wantSeqs(t, s, r, history.Filter{}, []uint64{9})
	if err := d.EndPurges(ctxT(t), room("purge-end-none"), "nobody", baseMs); err != nil {
		t.Errorf("EndPurges with no purges: %v", err)
	}
}

// testPurgeRacesWrites is the subtest PurgeRacesWrites.
//
// Writes and a purge run at once, as a history writer and a
// moderator's ban do: every message the purge covers ends deleted,
// whichever came first.
func testPurgeRacesWrites(t *testing.T, s history.Store) {
	d := as[history.Deleter](t, s)
	for round := 0; round < 3; round++ {
		r := room("purge-race")
		const n = 30
		done := make(chan error, 1)
		go func() {
			for seq := uint64(1); seq <= n; seq++ {
				if err := s.Append(ctxT(t), []protocol.Message{msg(r, seq, "bad")}); err != nil {
					done <- err
					return
				}
			}
			done <- nil
		}()
		time.Sleep(time.Duration(round) * 5 * time.Millisecond)
		if _, err := d.Purge(ctxT(t), r, "bad", baseMs, baseMs+(n+1)*1000); err != nil {
			t.Fatalf("Purge: %v", err)
		}
		if err := <-done; err != nil {
			t.Fatalf("Append: %v", err)
		}
		wantSeqs(t, s, r, history.Filter{}, []uint64{})
		wantSeqs(t, s, r, history.Filter{IncludeDeleted: true}, span(1, n))
	}
}

// testLastSeq is the subtest LastSeq.
func testLastSeq(t *testing.T, s history.Store) {
	l := as[history.LastSeqer](t, s)
	r := room("last")
	if n, err := l.LastSeq(ctxT(t), r); err != nil || n != 0 {
		t.Fatalf("LastSeq of an empty room = %d, %v; want 0, nil", n, err)
	}
	mustAppend(t, s, msgs(r, 5, 9))
	mustAppend(t, s, msgs(r, 1, 4))
	mustAppend(t, s, msgs(room("last-other"), 1, 50))
	if n, err := l.LastSeq(ctxT(t), r); err != nil || n != 9 {
		t.Fatalf("LastSeq = %d, %v; want 9, nil", n, err)
	}
	if d, ok := s.(history.Deleter); ok {
		if _, err := d.Delete(ctxT(t), r, []uint64{9}); err != nil {
			t.Fatalf("Delete: %v", err)
		}
		if n, err := l.LastSeq(ctxT(t), r); err != nil || n != 9 {
			t.Errorf("LastSeq after deleting the newest = %d, %v; want 9 (seqs are never reused)", n, err)
		}
	}
}
