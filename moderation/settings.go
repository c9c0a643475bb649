package moderation

import (
	"cmp"
	"errors"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"
)

// Limits on configuration sizes.
const (
	MaxKeywords      = 100_000 // per list
	MaxKeywordRunes  = 64      // per keyword
	MaxRules         = 100     // regex rules per room or global
	MaxPatternLength = 512     // bytes per regex pattern
	MaxLinkAllow     = 200     // link allow-list entries
	maxLengthLimit   = 10_000
)

// Errors returned by configuration methods. Validation errors wrap ErrInvalid.
var (
	ErrInvalid = errors.New("moderation: invalid configuration")
)

// Link policies.
const (
	LinkAllow     = "allow"     // links pass (default)
	LinkBlock     = "block"     // any link is rejected with CodeBlocked
	LinkAllowList = "allowlist" // links pass only to Settings.LinkAllow domains and their subdomains
)

// Display policies (Settings.ModePolicy, Settings.SizePolicy): who may ask
// for a display mode other than scroll, or a size other than normal.
const (
	// DisplayAll lets everyone use them.
	DisplayAll = "all"
	// DisplayPrivileged lets moderators, streamers and services use them,
	// and anyone's paid, highlighted or system messages.
	DisplayPrivileged = "privileged"
	// DisplayNone lets no one use them: every message scrolls at normal size.
	DisplayNone = "none"
)

// Keyword and rule actions.
const (
	ActionBlock  = "block"  // reject with CodeBlocked (default)
	ActionMask   = "mask"   // replace the matched text by '*' and accept
	ActionHold   = "hold"   // hold for review
	ActionReject = "reject" // FloodAction only: reject with CodeBlocked
)

// Settings are a room's limits. Zero values mean the documented defaults
// (taken from Config.Defaults first, then the built-in ones), so a zero
// Settings is a valid "all defaults" value.
type Settings struct {
	// MaxLength is the longest accepted text in runes. Zero means 100.
	MaxLength int `json:"max_length"`
	// RatePerSec is the token-bucket refill rate per user. Zero means 1;
	// a negative value turns rate limiting off.
	RatePerSec float64 `json:"rate_per_sec"`
	// Burst is the token-bucket size. Zero means 3.
	Burst int `json:"burst"`
	// SlowModeSec allows one message per user per that many seconds.
	// Zero means off.
	SlowModeSec int `json:"slow_mode_sec"`
	// LinkPolicy is LinkAllow, LinkBlock or LinkAllowList. Empty means LinkAllow.
	LinkPolicy string `json:"link_policy"`
	// LinkAllow lists the domains allowed under LinkAllowList ("youtube.com"
	// also allows "www.youtube.com").
	LinkAllow []string `json:"link_allow,omitempty"`
	// DuplicateWindowSec rejects a user's text that repeats one of their
	// messages within that many seconds. Zero means 30; negative means off.
	DuplicateWindowSec int `json:"duplicate_window_sec"`
	// FloodUsers turns flood detection on: the same text from at least this
	// many distinct users within FloodWindowSec. Zero means off; else ≥ 2.
	FloodUsers int `json:"flood_users"`
	// FloodWindowSec is the flood window. Zero means 10.
	FloodWindowSec int `json:"flood_window_sec"`
	// FloodAction is ActionHold or ActionReject. Empty means ActionHold.
	FloodAction string `json:"flood_action"`
	// HoldThreshold holds messages whose spam score reaches it. Zero means
	// off; else in (0, 1].
	HoldThreshold float64 `json:"hold_threshold"`
	// DisplayBudget is how many messages per second viewers of the room
	// are shown when it runs hot (hot-room thinning in dispatch): past it,
	// system, paid/highlighted and moderators' messages are kept first.
	// Thinned messages are still accepted, acknowledged and stored. Zero
	// means the operator's default (danmaku --thin-budget, off unless
	// set); -1 turns thinning off for the room.
	DisplayBudget int `json:"display_budget,omitempty"`
	// ModePolicy says who may send top and bottom danmaku (protocol.ModeTop,
	// protocol.ModeBottom): DisplayAll, DisplayPrivileged or DisplayNone.
	// Empty means DisplayPrivileged.
	ModePolicy string `json:"mode_policy,omitempty"`
	// SizePolicy says who may send small and large danmaku: DisplayAll,
	// DisplayPrivileged or DisplayNone. Empty means DisplayAll.
	SizePolicy string `json:"size_policy,omitempty"`
}

