package protocol

import "time"

// Code is a machine-readable reason a client request was refused. Clients
// see it in reject frames, error frames and HTTP error bodies.
type Code string

// Reject and error codes of the public contract.
const (
	CodeRateLimited  Code = "rate_limited" // the sender's token bucket is empty; retry_after_ms says when
	CodeSlowMode     Code = "slow_mode"    // the room allows one message per N seconds per user
	CodeBanned       Code = "banned"       // the sender is banned or timed out in this room
	CodeBlocked      Code = "blocked"      // a keyword, regex, link or duplicate rule refused the text
	CodeTooLong      Code = "too_long"     // the text is longer than the room allows
	CodeInvalid      Code = "invalid"      // a field is missing or malformed
	CodeUnauthorized Code = "unauthorized" // anonymous viewers cannot send; the token does not allow this
	CodeUnavailable  Code = "unavailable"  // the pipeline is overloaded or down; retry later
	// Codes used only in error frames and HTTP errors.
	CodeForbidden Code = "forbidden"  // wrong role or room scope
	CodeNotFound  Code = "not_found"  // unknown room, message or resource
	CodeTooLarge  Code = "too_large"  // request body too large
	CodeInternal  Code = "internal"   // an unexpected server error
	CodeBadOp     Code = "unknown_op" // the op is not one the server knows
	CodeConflict  Code = "conflict"   // the resource's state forbids it (a stream session is already live)
)

// Error is a refusal with a code the client sees. It implements error.
type Error struct {
	Code    Code
	Message string
	// RetryAfter, when positive, tells the client when a retry may succeed.
	RetryAfter time.Duration
}

// Error returns "code: message".
func (e *Error) Error() string {
	if e.Message == "" {
		return string(e.Code)
	}
	return string(e.Code) + ": " + e.Message
}

// NewError returns an *Error with the code and message.
func NewError(code Code, msg string) *Error { return &Error{Code: code, Message: msg} }

// Application close codes (the 4000 range of RFC 6455). RFC codes used by the
// gateway: 1000 normal, 1001 going away (drain), 1002 protocol error,
// 1007 invalid UTF-8, 1008 policy violation, 1009 message too big,
// 1011 internal error.
const (
	// CloseSlowConsumer: the viewer did not read fast enough and its
	// outbound buffer passed the hard cap.
	CloseSlowConsumer uint16 = 4000
	// CloseKicked: a moderator kicked the user, or the same user and device
	// logged in elsewhere; a kicked frame precedes it.
	CloseKicked uint16 = 4001
	// CloseIdleTimeout: no frame (not even a ping) arrived within the idle
	// timeout.
	CloseIdleTimeout uint16 = 4002
	// CloseBadFrames: too many invalid protocol frames (bad JSON, unknown
	// ops) in a short time.
	CloseBadFrames uint16 = 4003
	// CloseTokenExpired: the connection's token expired.
	CloseTokenExpired uint16 = 4005
)
