// Package checker checks a recorded history of a danmaku deployment under
// faults against the delivery promises of docs/protocol.md and
// docs/reliability.md, in the spirit of Jepsen's checkers: a test records
// every send attempt, every answer, every delivery per viewer and the
// history rows read back at the end, and Check reports each broken promise
// with the few events that prove it.
//
// The invariants (Check):
//
//   - per room, a seq names one message (sender uid, id and text) in acks,
//     every viewer's stream and history; a message id names one seq;
//   - every acked message reaches every honest viewer that stayed in its
//     room (or resumed) exactly once, in strictly increasing seq order;
//     seqs a viewer was told it would not get (thinned batches, a history
//     frame with complete:false) are counted as reported gaps, not as
//     losses; every acked message is in history exactly once;
//   - a message whose send was finally rejected is nowhere: no viewer, no
//     history;
//   - every send attempt gets one final answer: never both an ack and a
//     reject, never two acks with different seqs; a later re-send of an
//     acked id is acked with the same seq; no sender gets an answer for an
//     id it never sent;
//   - liveness: after the quiet window at the end, every viewer that
//     stayed has caught up to its room's last acked seq, and no viewer was
//     told a room's seq is beyond anything the room ever had.
//
// The package knows nothing of how the history was made; the runner is
// TestFaultSchedule in the module root.
package checker

import (
	"time"
)

// Msg identifies a message the way every reader sees it.
type Msg struct {
	UID  string
	ID   string
	Text string
}

// Send is one send attempt: a call that posts a message with an id and
// waits for its final answer (the client's own retries with the same id
// after a time-out or an "unavailable" reject belong to the attempt). A
// deliberate re-send of the same id later is a new attempt.
type Send struct {
	Sender string // the sending client, for stories
	Room   string
	Msg    Msg
	At     time.Time
}

// AnswerKind is the kind of an answer to a send.
type AnswerKind int

// Answer kinds.
const (
	// Ack: accepted with a seq.
	Ack AnswerKind = iota + 1
	// Held: accepted for moderation, no seq.
	Held
	// Reject: refused with a code. "unavailable" is not final (the client
	// retries); every other code is.
	Reject
)

// Answer is one ack or reject frame a sender received.
type Answer struct {
	Sender string
	Room   string
	UID    string
	ID     string
	At     time.Time
	Kind   AnswerKind
	Seq    uint64 // Ack
	Code   string // Reject
}

// EventKind is the kind of a viewer event.
type EventKind int

// Viewer event kinds.
const (
	// Joined: the gateway answered a join; Seq is the room's seq it
	// announced, Resume the seq the viewer resumed from (0: a plain join).
	Joined EventKind = iota + 1
	// Delivered: a message reached the viewer; Seq and Msg are set.
	Delivered
	// HistoryFrame: the history frame that ends a join; From..To are the
	// seqs it answers for (resume+1 .. joined seq) and Complete its flag.
	HistoryFrame
	// Thinned: a thinned batch covered From..To; the seqs it left out are
	// not owed to the viewer.
	Thinned
	// Disconnected: the viewer lost its connection (it reconnects and
	// resumes by itself).
	Disconnected
	// Left: the viewer left the room (or closed) on purpose; nothing after
	// it is owed.
	Left
)

// Event is one thing a viewer saw.
type Event struct {
	Viewer   string
	Room     string
	At       time.Time
	Kind     EventKind
	Seq      uint64
	Resume   uint64
	Msg      Msg
	From, To uint64
	Complete bool
}

// Row is one history row read back at the end.
type Row struct {
	Room string
	Seq  uint64
	Msg  Msg
}

// Note is a thing the runner did (a fault injected, a hostile client's
// request), shown in the stories of violations near it in time. Room ""
// means the note concerns every room.
type Note struct {
	At   time.Time
	Room string
	Text string
}

// History is everything recorded in one run. Events must be in the order
// each viewer saw them (events of different viewers may interleave).
type History struct {
	// Start is the time stories count from.
	Start   time.Time
	Sends   []Send
	Answers []Answer
	Events  []Event
	// Rows are the history rows of the rooms in HistoryRooms; a room not
	// listed was not read back and its history is not checked.
	Rows         []Row
	HistoryRooms []string
	Notes        []Note
}