// BuiltinSettings returns the defaults a new room starts with.
func BuiltinSettings() Settings { return builtinSettings }

// builtinSettings are the defaults a new room starts with.
var builtinSettings = Settings{
	MaxLength:          100,
	RatePerSec:         1,
	Burst:              3,
	LinkPolicy:         LinkAllow,
	DuplicateWindowSec: 30,
	FloodWindowSec:     10,
	FloodAction:        ActionHold,
	ModePolicy:         DisplayPrivileged,
	SizePolicy:         DisplayAll,
}

// Validate reports whether s holds usable values.
func (s Settings) Validate() error {
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, a...)...)
	}
	switch {
	case s.MaxLength < 0 || s.MaxLength > maxLengthLimit:
		return bad("max_length %d out of [0, %d]", s.MaxLength, maxLengthLimit)
	case math.IsNaN(s.RatePerSec) || math.IsInf(s.RatePerSec, 0) || s.RatePerSec > 1000:
		return bad("rate_per_sec %v out of range", s.RatePerSec)
	case s.Burst < 0 || s.Burst > 1000:
		return bad("burst %d out of [0, 1000]", s.Burst)
	case s.SlowModeSec < 0 || s.SlowModeSec > 86400:
		return bad("slow_mode_sec %d out of [0, 86400]", s.SlowModeSec)
	case s.DuplicateWindowSec > 3600:
		return bad("duplicate_window_sec %d above 3600", s.DuplicateWindowSec)
	case s.FloodUsers < 0 || s.FloodUsers == 1 || s.FloodUsers > 10000:
		return bad("flood_users %d: want 0 or [2, 10000]", s.FloodUsers)
	case s.FloodWindowSec < 0 || s.FloodWindowSec > 3600:
		return bad("flood_window_sec %d out of [0, 3600]", s.FloodWindowSec)
	case math.IsNaN(s.HoldThreshold) || s.HoldThreshold < 0 || s.HoldThreshold > 1:
		return bad("hold_threshold %v out of [0, 1]", s.HoldThreshold)
	case s.DisplayBudget < -1 || s.DisplayBudget > 100000:
		return bad("display_budget %d out of [-1, 100000]", s.DisplayBudget)
	case len(s.LinkAllow) > MaxLinkAllow:
		return bad("link_allow has %d entries, max %d", len(s.LinkAllow), MaxLinkAllow)
	}
	switch s.LinkPolicy {
	case "", LinkAllow, LinkBlock, LinkAllowList:
	default:
		return bad("link_policy %q: want allow, block or allowlist", s.LinkPolicy)
	}
	switch s.FloodAction {
	case "", ActionHold, ActionReject:
	default:
		return bad("flood_action %q: want hold or reject", s.FloodAction)
	}
	for name, p := range map[string]string{"mode_policy": s.ModePolicy, "size_policy": s.SizePolicy} {
		switch p {
		case "", DisplayAll, DisplayPrivileged, DisplayNone:
		default:
			return bad("%s %q: want all, privileged or none", name, p)
		}
	}
	for _, d := range s.LinkAllow {
		if !validDomain(d) {
			return bad("link_allow entry %q is not a domain", d)
		}
	}
	return nil
}

