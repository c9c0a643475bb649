package bus

import (
	stdjson "encoding/json"

	"github.com/bytedance/sonic"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

var json = sonic.Config{NoQuoteTextMarshaler: true}.Froze()

// Ingest is a send on its way to logic (StreamIngest, key = room).
type Ingest struct {
	Room string `json:"room"`
	// ID is the sender's message id; logic dedupes on (room, uid, id).
	ID   string `json:"id"`
	UID  string `json:"uid"`
	Name string `json:"name"`
	// Role is the sender's token role: viewer, mod, streamer or service.
	Role string `json:"role"`
	Text string `json:"text"`
	// Kind and Color come from the publish API (system, paid, highlight).
	Kind  string `json:"kind,omitempty"`
	Color string `json:"color,omitempty"`
	// Mode and Size are the requested display mode and size (protocol.Mode*,
	// protocol.Size*); the room's display policies decide whether they may
	// be used.
	Mode string `json:"mode,omitempty"`
	Size string `json:"size,omitempty"`
	// TS is when the gateway received the send, Unix ms.
	TS int64 `json:"ts"`
	// Gateway and Conn address the reply.
	Gateway string `json:"gw"`
	Conn    uint64 `json:"conn"`
	// Trusted sends (service publishes, approved held messages) skip
	// moderation.
	Trusted bool `json:"trusted,omitempty"`
	// GeneratedID: the publish API made ID up (the caller gave none). It
	// still answers retries and names a held message, but the accepted
	// message carries no id: viewers would get some 30 bytes per message
	// that name nothing they sent (docs/protocol.md: "absent for messages
	// published without one").
	GeneratedID bool `json:"gen_id,omitempty"`
	// Retry: the sender says this re-sends an id it sent before
	// (protocol.ClientFrame.Retry).
	Retry bool `json:"retry,omitempty"`
}

// Reply answers one Ingest (StreamReply, key = gateway id). Either Seq is set
// (accepted), Held is set (waiting for review), or Code says why not.
type Reply struct {
	Gateway      string        `json:"gw"`
	Conn         uint64        `json:"conn"`
	ID           string        `json:"id"`
	Room         string        `json:"room"`
	Seq          uint64        `json:"seq,omitempty"`
	Held         bool          `json:"held,omitempty"`
	Code         protocol.Code `json:"code,omitempty"`
	Message      string        `json:"message,omitempty"`
	RetryAfterMs int64         `json:"retry_after_ms,omitempty"`
}

// Control operations.
const (
	ControlBan      = "ban"      // UID banned in Room (or everywhere when Room is "") until Until
	ControlUnban    = "unban"    // lift a ban or timeout
	ControlDelete   = "delete"   // Seqs of Room deleted
	ControlPurge    = "purge"    // recent messages of UID in Room retracted
	ControlSettings = "settings" // Room's settings replaced by Data
	ControlKeywords = "keywords" // Room's keyword list replaced by Data
	ControlKick     = "kick"     // UID's connections (optionally only Device) closed
	ControlNotice   = "notice"   // Text shown to Room's viewers
	ControlHeld     = "held"     // a message was held for review (Data: the held message)
	// ControlNoticeAll: Text shown to the viewers of every room (Room is
	// empty), by every gateway.
	ControlNoticeAll = "notice_all"
	// ControlUserNotice: Text shown to UID's connections, whichever
	// gateways hold them (Room is empty).
	ControlUserNotice = "user_notice"
)

// Control is a moderation event every logic worker and gateway applies
// (StreamControl, key = room).
type Control struct {
	Op   string   `json:"op"`
	Room string   `json:"room,omitempty"`
	UID  string   `json:"uid,omitempty"`
	Seqs []uint64 `json:"seqs,omitempty"`
	// Until is the end of a ban in Unix ms; 0 means permanent. For a
	// purge it is the end of what it retracts: the user's messages with
	// a ts before it (0: all that were sent). For an unban it is when the
	// ban was lifted: the user's purges recorded before end there (0: on
	// arrival).
	Until  int64  `json:"until,omitempty"`
	Reason string `json:"reason,omitempty"`
	Text   string `json:"text,omitempty"`
	// Device limits a kick to one device of the user; Except spares one
	// connection (gateway/conn) when a new login kicks the older ones.
	Device string `json:"device,omitempty"`
	Except string `json:"except,omitempty"`
	// By is the moderator who acted; TS when, Unix ms.
	By string `json:"by,omitempty"`
	TS int64  `json:"ts,omitempty"`
	// Data carries settings or keyword lists as JSON.
	Data stdjson.RawMessage `json:"data,omitempty"`
}

// Marshal encodes v as JSON (the value encoding of every stream).
func Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes a stream value.
func Unmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
