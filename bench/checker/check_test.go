package checker

import (
	"slices"
	"strings"
	"testing"
	"time"
)

// hb builds histories for the tests: times are seconds after t0.
type hb struct {
	h  History
	t0 time.Time
}

func newHB() *hb {
	t0 := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	return &hb{h: History{Start: t0}, t0: t0}
}

func (b *hb) at(s float64) time.Time { return b.t0.Add(time.Duration(s * float64(time.Second))) }

func msg(id string) Msg { return Msg{UID: "u-" + id[:2], ID: id, Text: "text of " + id} }

func (b *hb) send(s float64, room, id string) *hb {
	b.h.Sends = append(b.h.Sends, Send{Sender: "s-" + id[:2], Room: room, Msg: msg(id), At: b.at(s)})
	return b
}

func (b *hb) ack(s float64, room, id string, seq uint64) *hb {
	m := msg(id)
	b.h.Answers = append(b.h.Answers, Answer{Sender: "s-" + id[:2], Room: room, UID: m.UID, ID: id, At: b.at(s), Kind: Ack, Seq: seq})
	return b
}

func (b *hb) reject(s float64, room, id, code string) *hb {
	m := msg(id)
	b.h.Answers = append(b.h.Answers, Answer{Sender: "s-" + id[:2], Room: room, UID: m.UID, ID: id, At: b.at(s), Kind: Reject, Code: code})
	return b
}

func (b *hb) joined(s float64, viewer, room string, resume, seq uint64) *hb {
	b.h.Events = append(b.h.Events, Event{Viewer: viewer, Room: room, At: b.at(s), Kind: Joined, Seq: seq, Resume: resume})
	return b
}

func (b *hb) hist(s float64, viewer, room string, from, to uint64, complete bool) *hb {
	b.h.Events = append(b.h.Events, Event{Viewer: viewer, Room: room, At: b.at(s), Kind: HistoryFrame, From: from, To: to, Complete: complete})
	return b
}

func (b *hb) deliver(s float64, viewer, room, id string, seq uint64) *hb {
	b.h.Events = append(b.h.Events, Event{Viewer: viewer, Room: room, At: b.at(s), Kind: Delivered, Seq: seq, Msg: msg(id)})
	return b
}

func (b *hb) event(e Event, s float64) *hb {
	e.At = b.at(s)
	b.h.Events = append(b.h.Events, e)
	return b
}

func (b *hb) row(room, id string, seq uint64) *hb {
	b.h.Rows = append(b.h.Rows, Row{Room: room, Seq: seq, Msg: msg(id)})
	return b
}

func (b *hb) note(s float64, room, text string) *hb {
	b.h.Notes = append(b.h.Notes, Note{At: b.at(s), Room: room, Text: text})
	return b
}

// clean is a history that keeps every promise: two senders, two viewers
// (one resumes after a disconnect), one rejected send, history read back.
func clean() *hb {
	b := newHB()
	b.h.HistoryRooms = []string{"r"}
	b.joined(0, "v1", "r", 0, 0).hist(0, "v1", "r", 1, 0, true)
	b.joined(0, "v2", "r", 0, 0).hist(0, "v2", "r", 1, 0, true)
	ids := []string{"a1xx", "b1xx", "a2xx", "b2xx"}
	for i, id := range ids {
		s := float64(i + 1)
		seq := uint64(i + 1)
		b.send(s, "r", id).ack(s+0.1, "r", id, seq).deliver(s+0.2, "v1", "r", id, seq)
		if i < 2 {
			b.deliver(s+0.2, "v2", "r", id, seq)
		}
		b.row("r", id, seq)
	}
	// v2 missed 3 and 4 while disconnected, then resumed from 2.
	b.joined(5, "v2", "r", 2, 4).deliver(5, "v2", "r", "a2xx", 3).deliver(5, "v2", "r", "b2xx", 4).hist(5, "v2", "r", 3, 4, true)
	b.send(6, "r", "c1xx").reject(6.1, "r", "c1xx", "unavailable").reject(6.5, "r", "c1xx", "rate_limited")
	// A re-send of an acked id much later gets the same seq.
	b.send(60, "r", "a1xx").ack(60.1, "r", "a1xx", 1)
	return b
}

