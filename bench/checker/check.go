package checker

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// Violation kinds, in the order Check reports them.
const (
	KindTwoAcks       = "two-acks"        // one id acked with two different seqs
	KindAckAndReject  = "ack-and-reject"  // one send attempt answered both ack and reject
	KindResendReject  = "resend-rejected" // a re-send of an acked id was rejected
	KindNoAnswer      = "no-answer"       // a send attempt got no final answer
	KindSeqConflict   = "seq-conflict"    // one seq of a room names two messages
	KindIDTwoSeqs     = "id-at-two-seqs"  // one message id appears at two seqs
	KindRejectedSeen  = "rejected-visible"
	KindDuplicate     = "duplicate"    // a viewer got one seq twice
	KindOutOfOrder    = "out-of-order" // a viewer got a seq after a higher one
	KindMissing       = "missing"      // a viewer never got an acked message it was owed
	KindStalled       = "stalled"      // a viewer that stayed ended behind its room's last acked seq
	KindJoinedBeyond  = "joined-beyond-end"
	KindHistoryLost   = "history-missing"
	KindHistoryTwice  = "history-duplicate"
	KindStrayAnswer   = "stray-answer" // a sender got an answer for an id it never sent
	noteWindowBefore  = 30 * time.Second
	noteWindowAfter   = 2 * time.Second
	maxNotesPerStory  = 7
	maxExamplesListed = 3
)

var kindOrder = []string{KindSeqConflict, KindIDTwoSeqs, KindTwoAcks, KindAckAndReject, KindResendReject, KindNoAnswer, KindStrayAnswer,
	KindRejectedSeen, KindJoinedBeyond, KindDuplicate, KindOutOfOrder, KindMissing, KindStalled, KindHistoryLost, KindHistoryTwice}

// Violation is one broken promise with the events that prove it.
type Violation struct {
	Kind  string
	Room  string
	At    time.Time // the first event of the proof
	Story []string
}

// String is the violation and its story, one event a line.
func (v Violation) String() string {
	return v.Kind + " (room " + v.Room + "):\n\t" + strings.Join(v.Story, "\n\t")
}

// Stats counts what was checked.
type Stats struct {
	Attempts     int // send attempts
	IDs          int // distinct (room, uid, id)
	Acked        int // ids acked with a seq
	Rejected     int // ids finally rejected, never acked
	Held         int // ids held for moderation, never acked
	Streams      int // (viewer, room) streams
	Deliveries   int
	Owed         int // (stream, acked seq) pairs a viewer was owed
	ReportedGaps int // owed pairs the viewer was told it would not get
	Rows         int // history rows read back
}

// Report is the result of Check.
type Report struct {
	Violations []Violation
	Stats      Stats
}

// OK reports whether no invariant was broken.
func (r Report) OK() bool { return len(r.Violations) == 0 }

// Summary is one line of counts.
func (r Report) Summary() string {
	s := r.Stats
	by := map[string]int{}
	for _, v := range r.Violations {
		by[v.Kind]++
	}
	var parts []string
	for _, k := range kindOrder {
		if by[k] > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", k, by[k]))
		}
	}
	viol := "0"
	if len(parts) > 0 {
		viol = fmt.Sprintf("%d (%s)", len(r.Violations), strings.Join(parts, ", "))
	}
	return fmt.Sprintf("%d send attempts of %d ids: %d acked, %d rejected, %d held; %d viewer streams, %d deliveries, "+
		"%d owed deliveries checked, %d reported gaps; %d history rows; violations %s",
		s.Attempts, s.IDs, s.Acked, s.Rejected, s.Held, s.Streams, s.Deliveries, s.Owed, s.ReportedGaps, s.Rows, viol)
}

// key names a message id: ids are unique per room and sender.
type key struct{ room, uid, id string }

// source is where a message was seen at a seq.
type source struct {
	at   time.Time
	what string // "ack to s1", "viewer v3", "history"
}

// checker holds the indexes of one Check.
type checker struct {
	h       History
	out     []Violation
	stats   Stats
	msgOf   map[key]Msg
	final   map[key]finalAnswer
	stray   map[key]bool      // answers to ids their receiver never sent
	lastAck map[string]uint64 // room → highest acked seq
	maxSeq  map[string]uint64 // room → highest seq anyone saw
}

type finalAnswer struct {
	kind AnswerKind // 0: none
	seq  uint64
	at   time.Time
	by   string
	code string
}