func validDomain(d string) bool {
	if len(d) == 0 || len(d) > 253 || !strings.Contains(d, ".") || strings.HasPrefix(d, ".") || strings.HasSuffix(d, ".") {
		return false
	}
	for i := 0; i < len(d); i++ {
		c := d[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// WithDefaults fills the zero fields of s from d. An unset LinkPolicy
// takes d's, with d's LinkAllow unless s has an allow list of its own.
func (s Settings) WithDefaults(d Settings) Settings {
	s.MaxLength = cmp.Or(s.MaxLength, d.MaxLength)
	s.RatePerSec = cmp.Or(s.RatePerSec, d.RatePerSec)
	s.Burst = cmp.Or(s.Burst, d.Burst)
	s.SlowModeSec = cmp.Or(s.SlowModeSec, d.SlowModeSec)
	if s.LinkPolicy == "" {
		s.LinkPolicy = d.LinkPolicy
		if len(s.LinkAllow) == 0 {
			s.LinkAllow = d.LinkAllow
		}
	}
	s.DuplicateWindowSec = cmp.Or(s.DuplicateWindowSec, d.DuplicateWindowSec)
	s.FloodUsers = cmp.Or(s.FloodUsers, d.FloodUsers)
	s.FloodWindowSec = cmp.Or(s.FloodWindowSec, d.FloodWindowSec)
	s.FloodAction = cmp.Or(s.FloodAction, d.FloodAction)
	s.HoldThreshold = cmp.Or(s.HoldThreshold, d.HoldThreshold)
	s.ModePolicy = cmp.Or(s.ModePolicy, d.ModePolicy)
	s.SizePolicy = cmp.Or(s.SizePolicy, d.SizePolicy)
	return s
}

// limits are resolved Settings in the form the hot path uses.
type limits struct {
	s           Settings // resolved, as reported by Engine.Settings
	maxLen      int
	rate        float64 // tokens per second; 0 = unlimited
	burst       float64
	slow        int64 // ns; 0 = off
	linkPolicy  string
	linkAllow   []string // lower case
	dupWindow   int64    // ns; 0 = off
	floodUsers  int
	floodWindow int64 // ns
	floodReject bool
	hold        float64
	idle        int64 // ns after which a user's state carries no information
}

func newLimits(s Settings) limits {
	l := limits{
		s:           s,
		maxLen:      s.MaxLength,
		burst:       float64(s.Burst),
		slow:        int64(s.SlowModeSec) * int64(time.Second),
		linkPolicy:  s.LinkPolicy,
		floodUsers:  s.FloodUsers,
		floodWindow: int64(s.FloodWindowSec) * int64(time.Second),
		floodReject: s.FloodAction == ActionReject,
		hold:        s.HoldThreshold,
	}
	if s.RatePerSec > 0 {
		l.rate = s.RatePerSec
	}
	if s.DuplicateWindowSec > 0 {
		l.dupWindow = int64(s.DuplicateWindowSec) * int64(time.Second)
	}
	for _, d := range s.LinkAllow {
		l.linkAllow = append(l.linkAllow, strings.ToLower(d))
	}
	l.idle = max(l.slow, l.dupWindow)
	if l.rate > 0 {
		l.idle = max(l.idle, int64(l.burst/l.rate*float64(time.Second)))
	}
	l.idle += int64(time.Second)
	return l
}

// KeywordList is a list of keywords with one action.
//
// A keyword matches on word boundaries ("ass" does not match "class"),
// except at an end written in a script without spaces (Chinese, Japanese,
// Korean, Thai...), which matches anywhere. A leading or trailing '*' lifts
// the boundary at that end: "*foo*" matches inside words, "foo*" matches
// words starting with foo. Keywords are normalised like the text, so
// "F.U.C.K" and "fuck" are the same keyword; multi-word phrases are allowed.
type KeywordList struct {
	Words []string `json:"keywords"`
	// Action is ActionBlock, ActionMask or ActionHold. Empty means ActionBlock.
	Action string `json:"action"`
}

// Validate reports whether kl can be compiled.
func (kl KeywordList) Validate() error {
	_, err := compileKeywords(kl, "")
	return err
}

func parseAction(a string) (Action, error) {
	switch a {
	case "", ActionBlock:
		return Reject, nil
	case ActionMask:
		return Mask, nil
	case ActionHold:
		return Hold, nil
	}
	return Accept, fmt.Errorf("%w: action %q: want block, mask or hold", ErrInvalid, a)
}

// Rule is a regular expression (Go RE2 syntax) matched against the text as
// sent (use (?i) for case-insensitive rules).
type Rule struct {
	Pattern string `json:"pattern"`
	// Action is ActionBlock, ActionMask or ActionHold. Empty means ActionBlock.
	Action string `json:"action"`
}

type compiledRule struct {
	re     *regexp.Regexp
	action Action
	name   string // "regex:<scope>:<pattern>"
}

func compileRules(rules []Rule, scope string) ([]compiledRule, error) {
	if len(rules) > MaxRules {
		return nil, fmt.Errorf("%w: %d rules, max %d", ErrInvalid, len(rules), MaxRules)
	}
	out := make([]compiledRule, 0, len(rules))
	for _, r := range rules {
		if r.Pattern == "" || len(r.Pattern) > MaxPatternLength {
			return nil, fmt.Errorf("%w: rule pattern length %d out of [1, %d]", ErrInvalid, len(r.Pattern), MaxPatternLength)
		}
		a, err := parseAction(r.Action)
		if err != nil {
			return nil, err
		}
		re, err := regexp.Compile(r.Pattern)
		if err != nil {
			return nil, fmt.Errorf("%w: rule %q: %v", ErrInvalid, r.Pattern, err)
		}
		out = append(out, compiledRule{re: re, action: a, name: "regex:" + scope + ":" + r.Pattern})
	}
	return out, nil
}