func TestCleanHistory(t *testing.T) {
	r := Check(clean().h)
	if !r.OK() {
		for _, v := range r.Violations {
			t.Error(v)
		}
	}
	s := r.Stats
	if s.Acked != 4 || s.Rejected != 1 || s.Attempts != 6 || s.Streams != 2 || s.Deliveries != 8 || s.Owed != 8 || s.Rows != 4 {
		t.Errorf("stats %+v", s)
	}
	if !strings.Contains(r.Summary(), "violations 0") {
		t.Errorf("summary %q", r.Summary())
	}
}

// TestViolations breaks each invariant in a copy of the clean history and
// expects exactly the violation kinds it breaks, with a story naming the
// evidence.
func TestViolations(t *testing.T) {
	for _, tc := range []struct {
		name  string
		edit  func(b *hb)
		kinds []string
		story []string // substrings of the first violation's story
	}{
		{"one seq two messages", func(b *hb) {
			// A stale owner sequenced another message at seq 4: v2 got it,
			// history kept it, and b2xx's sender was acked with 4.
			b.h.Events[len(b.h.Events)-2].Msg = msg("z9xx")
			b.h.Rows[3].Msg = msg("z9xx")
			b.send(4, "r", "z9xx").ack(4.1, "r", "z9xx", 4)
		}, []string{KindSeqConflict, KindMissing, KindMissing, KindHistoryLost}, []string{"seq 4 names 2 messages", "ack to s-b2", "ack to s-z9"}},
		{"ack then reject", func(b *hb) {
			b.reject(4.3, "r", "b2xx", "rate_limited")
		}, []string{KindAckAndReject}, []string{"ack seq 4", "reject rate_limited"}},
		{"two acks with two seqs", func(b *hb) {
			// A re-send after the dedupe was forgotten, sequenced again.
			b.send(70, "r", "b1xx").ack(70.1, "r", "b1xx", 5).deliver(70.2, "v1", "r", "b1xx", 5).deliver(70.2, "v2", "r", "b1xx", 5).row("r", "b1xx", 5)
		}, []string{KindIDTwoSeqs, KindTwoAcks, KindHistoryTwice}, []string{"at 2 seqs", "seq 2", "seq 5"}},
		{"two acks: the story shows what happened at both acks", func(b *hb) {
			b.note(1.5, "", "redis down").note(50, "", "logic-3 joins")
			b.send(70, "r", "b1xx").ack(70.1, "r", "b1xx", 5)
			b.h.HistoryRooms = nil
		}, []string{KindTwoAcks, KindIDTwoSeqs}, []string{"t+1.500s  (runner) redis down", "t+2.100s  s-b1 gets ack seq 2", "t+50.000s  (runner) logic-3 joins", "t+70.100s  s-b1 gets ack seq 5"}},
		{"re-send of acked id rejected", func(b *hb) {
			b.send(80, "r", "b1xx").reject(80.1, "r", "b1xx", "rate_limited")
		}, []string{KindResendReject}, []string{"acked before with seq 2"}},
		{"no answer", func(b *hb) {
			b.send(9, "r", "d1xx").reject(9.1, "r", "d1xx", "unavailable")
		}, []string{KindNoAnswer}, []string{"no final answer", "d1xx"}},
		{"rejected message delivered", func(b *hb) {
			b.deliver(6.6, "v1", "r", "c1xx", 5)
		}, []string{KindRejectedSeen}, []string{"reject rate_limited", "viewer v1 has it at seq 5"}},
		{"rejected message in history", func(b *hb) {
			b.row("r", "c1xx", 5)
		}, []string{KindRejectedSeen}, []string{"history has it at seq 5"}},
		{"duplicate delivery", func(b *hb) {
			b.deliver(5.5, "v1", "r", "a2xx", 3)
		}, []string{KindDuplicate}, []string{"gets seq 3 again"}},
		{"out of order", func(b *hb) {
			evs := b.h.Events
			// v1's deliveries of seq 3 and 4 swapped.
			var idx []int
			for i, e := range evs {
				if e.Viewer == "v1" && e.Kind == Delivered && e.Seq >= 3 {
					idx = append(idx, i)
				}
			}
			evs[idx[0]], evs[idx[1]] = evs[idx[1]], evs[idx[0]]
		}, []string{KindOutOfOrder}, []string{"then gets seq 3"}},
		{"blackholed viewer", func(b *hb) {
			// A bogus resume on v2's gateway: v2 never gets 3 and 4 (it
			// did not resume), and a new joiner is told seq 999936.
			b.h.Events = b.h.Events[:len(b.h.Events)-4]
			b.note(2.5, "r", "hostile viewer joins r on gateway-2 with resume 1000000")
			b.joined(3, "v3", "r", 0, 999936).hist(3, "v3", "r", 1, 999936, true)
		}, []string{KindJoinedBeyond, KindMissing, KindMissing, KindStalled, KindStalled},
			[]string{"seq 999936", "never passed 4", "hostile viewer joins r"}},
		{"gap reported by an incomplete history is no loss", func(b *hb) {
			b.h.Events[len(b.h.Events)-3].Kind = Disconnected
			b.h.Events[len(b.h.Events)-2].Kind = Disconnected
			b.h.Events[len(b.h.Events)-1].Complete = false
		}, nil, nil},
		{"thinned seqs are no loss", func(b *hb) {
			b.h.Events[len(b.h.Events)-3].Kind = Disconnected
			b.event(Event{Viewer: "v2", Room: "r", Kind: Thinned, From: 3, To: 3}, 5.1)
		}, nil, nil},
		{"a viewer that left is owed nothing after", func(b *hb) {
			b.h.Events = b.h.Events[:len(b.h.Events)-4]
			b.event(Event{Viewer: "v2", Room: "r", Kind: Left}, 2.5)
		}, nil, nil},
		{"acked message missing from history", func(b *hb) {
			b.h.Rows = b.h.Rows[:3]
		}, []string{KindHistoryLost}, []string{"1 acked messages are not in history: seqs 4"}},
		{"answer to an id the sender never sent", func(b *hb) {
			// The ack of a2xx also reached sender s-b1's connection.
			b.h.Answers = append(b.h.Answers, Answer{Sender: "s-b1", Room: "r", UID: "u-b1", ID: "a2xx", At: b.at(3.1), Kind: Ack, Seq: 3})
		}, []string{KindStrayAnswer}, []string{"s-b1 got 1 answers for id a2xx in room r, which it never sent", "s-b1 gets ack seq 3", "s-a2 sends"}},
		{"history not read back is not checked", func(b *hb) {
			b.h.Rows = nil
			b.h.HistoryRooms = nil
		}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := clean()
			tc.edit(b)
			r := Check(b.h)
			var kinds []string
			for _, v := range r.Violations {
				kinds = append(kinds, v.Kind)
			}
			if strings.Join(kinds, ",") != strings.Join(sortedKinds(tc.kinds), ",") {
				t.Errorf("kinds %v, want %v", kinds, tc.kinds)
				for _, v := range r.Violations {
					t.Log(v)
				}
				return
			}
			if len(r.Violations) == 0 {
				return
			}
			// The story of the first violation of the first kind listed.
			i := slices.IndexFunc(r.Violations, func(v Violation) bool { return v.Kind == tc.kinds[0] })
			story := strings.Join(r.Violations[i].Story, "\n")
			for _, s := range tc.story {
				if !strings.Contains(story, s) {
					t.Errorf("story lacks %q:\n%s", s, story)
				}
			}
		})
	}
}

