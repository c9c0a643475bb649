package moderation

import "github.com/danmaku-live/danmaku/pkg/protocol"

// DisplayInput is a message's request to be shown other than scrolling at
// normal size.
type DisplayInput struct {
	Room string
	// Role is the sender's role as the message will carry it ("" or
	// RoleViewer for a plain viewer).
	Role string
	// Kind is the message's kind (protocol.Kind*).
	Kind string
	// Mode and Size are in their wire form (protocol.ParseMode, ParseSize).
	Mode, Size string
}

// CheckDisplay decides whether in may use its display mode and size under
// the room's ModePolicy and SizePolicy: Accept, or Reject with CodeBlocked
// and RuleMode or RuleSize. Scroll at normal size is always accepted. It
// applies to every sender, trusted ones included (a service relaying a
// viewer's message is held to what the viewer may do). Safe for concurrent
// use.
func (e *Engine) CheckDisplay(in DisplayInput) Verdict {
	if in.Mode == protocol.ModeScroll && in.Size == protocol.SizeNormal {
		return Verdict{}
	}
	s := e.Settings(in.Room)
	priv := privileged(in.Role) || in.Kind == protocol.KindPaid || in.Kind == protocol.KindHighlight || in.Kind == protocol.KindSystem
	if in.Mode != protocol.ModeScroll && !allows(s.ModePolicy, priv) {
		return reject(CodeBlocked, RuleMode, 0)
	}
	if in.Size != protocol.SizeNormal && !allows(s.SizePolicy, priv) {
		return reject(CodeBlocked, RuleSize, 0)
	}
	return Verdict{}
}

// allows reports whether a display policy lets a sender (privileged or
// not) use what it governs.
func allows(policy string, priv bool) bool {
	switch policy {
	case DisplayAll:
		return true
	case DisplayNone:
		return false
	}
	return priv // DisplayPrivileged, and the empty default
}
