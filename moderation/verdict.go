package moderation

import "time"

// Code is the machine-readable reason a message was refused. The strings are
// part of the public contract and equal the protocol's error codes.
type Code string

// Reject codes.
const (
	CodeRateLimited  Code = "rate_limited" // the sender's token bucket is empty; see Verdict.RetryAfter
	CodeSlowMode     Code = "slow_mode"    // the room allows one message per N seconds per user
	CodeBanned       Code = "banned"       // the sender is banned or timed out
	CodeBlocked      Code = "blocked"      // a keyword, regex, link, duplicate or flood rule refused the text
	CodeTooLong      Code = "too_long"     // the text is longer than the room allows
	CodeInvalid      Code = "invalid"      // empty text, invalid UTF-8 or no room
	CodeUnauthorized Code = "unauthorized" // the sender may not send (not produced by the engine itself)
	CodeUnavailable  Code = "unavailable"  // the engine is at capacity; retry later
)

// Action is what happens to a message.
type Action uint8

// Actions, in increasing order of severity.
const (
	Accept Action = iota // publish the text as sent
	Mask                 // publish Verdict.Text, in which matched spans are replaced by '*'
	Hold                 // put the message in the held-for-review queue
	Reject               // refuse it with Verdict.Code
)

// String returns "accept", "mask", "hold" or "reject".
func (a Action) String() string {
	switch a {
	case Accept:
		return "accept"
	case Mask:
		return "mask"
	case Hold:
		return "hold"
	case Reject:
		return "reject"
	}
	return "unknown"
}

// Rule names reported in Verdict.Rule besides "keyword:<scope>:<word>" and
// "regex:<scope>:<pattern>" (scope is "global" or "room").
const (
	RuleBanned    = "banned"
	RuleTooLong   = "too_long"
	RuleEmpty     = "empty"        // the text is empty or blank
	RuleEncoding  = "encoding"     // the text is not valid UTF-8
	RuleNoRoom    = "room"         // Input.Room is empty
	RuleCapacity  = "capacity"     // too many rooms tracked
	RuleRateLimit = "rate_limit"   // CodeRateLimited
	RuleSlowMode  = "slow_mode"    // CodeSlowMode
	RuleLink      = "link"         // CodeBlocked by the link policy
	RuleDuplicate = "duplicate"    // CodeBlocked: same text from the same user within the window
	RuleFlood     = "flood"        // same text from many users within the window (Hold or Reject)
	RuleSpam      = "spam"         // Hold: spam score reached Settings.HoldThreshold
	RuleMode      = "display_mode" // CodeBlocked: Settings.ModePolicy does not allow top/bottom for the sender
	RuleSize      = "display_size" // CodeBlocked: Settings.SizePolicy does not allow small/large for the sender
)

// Verdict is the engine's decision about one message.
type Verdict struct {
	Action Action
	// Code is set when Action is Reject.
	Code Code
	// Rule names the rule that decided (empty on a plain Accept).
	Rule string
	// Text is the text to publish or hold: the input text, or for Mask the
	// masked text. Empty on Reject.
	Text string
	// RetryAfter is set for CodeRateLimited, CodeSlowMode and timed bans.
	RetryAfter time.Duration
	// Score is the spam score in [0,1] when Settings.HoldThreshold is on.
	Score float64
}

// Roles that Input.Role may carry.
const (
	RoleViewer   = "viewer"
	RoleMod      = "mod"
	RoleStreamer = "streamer"
	RoleService  = "service"
)

// Input is one message to check.
type Input struct {
	Room string
	// UID is the sender's stable user id; limits are keyed by it, so a
	// reconnect does not reset them.
	UID string
	// Role is one of the Role constants; "" means viewer. Moderators,
	// streamers and service accounts bypass rate limits, slow mode,
	// duplicate/flood detection, the link policy and the spam hold.
	Role string
	Text string
	// Now is the time of the message; zero means the engine's clock.
	Now time.Time
}

func privileged(role string) bool {
	return role == RoleMod || role == RoleStreamer || role == RoleService
}