func sortedKinds(ks []string) []string {
	var out []string
	for _, k := range kindOrder {
		for _, x := range ks {
			if x == k {
				out = append(out, x)
			}
		}
	}
	return out
}

func TestAnswerAttribution(t *testing.T) {
	// Rejected, then the same id sent again later and acked: two attempts,
	// each with one final answer; the message is acked, not rejected.
	b := newHB()
	b.send(1, "r", "a1xx").reject(1.1, "r", "a1xx", "rate_limited")
	b.send(5, "r", "a1xx").ack(5.1, "r", "a1xx", 1)
	b.joined(0, "v1", "r", 0, 0).deliver(5.2, "v1", "r", "a1xx", 1)
	r := Check(b.h)
	if !r.OK() || r.Stats.Acked != 1 || r.Stats.Rejected != 0 {
		t.Errorf("%+v %v", r.Stats, r.Violations)
	}
	// The same two answers within one attempt break the promise.
	b = newHB()
	b.send(1, "r", "a1xx").reject(1.1, "r", "a1xx", "rate_limited").ack(1.12, "r", "a1xx", 1)
	r = Check(b.h)
	if len(r.Violations) != 1 || r.Violations[0].Kind != KindAckAndReject {
		t.Fatalf("%v", r.Violations)
	}
	if s := r.Violations[0].String(); !strings.Contains(s, "t+1.100s  s-a1 gets reject rate_limited") || !strings.Contains(s, "t+1.120s  s-a1 gets ack seq 1") {
		t.Errorf("story:\n%s", s)
	}
}