// Check checks h against every invariant and returns the violations,
// ordered by kind, room and time, with the counts of what was checked.
func Check(h History) Report {
	c := &checker{h: h, msgOf: map[key]Msg{}, final: map[key]finalAnswer{}, lastAck: map[string]uint64{}, maxSeq: map[string]uint64{}}
	c.answers()
	c.identity()
	c.rejectedNowhere()
	c.streams()
	c.history()
	slices.SortStableFunc(c.out, func(a, b Violation) int {
		return cmp.Or(cmp.Compare(slices.Index(kindOrder, a.Kind), slices.Index(kindOrder, b.Kind)),
			cmp.Compare(a.Room, b.Room), a.At.Compare(b.At))
	})
	return Report{Violations: c.out, Stats: c.stats}
}

// ts formats t relative to the start of the history.
func (c *checker) ts(t time.Time) string {
	return fmt.Sprintf("t+%.3fs", t.Sub(c.h.Start).Seconds())
}

// add records a violation whose proof starts at at. Its story gets the
// runner's notes near at and, for each time in also, the two notes about
// every room closest before it (what was going on at an earlier event of
// the proof).
func (c *checker) add(kind, room string, at time.Time, story []string, also ...time.Time) {
	story = append(story, c.notes(room, at)...)
	for _, t := range also {
		var before []Note
		for _, n := range c.h.Notes {
			if n.Room == "" && !n.At.After(t) && !n.At.Before(t.Add(-noteWindowBefore)) &&
				(n.At.Before(at.Add(-noteWindowBefore)) || n.At.After(at.Add(noteWindowAfter))) {
				before = append(before, n)
			}
		}
		for _, n := range before[max(0, len(before)-2):] {
			story = append(story, fmt.Sprintf("%s  (runner) %s", c.ts(n.At), n.Text))
		}
	}
	// The header stays first; timed lines in time order, the others last.
	rest := story[1:]
	slices.SortStableFunc(rest, func(a, b string) int { return cmp.Compare(lineTime(a), lineTime(b)) })
	c.out = append(c.out, Violation{Kind: kind, Room: room, At: at, Story: story})
}

// notes returns the runner's notes near at: the 3 closest about room
// (from up to 4 windows back) and the 4 closest about every room.
func (c *checker) notes(room string, at time.Time) []string {
	var mine, all []Note
	for _, n := range c.h.Notes {
		if n.At.After(at.Add(noteWindowAfter)) {
			continue
		}
		switch {
		case n.Room == room && !n.At.Before(at.Add(-4*noteWindowBefore)):
			mine = append(mine, n)
		case n.Room == "" && !n.At.Before(at.Add(-noteWindowBefore)):
			all = append(all, n)
		}
	}
	closest := func(ns []Note, k int) []Note {
		slices.SortFunc(ns, func(a, b Note) int { return cmp.Compare(absDur(a.At.Sub(at)), absDur(b.At.Sub(at))) })
		return ns[:min(len(ns), k)]
	}
	near := append(closest(mine, maxNotesPerStory/2), closest(all, maxNotesPerStory-maxNotesPerStory/2)...)
	slices.SortFunc(near, func(a, b Note) int { return a.At.Compare(b.At) })
	var out []string
	for _, n := range near {
		out = append(out, fmt.Sprintf("%s  (runner) %s", c.ts(n.At), n.Text))
	}
	return out
}

