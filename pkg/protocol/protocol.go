// Package protocol defines the danmaku wire protocol: the JSON frames that
// travel over WebSocket between viewers and gateways, the message record that
// flows through the pipeline, the reject codes clients see, and the validation
// rules for every client-supplied field.
//
// Every frame is a JSON object with an "op" field. Client frames are decoded
// with DecodeClient, which validates each field; server frames are encoded with
// the Append* functions, which produce the exact bytes sent to viewers (the
// gateway wraps them in a WebSocket header once per batch, not per viewer).
//
// See docs/protocol.md for the full contract.
package protocol

// Client → server operations.
// Subprotocol is the WebSocket subprotocol name of this protocol. A client
// may offer it in Sec-WebSocket-Protocol (the gateway then answers with it)
// or offer none; a client offering only other names gets no subprotocol
// and, per RFC 6455, fails the connection on its side.
const Subprotocol = "danmaku.v1"

// SubprotocolCompact is Subprotocol with compact batches: a client that
// offers it (before danmaku.v1, as a fallback for gateways without it)
// and gets it answered may receive batches in the compact form (see
// EncodeCompact and docs/protocol.md, "Compact batches"), as well as in
// the plain one. Clients that do not offer it never see a compact batch.
const SubprotocolCompact = "danmaku.v1.compact"

const (
	OpJoin  = "join"
	OpLeave = "leave"
	OpSend  = "send"
	OpPing  = "ping"
)

// Server → client operations.
const (
	OpJoined    = "joined"
	OpHistory   = "history"
	OpBatch     = "batch"
	OpAck       = "ack"
	OpReject    = "reject"
	OpDelete    = "delete"
	OpPurge     = "purge"
	OpOnline    = "online"
	OpNotice    = "notice"
	OpKicked    = "kicked"
	OpReconnect = "reconnect"
	OpPong      = "pong"
	OpError     = "error"
)

// Limits of the wire protocol. Per-room limits (for example the maximum
// message length a room allows) are lower and enforced by moderation.
const (
	// MaxRoomLen is the longest room id.
	MaxRoomLen = 64
	// MaxIDLen is the longest sender message id.
	MaxIDLen = 64
	// MaxTextRunes is the hard cap on a message's text, in runes, whatever
	// the room allows. Longer text is rejected with CodeTooLong.
	MaxTextRunes = 500
	// MaxFrameBytes is the largest client frame a gateway accepts by
	// default (gateway.Config.MaxMessage); larger WebSocket messages are
	// closed with 1009.
	MaxFrameBytes = 4096
)

// Message kinds. A message's kind decides its priority when a hot room is
// thinned: system > paid/highlight > moderators > others.
const (
	KindNormal    = ""
	KindSystem    = "system"
	KindPaid      = "paid"
	KindHighlight = "highlight"
)

// Display modes (Message.Mode): where a danmaku is shown. Clients that do
// not know a mode show the message scrolling, as before modes existed.
const (
	// ModeScroll flies right to left across the screen (the default; on
	// the wire it is the absent field, "scroll" is accepted on input).
	ModeScroll = ""
	// ModeTop stays centred at the top of the screen for a few seconds.
	ModeTop = "top"
	// ModeBottom stays centred at the bottom of the screen for a few seconds.
	ModeBottom = "bottom"
)

// Display sizes (Message.Size). "normal" is accepted on input and sent as
// the absent field.
const (
	SizeNormal = ""
	SizeSmall  = "small"
	SizeLarge  = "large"
)

// Message is one accepted danmaku. It is the record that logic assigns a seq
// to, dispatch batches, history stores and viewers receive in a batch.
type Message struct {
	// Room is the room id. It is omitted inside batch and history frames,
	// which name the room once.
	Room string `json:"room,omitempty"`
	// Seq is the per-room sequence number, strictly increasing, from 1.
	Seq uint64 `json:"seq"`
	// ID is the sender's message id (empty for messages published over HTTP
	// without one).
	ID string `json:"id,omitempty"`
	// UID and Name identify the sender.
	UID  string `json:"uid"`
	Name string `json:"name"`
	// Text is the message text after moderation (possibly masked).
	Text string `json:"text"`
	// TS is the time logic accepted the message, in Unix milliseconds.
	TS int64 `json:"ts"`
	// Kind is KindNormal, KindSystem, KindPaid or KindHighlight.
	Kind string `json:"kind,omitempty"`
	// Role is the sender's role when it is not a plain viewer (mod,
	// streamer, service).
	Role string `json:"role,omitempty"`
	// Color is an optional display colour (#rrggbb) for highlighted messages.
	Color string `json:"color,omitempty"`
	// Mode is ModeScroll (absent), ModeTop or ModeBottom.
	Mode string `json:"mode,omitempty"`
	// Size is SizeNormal (absent), SizeSmall or SizeLarge.
	Size string `json:"size,omitempty"`
	// Deleted is set on messages a moderator deleted; only moderators asking
	// for deleted messages see them.
	Deleted bool `json:"deleted,omitempty"`
}