func TestJoinedBeyondEndOwesLaterAcks(t *testing.T) {
	// The first join of a viewer is answered with a bogus seq: it is still
	// owed every message acked after it joined.
	b := newHB()
	b.send(1, "r", "a1xx").ack(1.1, "r", "a1xx", 1)
	b.joined(2, "v1", "r", 0, 5000).hist(2, "v1", "r", 1, 5000, true)
	b.send(3, "r", "a2xx").ack(3.1, "r", "a2xx", 2)
	r := Check(b.h)
	var kinds []string
	for _, v := range r.Violations {
		kinds = append(kinds, v.Kind)
	}
	if strings.Join(kinds, ",") != KindJoinedBeyond+","+KindMissing+","+KindStalled {
		t.Errorf("kinds %v", kinds)
	}
	if r.Stats.Owed != 1 {
		t.Errorf("owed %d, want 1 (only the message acked after the join)", r.Stats.Owed)
	}
}

func TestFailedJoinHistoryIsAReportedGap(t *testing.T) {
	// The store load of a fresh join failed: joined 0, complete:false,
	// then live batches. What was acked before is a reported gap; what is
	// acked after is owed.
	b := newHB()
	b.send(1, "r", "a1xx").ack(1.1, "r", "a1xx", 1)
	b.send(2, "r", "a2xx").ack(2.1, "r", "a2xx", 2)
	b.joined(3, "v1", "r", 0, 0).hist(3, "v1", "r", 1, 0, false)
	b.send(4, "r", "a3xx").ack(4.1, "r", "a3xx", 3).deliver(4.2, "v1", "r", "a3xx", 3)
	b.send(5, "r", "a4xx").ack(5.1, "r", "a4xx", 4)
	r := Check(b.h)
	if len(r.Violations) != 2 || r.Violations[0].Kind != KindMissing || r.Violations[1].Kind != KindStalled {
		t.Fatalf("%v", r.Violations)
	}
	if s := r.Violations[0].String(); !strings.Contains(s, "never got 1 acked messages, seqs 4") ||
		!strings.Contains(s, "first joined (resume 0): seq 0") || !strings.Contains(s, "first gets seq 3") {
		t.Errorf("story:\n%s", s)
	}
	if r.Stats.ReportedGaps != 2 || r.Stats.Owed != 4 {
		t.Errorf("stats %+v", r.Stats)
	}
}

func TestSeqRanges(t *testing.T) {
	var as []ackedSeq
	for _, s := range []uint64{1, 2, 3, 5, 7, 8} {
		as = append(as, ackedSeq{seq: s})
	}
	if got := seqRanges(as); got != "1..3, 5, 7..8" {
		t.Errorf("got %q", got)
	}
}