// lineTime is the time of a story line starting "t+1.234s", or +Inf.
func lineTime(l string) float64 {
	var f float64
	if !strings.HasPrefix(l, "t+") {
		return math.Inf(1)
	}
	if _, err := fmt.Sscanf(l[2:strings.IndexByte(l+" ", ' ')], "%fs", &f); err != nil {
		return math.Inf(1)
	}
	return f
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

func (m Msg) String() string { return fmt.Sprintf("%q (uid %s, id %s)", m.Text, m.UID, m.ID) }

// answers checks that every send attempt got one final answer and that an
// id is acked with one seq, and records each id's final answer.
func (c *checker) answers() {
	attempts, answers := c.groupAnswers()
	c.strayAnswers(attempts, answers)
	keys := make([]key, 0, len(attempts))
	for k := range attempts {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	c.stats.Attempts = len(c.h.Sends)
	c.stats.IDs = len(keys)
	for _, k := range keys {
		c.answersOf(k, attempts[k], answers[k])
	}
}

func compareKeys(a, b key) int {
	return cmp.Or(cmp.Compare(a.room, b.room), cmp.Compare(a.uid, b.uid), cmp.Compare(a.id, b.id))
}

// groupAnswers groups the history's send attempts and their final
// answers by id (an unavailable reject is not final: the client retries)
// and records each id's message.
func (c *checker) groupAnswers() (attempts map[key][]Send, answers map[key][]Answer) {
	attempts = map[key][]Send{}
	for _, s := range c.h.Sends {
		k := key{s.Room, s.Msg.UID, s.Msg.ID}
		attempts[k] = append(attempts[k], s)
		if _, ok := c.msgOf[k]; !ok {
			c.msgOf[k] = s.Msg
		}
	}
	answers = map[key][]Answer{}
	for _, a := range c.h.Answers {
		if a.Kind == Reject && a.Code == "unavailable" {
			continue // the client retries
		}
		k := key{a.Room, a.UID, a.ID}
		answers[k] = append(answers[k], a)
	}
	return attempts, answers
}

// strayAnswers reports the answers to an id the sender never sent
// (another connection's answer), which are not taken as the message's
// ack.
func (c *checker) strayAnswers(attempts map[key][]Send, answers map[key][]Answer) {
	var stray []key
	for k := range answers {
		if _, ok := attempts[k]; !ok {
			stray = append(stray, k)
		}
	}
	slices.SortFunc(stray, compareKeys)
	c.stray = map[key]bool{}
	for _, k := range stray {
		c.stray[k] = true
		as := answers[k]
		story := []string{fmt.Sprintf("%s got %d answers for id %s in room %s, which it never sent:", as[0].Sender, len(as), k.id, k.room)}
		story = append(story, c.attemptLines(nil, as)...)
		for _, s := range c.h.Sends {
			if s.Room == k.room && s.Msg.ID == k.id {
				story = append(story, fmt.Sprintf("%s  %s sends %s", c.ts(s.At), s.Sender, s.Msg))
				break
			}
		}
		c.add(KindStrayAnswer, k.room, as[0].At, story)
	}
}

// answersOf checks one id's attempts (sends) and answers (as): its final
// answer (recorded), one seq for all its acks, and one answer per attempt.
func (c *checker) answersOf(k key, sends []Send, as []Answer) {
	slices.SortStableFunc(sends, func(a, b Send) int { return a.At.Compare(b.At) })
	slices.SortStableFunc(as, func(a, b Answer) int { return a.At.Compare(b.At) })
	fa, firstAck, seqs := finalOf(as)
	if firstAck != nil && c.lastAck[k.room] < firstAck.Seq {
		c.lastAck[k.room] = firstAck.Seq
	}
	c.final[k] = fa
	switch fa.kind {
	case Ack:
		c.stats.Acked++
	case Reject:
		c.stats.Rejected++
	case Held:
		c.stats.Held++
	}
	msg := c.msgOf[k]
	if len(seqs) > 1 {
		// The story centres on the first ack with another seq: what
		// happened just before it is what made the id forgotten.
		at := firstAck.At
		for _, a := range as {
			if a.Kind == Ack && a.Seq != 0 && a.Seq != firstAck.Seq {
				at = a.At
				break
			}
		}
		story := []string{fmt.Sprintf("message %s acked with %d different seqs:", msg, len(seqs))}
		story = append(story, c.attemptLines(sends, as)...)
		c.add(KindTwoAcks, k.room, at, story, firstAck.At)
	}
	c.eachAttempt(k, msg, sends, as, firstAck)
}

// finalOf returns the final answer of an id from its answers as (sorted
// by time): its first ack with a seq, else a reject, else held. firstAck
// is that ack (nil: none) and seqs the first ack of each seq.
func finalOf(as []Answer) (fa finalAnswer, firstAck *Answer, seqs map[uint64]Answer) {
	seqs = map[uint64]Answer{}
	for i := range as {
		a := &as[i]
		switch a.Kind {
		case Ack:
			if a.Seq == 0 {
				continue
			}
			if firstAck == nil {
				firstAck = a
			}
			if _, ok := seqs[a.Seq]; !ok {
				seqs[a.Seq] = *a
			}
		case Held:
			if fa.kind == 0 {
				fa = finalAnswer{kind: Held, at: a.At, by: a.Sender}
			}
		case Reject:
			if fa.kind != Reject {
				fa = finalAnswer{kind: Reject, at: a.At, by: a.Sender, code: a.Code}
			}
		}
	}
	if firstAck != nil {
		fa = finalAnswer{kind: Ack, seq: firstAck.Seq, at: firstAck.At, by: firstAck.Sender}
	}
	return fa, firstAck, seqs
}

// eachAttempt checks that each send attempt of an id got exactly one kind
// of answer (each answer belongs to the latest attempt started before it),
// and that a re-send of an acked id was not rejected.
func (c *checker) eachAttempt(k key, msg Msg, sends []Send, as []Answer, firstAck *Answer) {
	per := make([][]Answer, max(len(sends), 1))
	for _, a := range as {
		i := 0
		for j, s := range sends {
			if !s.At.After(a.At) {
				i = j
			}
		}
		per[i] = append(per[i], a)
	}
	for i, s := range sends {
		var ack, rej *Answer
		for j := range per[i] {
			a := &per[i][j]
			if a.Kind == Ack && ack == nil {
				ack = a
			}
			if a.Kind == Reject && rej == nil {
				rej = a
			}
		}
		switch {
		case ack != nil && rej != nil:
			first := ack
			if rej.At.Before(ack.At) {
				first = rej
			}
			story := []string{fmt.Sprintf("one send of %s answered both ack and reject:", msg)}
			story = append(story, c.attemptLines(sends[i:i+1], per[i])...)
			c.add(KindAckAndReject, k.room, first.At, story)
		case rej != nil && firstAck != nil && firstAck.At.Before(s.At):
			story := []string{fmt.Sprintf("a re-send of %s, acked before with seq %d, was rejected:", msg, firstAck.Seq)}
			story = append(story, c.attemptLines(sends, as)...)
			c.add(KindResendReject, k.room, rej.At, story)
		case len(per[i]) == 0:
			story := []string{fmt.Sprintf("no final answer to a send of %s:", msg)}
			story = append(story, c.attemptLines(sends, as)...)
			c.add(KindNoAnswer, k.room, s.At, story)
		}
	}
}

func (c *checker) attemptLines(sends []Send, as []Answer) []string {
	type line struct {
		at time.Time
		s  string
	}
	var ls []line
	for _, s := range sends {
		ls = append(ls, line{s.At, fmt.Sprintf("%s  %s sends %s", c.ts(s.At), s.Sender, s.Msg)})
	}
	for _, a := range as {
		var what string
		switch a.Kind {
		case Ack:
			what = fmt.Sprintf("ack seq %d", a.Seq)
		case Held:
			what = "ack held"
		case Reject:
			what = "reject " + a.Code
		}
		ls = append(ls, line{a.At, fmt.Sprintf("%s  %s gets %s for id %s", c.ts(a.At), a.Sender, what, a.ID)})
	}
	slices.SortStableFunc(ls, func(a, b line) int { return a.at.Compare(b.at) })
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.s
	}
	return out
}

// identity checks that per room a seq names one message and an id one seq,
// across acks, deliveries and history rows.
func (c *checker) identity() {
	sg := c.sightings()
	c.seqConflicts(sg.bySeq)
	c.idsAtTwoSeqs(sg.byID)
}

// sighting is where a message was first seen at a seq and how often it
// was seen there in all.
type sighting struct {
	first source
	n     int
}

// sightings is every message seen, by room and seq and by id.
type sightings struct {
	bySeq map[string]map[uint64]map[Msg]*sighting
	byID  map[key]map[uint64]*sighting
}

// sightings collects every message seen at a seq: in acks (but stray
// ones), deliveries and history rows; it also records each room's highest
// seq (c.maxSeq).
func (c *checker) sightings() sightings {
	sg := sightings{bySeq: map[string]map[uint64]map[Msg]*sighting{}, byID: map[key]map[uint64]*sighting{}}
	for _, a := range c.h.Answers {
		if a.Kind != Ack || a.Seq == 0 {
			continue
		}
		k := key{a.Room, a.UID, a.ID}
		if c.stray[k] {
			continue
		}
		m, ok := c.msgOf[k]
		if !ok {
			m = Msg{UID: a.UID, ID: a.ID}
		}
		c.note(sg, a.Room, a.Seq, m, source{a.At, "ack to " + a.Sender})
	}
	for _, e := range c.h.Events {
		if e.Kind == Delivered {
			c.note(sg, e.Room, e.Seq, e.Msg, source{e.At, "viewer " + e.Viewer})
		}
	}
	end := c.h.Start
	for _, e := range c.h.Events {
		if e.At.After(end) {
			end = e.At
		}
	}
	for _, r := range c.h.Rows {
		c.note(sg, r.Room, r.Seq, r.Msg, source{end, "history"})
	}
	return sg
}

// note records that m was seen at seq of room, from src.
func (c *checker) note(sg sightings, room string, seq uint64, m Msg, src source) {
	if c.maxSeq[room] < seq {
		c.maxSeq[room] = seq
	}
	if sg.bySeq[room] == nil {
		sg.bySeq[room] = map[uint64]map[Msg]*sighting{}
	}
	if sg.bySeq[room][seq] == nil {
		sg.bySeq[room][seq] = map[Msg]*sighting{}
	}
	seeAt(sg.bySeq[room][seq], m, src)
	if m.ID == "" {
		return
	}
	k := key{room, m.UID, m.ID}
	if sg.byID[k] == nil {
		sg.byID[k] = map[uint64]*sighting{}
	}
	seeAt(sg.byID[k], seq, src)
}

// seeAt counts a sighting of k from src in into, keeping the earliest.
func seeAt[K comparable](into map[K]*sighting, k K, src source) {
	if s := into[k]; s != nil {
		s.n++
		if src.at.Before(s.first.at) {
			s.first = src
		}
		return
	}
	into[k] = &sighting{first: src, n: 1}
}

// seqConflicts reports every seq at which two different messages were
// seen.
func (c *checker) seqConflicts(bySeq map[string]map[uint64]map[Msg]*sighting) {
	rooms := make([]string, 0, len(bySeq))
	for r := range bySeq {
		rooms = append(rooms, r)
	}
	slices.Sort(rooms)
	for _, room := range rooms {
		seqs := make([]uint64, 0, len(bySeq[room]))
		for s := range bySeq[room] {
			seqs = append(seqs, s)
		}
		slices.Sort(seqs)
		for _, seq := range seqs {
			msgs := bySeq[room][seq]
			if len(msgs) < 2 {
				continue
			}
			// An ack carries no text: an ack's message without text agrees
			// with any message of the same uid and id.
			distinct := map[Msg]*sighting{}
			for m, s := range msgs {
				distinct[m] = s
			}
			for m := range distinct {
				if m.Text == "" {
					for o := range distinct {
						if o != m && o.UID == m.UID && o.ID == m.ID {
							delete(distinct, m)
							break
						}
					}
				}
			}
			if len(distinct) < 2 {
				continue
			}
			story := []string{fmt.Sprintf("seq %d names %d messages:", seq, len(distinct))}
			first := time.Time{}
			ordered := make([]Msg, 0, len(distinct))
			for m := range distinct {
				ordered = append(ordered, m)
			}
			slices.SortFunc(ordered, func(a, b Msg) int { return distinct[a].first.at.Compare(distinct[b].first.at) })
			for _, m := range ordered {
				s := distinct[m]
				if first.IsZero() || s.first.at.Before(first) {
					first = s.first.at
				}
				story = append(story, fmt.Sprintf("%s  %s: %s (seen %d times in all)", c.ts(s.first.at), s.first.what, m, s.n))
			}
			c.add(KindSeqConflict, room, first, story)
		}
	}
}

// idsAtTwoSeqs reports every id seen at two seqs.
func (c *checker) idsAtTwoSeqs(byID map[key]map[uint64]*sighting) {
	keys := make([]key, 0, len(byID))
	for k := range byID {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, compareKeys)
	for _, k := range keys {
		seqs := byID[k]
		if len(seqs) < 2 {
			continue
		}
		ordered := make([]uint64, 0, len(seqs))
		for s := range seqs {
			ordered = append(ordered, s)
		}
		slices.SortFunc(ordered, func(a, b uint64) int { return seqs[a].first.at.Compare(seqs[b].first.at) })
		m := c.msgOf[k]
		if m.ID == "" {
			m = Msg{UID: k.uid, ID: k.id}
		}
		story := []string{fmt.Sprintf("message %s is at %d seqs:", m, len(seqs))}
		for _, s := range ordered {
			story = append(story, fmt.Sprintf("%s  seq %d: first %s (seen %d times in all)", c.ts(seqs[s].first.at), s, seqs[s].first.what, seqs[s].n))
		}
		c.add(KindIDTwoSeqs, k.room, seqs[ordered[0]].first.at, story)
	}
}

// rejectedNowhere checks that a finally rejected message reached no viewer
// and no history.
func (c *checker) rejectedNowhere() {
	reported := map[key]bool{}
	check := func(room string, m Msg, at time.Time, where string, seq uint64) {
		k := key{room, m.UID, m.ID}
		fa, ok := c.final[k]
		if m.ID == "" || !ok || fa.kind != Reject || reported[k] {
			return
		}
		reported[k] = true
		c.add(KindRejectedSeen, room, at, []string{
			fmt.Sprintf("%s  %s gets reject %s for %s", c.ts(fa.at), fa.by, fa.code, m),
			fmt.Sprintf("%s  %s has it at seq %d", c.ts(at), where, seq),
		})
	}
	for _, e := range c.h.Events {
		if e.Kind == Delivered {
			check(e.Room, e.Msg, e.At, "viewer "+e.Viewer, e.Seq)
		}
	}
	for _, r := range c.h.Rows {
		check(r.Room, r.Msg, c.h.Start, "history", r.Seq)
	}
}

// ackedSeq is an acked message of a room.
type ackedSeq struct {
	seq uint64
	k   key
	fa  finalAnswer
}

func (c *checker) ackedByRoom() map[string][]ackedSeq {
	out := map[string][]ackedSeq{}
	for k, fa := range c.final {
		if fa.kind == Ack {
			out[k.room] = append(out[k.room], ackedSeq{fa.seq, k, fa})
		}
	}
	for r := range out {
		slices.SortFunc(out[r], func(a, b ackedSeq) int { return cmp.Compare(a.seq, b.seq) })
	}
	return out
}

type streamKey struct{ viewer, room string }

// streams checks every viewer's stream of every room.
func (c *checker) streams() {
	per := map[streamKey][]Event{}
	var order []streamKey
	for _, e := range c.h.Events {
		sk := streamKey{e.Viewer, e.Room}
		if _, ok := per[sk]; !ok {
			order = append(order, sk)
		}
		per[sk] = append(per[sk], e)
	}
	acked := c.ackedByRoom()
	c.stats.Streams = len(order)
	for _, sk := range order {
		c.stream(sk, per[sk], acked[sk.room])
	}
}

func (c *checker) stream(sk streamKey, evs []Event, acked []ackedSeq) {
	room := sk.room
	vs := c.walkStream(sk, evs, acked)
	if len(vs.beyond) > 0 {
		c.add(KindJoinedBeyond, room, vs.beyondAt, vs.beyond[:min(len(vs.beyond), maxExamplesListed)])
	}
	if len(vs.dup) > 0 {
		c.add(KindDuplicate, room, vs.dupAt, append(vs.dup[:min(len(vs.dup), maxExamplesListed)], fmt.Sprintf("(%d duplicates in all)", len(vs.dup))))
	}
	if len(vs.ooo) > 0 {
		c.add(KindOutOfOrder, room, vs.oooAt, append(vs.ooo[:min(len(vs.ooo), maxExamplesListed+1)], fmt.Sprintf("(%d out of order in all)", len(vs.ooo)-1)))
	}
	if !vs.started {
		return // never joined: owed nothing
	}
	if !vs.left {
		vs.end = c.lastAck[room]
	}
	covered := max(c.missing(sk, evs, acked, vs), vs.start)
	if !vs.left && covered < c.lastAck[room] {
		c.stalled(sk, evs, acked, vs, covered)
	}
}

// excuse is a seq range a viewer may lack, and why (a thinned batch, an
// incomplete history).
type excuse struct {
	from, to uint64
	why      string
}

// viewerStream is what walkStream gathers from one viewer's events in
// one room.
type viewerStream struct {
	got          map[uint64]Event // the first delivery of each seq
	last         uint64           // the highest seq delivered
	lastAt       time.Time
	dup, ooo     []string // duplicate and out-of-order deliveries' lines
	dupAt, oooAt time.Time
	beyond       []string // joins answered with a seq past the room's end
	beyondAt     time.Time
	start        uint64 // the seq the viewer is owed messages after
	started      bool   // the viewer joined
	startAt      time.Time
	left         bool
	end          uint64 // the last seq owed
	excused      []excuse
}

// clamp bounds a seq the viewer was told at time at to what room really
// had then: a bogus seq excuses nothing.
func (c *checker) clamp(room string, acked []ackedSeq, seq uint64, at time.Time) uint64 {
	if seq <= c.maxSeq[room] {
		return seq
	}
	var upTo uint64
	for _, a := range acked {
		if !a.fa.at.After(at) {
			upTo = max(upTo, a.seq)
		}
	}
	return upTo
}

// walkStream goes through one viewer's events in a room (sk) in order.
func (c *checker) walkStream(sk streamKey, evs []Event, acked []ackedSeq) *viewerStream {
	room := sk.room
	vs := &viewerStream{got: map[uint64]Event{}}
	for _, e := range evs {
		switch e.Kind {
		case Joined:
			if e.Seq > c.maxSeq[room] {
				if len(vs.beyond) == 0 {
					vs.beyondAt = e.At
				}
				vs.beyond = append(vs.beyond, fmt.Sprintf("%s  viewer %s joined, resume %d: the gateway says seq %d (the room never passed %d)",
					c.ts(e.At), sk.viewer, e.Resume, e.Seq, c.maxSeq[room]))
			}
			if !vs.started {
				vs.started, vs.startAt = true, e.At
				vs.start = e.Seq
				if e.Resume > 0 {
					vs.start = e.Resume
				}
				// A seq beyond the room's end is no floor: owe every
				// message acked after the join.
				vs.start = c.clamp(room, acked, vs.start, e.At)
			}
		case Delivered:
			c.stats.Deliveries++
			if _, ok := vs.got[e.Seq]; ok {
				if len(vs.dup) == 0 {
					vs.dupAt = e.At
				}
				vs.dup = append(vs.dup, fmt.Sprintf("%s  viewer %s gets seq %d again: %s", c.ts(e.At), sk.viewer, e.Seq, e.Msg))
			} else if e.Seq < vs.last {
				if len(vs.ooo) == 0 {
					vs.ooo = append(vs.ooo, fmt.Sprintf("%s  viewer %s gets seq %d", c.ts(vs.lastAt), sk.viewer, vs.last))
					vs.oooAt = e.At
				}
				vs.ooo = append(vs.ooo, fmt.Sprintf("%s  viewer %s then gets seq %d: %s", c.ts(e.At), sk.viewer, e.Seq, e.Msg))
			}
			if _, ok := vs.got[e.Seq]; !ok {
				vs.got[e.Seq] = e
			}
			if e.Seq > vs.last {
				vs.last, vs.lastAt = e.Seq, e.At
			}
			if !vs.left {
				vs.end = max(vs.end, e.Seq)
			}
		case HistoryFrame:
			if !e.Complete {
				// The gateway could not fill the history: every seq up to
				// the joined one, and at least every seq acked by then,
				// may be missing (a join whose store load failed says
				// joined 0 and goes on with live batches).
				to := c.clamp(room, acked, e.To, e.At)
				for _, a := range acked {
					if !a.fa.at.After(e.At) {
						to = max(to, a.seq)
					}
				}
				vs.excused = append(vs.excused, excuse{e.From, to, fmt.Sprintf("%s history complete:false for %d..%d", c.ts(e.At), e.From, e.To)})
			}
		case Thinned:
			vs.excused = append(vs.excused, excuse{e.From, c.clamp(room, acked, e.To, e.At), fmt.Sprintf("%s thinned batch %d..%d", c.ts(e.At), e.From, e.To)})
		case Left:
			vs.left = true
		}
	}
	return vs
}

// missing reports the acked messages the viewer was owed (after its
// start, up to its end) and never got, unless a thinned batch or an
// incomplete history excused them. It returns the seq the viewer's
// stream covers up to.
func (c *checker) missing(sk streamKey, evs []Event, acked []ackedSeq, vs *viewerStream) uint64 {
	room := sk.room
	covered := vs.last
	var missing []ackedSeq
	for _, a := range acked {
		if a.seq <= vs.start || a.seq > vs.end {
			continue
		}
		c.stats.Owed++
		if e, ok := vs.got[a.seq]; ok && e.Msg.UID == a.k.uid && e.Msg.ID == a.k.id {
			continue
		}
		if slices.ContainsFunc(vs.excused, func(s excuse) bool { return s.from <= a.seq && a.seq <= s.to }) {
			c.stats.ReportedGaps++
			continue
		}
		missing = append(missing, a)
	}
	for _, s := range vs.excused {
		covered = max(covered, s.to)
	}
	if len(missing) > 0 {
		first := missing[0]
		story := []string{fmt.Sprintf("viewer %s (joined %s, owed seqs %d..%d) never got %d acked messages, seqs %s",
			sk.viewer, c.ts(vs.startAt), vs.start+1, vs.end, len(missing), seqRanges(missing))}
		for _, a := range missing[:min(len(missing), maxExamplesListed)] {
			story = append(story, fmt.Sprintf("%s  %s gets ack seq %d for %s", c.ts(a.fa.at), a.fa.by, a.seq, c.msgOf[a.k]))
		}
		story = append(story, c.around(sk, evs, first.fa.at)...)
		story = append(story, c.firstJoin(sk, evs)...)
		c.add(KindMissing, room, first.fa.at, story)
	}
	return covered
}

// stalled reports a viewer that stayed in the room but whose stream
// stopped at covered while the room went on.
func (c *checker) stalled(sk streamKey, evs []Event, acked []ackedSeq, vs *viewerStream, covered uint64) {
	room := sk.room
	var after []ackedSeq
	for _, a := range acked {
		if a.seq > covered {
			after = append(after, a)
		}
	}
	story := []string{fmt.Sprintf("viewer %s stayed in the room but stopped at seq %d; the room was acked up to seq %d (%d acks after, the last at %s)",
		sk.viewer, covered, c.lastAck[room], len(after), c.ts(after[len(after)-1].fa.at))}
	if vs.last > 0 {
		story = append(story, fmt.Sprintf("%s  viewer %s gets seq %d, its last", c.ts(vs.lastAt), sk.viewer, vs.last))
	}
	story = append(story, fmt.Sprintf("%s  %s gets ack seq %d for %s, the first the viewer never got",
		c.ts(after[0].fa.at), after[0].fa.by, after[0].seq, c.msgOf[after[0].k]))
	story = append(story, c.around(sk, evs, after[0].fa.at)...)
	c.add(KindStalled, room, after[0].fa.at, story)
}

// around lists the viewer's joins, history frames and disconnects shortly
// before and after at: what the viewer went through when it lost track.
func (c *checker) around(sk streamKey, evs []Event, at time.Time) []string {
	var out []string
	for _, e := range evs {
		if e.At.Before(at.Add(-noteWindowBefore)) || e.At.After(at.Add(noteWindowBefore)) {
			continue
		}
		var s string
		switch e.Kind {
		case Joined:
			s = fmt.Sprintf("joined (resume %d): seq %d", e.Resume, e.Seq)
		case HistoryFrame:
			s = fmt.Sprintf("history for %d..%d, complete %v", e.From, e.To, e.Complete)
		case Disconnected:
			s = "disconnected"
		case Left:
			s = "left"
		default:
			continue
		}
		out = append(out, fmt.Sprintf("%s  viewer %s %s", c.ts(e.At), sk.viewer, s))
	}
	if len(out) > 2*maxNotesPerStory {
		out = append(out[:maxNotesPerStory], out[len(out)-maxNotesPerStory:]...)
	}
	return out
}

// firstJoin describes how the viewer's stream began: its first join, the
// history that answered it and its first delivery.
func (c *checker) firstJoin(sk streamKey, evs []Event) []string {
	var out []string
	for _, e := range evs {
		switch {
		case e.Kind == Joined && len(out) == 0:
			out = append(out, fmt.Sprintf("%s  viewer %s first joined (resume %d): seq %d", c.ts(e.At), sk.viewer, e.Resume, e.Seq))
		case e.Kind == HistoryFrame && len(out) == 1:
			out = append(out, fmt.Sprintf("%s  viewer %s history for %d..%d, complete %v", c.ts(e.At), sk.viewer, e.From, e.To, e.Complete))
		case e.Kind == Delivered:
			return append(out, fmt.Sprintf("%s  viewer %s first gets seq %d", c.ts(e.At), sk.viewer, e.Seq))
		}
	}
	return out
}

// seqRanges formats sorted seqs as ranges: "3..7, 9".
func seqRanges(as []ackedSeq) string {
	var parts []string
	for i := 0; i < len(as); {
		j := i
		for j+1 < len(as) && as[j+1].seq == as[j].seq+1 {
			j++
		}
		if i == j {
			parts = append(parts, fmt.Sprint(as[i].seq))
		} else {
			parts = append(parts, fmt.Sprintf("%d..%d", as[i].seq, as[j].seq))
		}
		i = j + 1
		if len(parts) == 8 && i < len(as) {
			parts = append(parts, "…")
			break
		}
	}
	return strings.Join(parts, ", ")
}

// history checks that every acked message of a room read back is in its
// history exactly once.
func (c *checker) history() {
	c.stats.Rows = len(c.h.Rows)
	read := map[string]bool{}
	for _, r := range c.h.HistoryRooms {
		read[r] = true
	}
	rows := map[key][]Row{}
	for _, r := range c.h.Rows {
		rows[key{r.Room, r.Msg.UID, r.Msg.ID}] = append(rows[key{r.Room, r.Msg.UID, r.Msg.ID}], r)
	}
	acked := c.ackedByRoom()
	rooms := make([]string, 0, len(acked))
	for r := range acked {
		rooms = append(rooms, r)
	}
	slices.Sort(rooms)
	for _, room := range rooms {
		if !read[room] {
			continue
		}
		var lost []ackedSeq
		for _, a := range acked[room] {
			switch rs := rows[a.k]; {
			case len(rs) == 0:
				lost = append(lost, a)
			case len(rs) > 1:
				story := []string{fmt.Sprintf("%s  %s gets ack seq %d for %s", c.ts(a.fa.at), a.fa.by, a.seq, c.msgOf[a.k])}
				for _, r := range rs {
					story = append(story, fmt.Sprintf("history has it at seq %d", r.Seq))
				}
				c.add(KindHistoryTwice, room, a.fa.at, story)
			}
		}
		if len(lost) > 0 {
			story := []string{fmt.Sprintf("%d acked messages are not in history: seqs %s", len(lost), seqRanges(lost))}
			for _, a := range lost[:min(len(lost), maxExamplesListed)] {
				story = append(story, fmt.Sprintf("%s  %s gets ack seq %d for %s", c.ts(a.fa.at), a.fa.by, a.seq, c.msgOf[a.k]))
				for _, r := range c.h.Rows {
					if r.Room == room && r.Seq == a.seq {
						story = append(story, fmt.Sprintf("history has seq %d as %s", r.Seq, r.Msg))
					}
				}
			}
			c.add(KindHistoryLost, room, lost[0].fa.at, story)
		}
	}
}
