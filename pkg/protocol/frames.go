package protocol

import (
	stdjson "encoding/json"

	"github.com/bytedance/sonic"
)

// json is the sonic configuration used for every frame: standard-compatible
// output (so any JSON parser reads it) without HTML escaping.
var json = sonic.Config{NoQuoteTextMarshaler: true}.Froze()

// ClientFrame is a decoded client → server frame. Which fields are set
// depends on Op; DecodeClient has validated them.
type ClientFrame struct {
	Op   string `json:"op"`
	Room string `json:"room,omitempty"`
	// Resume, on join, asks for every message after this seq.
	Resume *uint64 `json:"resume,omitempty"`
	// ID is the sender's unique message id on send.
	ID string `json:"id,omitempty"`
	// Text is the message text on send, already cleaned by CleanText.
	Text string `json:"text,omitempty"`
	// Retry, on send, says the frame re-sends an id sent before (no answer
	// came, or the connection dropped): while the pipeline cannot tell
	// whether that id was accepted, it answers unavailable rather than
	// decide the send afresh.
	Retry bool `json:"retry,omitempty"`
	// Mode and Size are the optional display mode and size on send, in
	// their wire form (ParseMode, ParseSize): "" for scroll and normal.
	Mode string `json:"mode,omitempty"`
	Size string `json:"size,omitempty"`
}

// DecodeClient parses and validates one client frame. The returned error has
// CodeInvalid for malformed JSON or fields, CodeBadOp for an unknown op, and
// CodeTooLong for text past MaxTextRunes. On a send with a valid id but bad
// text, mode or size, the frame is returned with its ID and Room so the reject can name them.
func DecodeClient(b []byte) (ClientFrame, *Error) {
	var f ClientFrame
	if len(b) == 0 || b[0] != '{' {
		return f, &Error{Code: CodeInvalid, Message: "frame must be a JSON object"}
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return ClientFrame{}, &Error{Code: CodeInvalid, Message: "malformed JSON"}
	}
	switch f.Op {
	case OpPing:
		return f, nil
	case OpJoin, OpLeave:
		if !ValidRoom(f.Room) {
			return f, &Error{Code: CodeInvalid, Message: "room must match [A-Za-z0-9_-]{1,64}"}
		}
		if f.Op == OpLeave {
			f.Resume = nil
		}
		return f, nil
	case OpSend:
		if !ValidRoom(f.Room) {
			return f, &Error{Code: CodeInvalid, Message: "room must match [A-Za-z0-9_-]{1,64}"}
		}
		if !ValidID(f.ID) {
			return f, &Error{Code: CodeInvalid, Message: "id must be 1-64 printable ASCII characters"}
		}
		text, err := CleanText(f.Text)
		if err != nil {
			return f, err
		}
		f.Text = text
		if f.Mode, err = ParseMode(f.Mode); err != nil {
			return f, err
		}
		if f.Size, err = ParseSize(f.Size); err != nil {
			return f, err
		}
		return f, nil
	case "":
		return f, &Error{Code: CodeInvalid, Message: "missing op"}
	default:
		return f, &Error{Code: CodeBadOp, Message: "unknown op"}
	}
}

// ServerFrame is any server → client frame, with the union of all fields.
// Clients (pkg/client, the bench harness) decode into it; servers encode the
// specific types below, which leave out the fields an op does not use.
type ServerFrame struct {
	Op     string    `json:"op"`
	Room   string    `json:"room,omitempty"`
	Seq    uint64    `json:"seq,omitempty"`
	Online int       `json:"online,omitempty"`
	From   uint64    `json:"from,omitempty"` // batch: first seq covered (thinned rooms)
	To     uint64    `json:"to,omitempty"`   // batch: last seq covered (thinned rooms)
	Msgs   []Message `json:"msgs,omitempty"`
	// TS and M are a compact batch's (SubprotocolCompact) first ts and
	// messages; DecodeServer turns them into Msgs.
	TS           int64                `json:"ts,omitempty"`
	M            []stdjson.RawMessage `json:"m,omitempty"`
	Complete     bool                 `json:"complete,omitempty"`
	ID           string               `json:"id,omitempty"`
	Held         bool                 `json:"held,omitempty"`
	Code         Code                 `json:"code,omitempty"`
	RetryAfterMs int64                `json:"retry_after_ms,omitempty"`
	Seqs         []uint64             `json:"seqs,omitempty"`
	UID          string               `json:"uid,omitempty"`
	Until        int64                `json:"until,omitempty"` // purge: covers the uid's messages with ts before it
	Count        int                  `json:"count,omitempty"`
	Text         string               `json:"text,omitempty"`
	Reason       string               `json:"reason,omitempty"`
	AfterMs      int64                `json:"after_ms,omitempty"`
	Message      string               `json:"message,omitempty"`
}

// DecodeServer parses a server frame (used by clients). A compact batch
// (SubprotocolCompact) comes back as a plain one: its messages in Msgs.
func DecodeServer(b []byte) (ServerFrame, error) {
	var f ServerFrame
	if err := json.Unmarshal(b, &f); err != nil {
		return f, err
	}
	if f.Op == OpBatch && f.M != nil {
		if err := expandCompact(&f); err != nil {
			return f, err
		}
	}
	return f, nil
}

// Joined answers a join: the room's current seq and online count.
type Joined struct {
	Op     string `json:"op"`
	Room   string `json:"room"`
	Seq    uint64 `json:"seq"`
	Online int    `json:"online"`
}

// History carries recent messages after a join, or the gap after resume.
// Complete is false when the gap could not be filled entirely.
type History struct {
	Op       string    `json:"op"`
	Room     string    `json:"room"`
	Msgs     []Message `json:"msgs"`
	Complete bool      `json:"complete"`
}

// Batch carries accepted messages of one room, seq strictly increasing.
//
// From and To are set when the room is thinned to a display budget: the
// batch covers every seq from From to To, and the seqs in that range that
// are not in Msgs were left out on purpose (they are in history), so a
// client must not treat them as a gap. Msgs may then be empty. Without
// From and To a batch covers exactly its messages.
type Batch struct {
	Op   string    `json:"op"`
	Room string    `json:"room"`
	From uint64    `json:"from,omitempty"`
	To   uint64    `json:"to,omitempty"`
	Msgs []Message `json:"msgs"`
}

// Range returns the seqs the batch covers: From..To when set, else its
// first and last message's seq (0, 0 for an empty batch).
func (b *Batch) Range() (first, last uint64) {
	if b.To != 0 {
		return b.From, b.To
	}
	if len(b.Msgs) == 0 {
		return 0, 0
	}
	return b.Msgs[0].Seq, b.Msgs[len(b.Msgs)-1].Seq
}

// Ack confirms a send: with Seq when it was accepted, with Held when it
// waits for a moderator.
type Ack struct {
	Op   string `json:"op"`
	ID   string `json:"id"`
	Room string `json:"room"`
	Seq  uint64 `json:"seq,omitempty"`
	Held bool   `json:"held,omitempty"`
}

// Reject refuses a send with a code.
type Reject struct {
	Op           string `json:"op"`
	ID           string `json:"id"`
	Room         string `json:"room"`
	Code         Code   `json:"code"`
	RetryAfterMs int64  `json:"retry_after_ms,omitempty"`
	Message      string `json:"message,omitempty"`
}

// Delete retracts messages from every viewer's screen.
type Delete struct {
	Op   string   `json:"op"`
	Room string   `json:"room"`
	Seqs []uint64 `json:"seqs"`
}

// Purge retracts every recent message of a user (after a ban or timeout).
type Purge struct {
	Op   string `json:"op"`
	Room string `json:"room"`
	UID  string `json:"uid"`
	// Until (Unix ms), when set, says the purge also covers the user's
	// messages with a ts before it that arrive later.
	Until int64 `json:"until,omitempty"`
}

// Online reports a room's viewer count.
type Online struct {
	Op    string `json:"op"`
	Room  string `json:"room"`
	Count int    `json:"count"`
}

// Notice is a system line for a room (settings changed, slow mode on, ...).
// A notice with UID is addressed to that user alone (a push to one user);
// its Room is the connection's first room, so clients that predate
// personal notices show it there, and empty when it has joined none.
type Notice struct {
	Op   string `json:"op"`
	Room string `json:"room"`
	Text string `json:"text"`
	UID  string `json:"uid,omitempty"`
}

// Kicked precedes a close with CloseKicked.
type Kicked struct {
	Op     string `json:"op"`
	Reason string `json:"reason"`
}

// Reconnect asks the client to reconnect after AfterMs (graceful drain);
// a close 1001 follows.
type Reconnect struct {
	Op      string `json:"op"`
	AfterMs int64  `json:"after_ms"`
}

// ErrorFrame reports a request the server could not serve.
type ErrorFrame struct {
	Op      string `json:"op"`
	Code    Code   `json:"code"`
	Message string `json:"message,omitempty"`
}

// Encode marshals a frame. Frames are plain structs, so it cannot fail for
// the types of this package; a failure returns an error frame.
func Encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		return []byte(`{"op":"error","code":"internal"}`)
	}
	return b
}

// EncodeBatch encodes a batch frame for room. Room is cleared in each
// message (the frame names it once) without touching the caller's slice.
func EncodeBatch(room string, msgs []Message) []byte {
	return Encode(Batch{Op: OpBatch, Room: room, Msgs: stripRoom(msgs)})
}

// EncodeThinned encodes a batch of room covering seqs from..to of which
// only msgs are shown (see Batch).
func EncodeThinned(room string, from, to uint64, msgs []Message) []byte {
	if msgs == nil {
		msgs = []Message{}
	}
	return Encode(Batch{Op: OpBatch, Room: room, From: from, To: to, Msgs: stripRoom(msgs)})
}

// EncodeHistory encodes a history frame for room.
func EncodeHistory(room string, msgs []Message, complete bool) []byte {
	if msgs == nil {
		msgs = []Message{}
	}
	return Encode(History{Op: OpHistory, Room: room, Msgs: stripRoom(msgs), Complete: complete})
}

// EncodeReject encodes a reject frame from an *Error.
func EncodeReject(id, room string, e *Error) []byte {
	r := Reject{Op: OpReject, ID: id, Room: room, Code: e.Code, Message: e.Message}
	if e.RetryAfter > 0 {
		r.RetryAfterMs = int64((e.RetryAfter + 999999) / 1e6)
	}
	return Encode(r)
}

// EncodeError encodes an error frame.
func EncodeError(e *Error) []byte {
	return Encode(ErrorFrame{Op: OpError, Code: e.Code, Message: e.Message})
}

func stripRoom(msgs []Message) []Message {
	need := false
	for i := range msgs {
		if msgs[i].Room != "" {
			need = true
			break
		}
	}
	if !need {
		return msgs
	}
	out := make([]Message, len(msgs))
	copy(out, msgs)
	for i := range out {
		out[i].Room = ""
	}
	return out
}
