package moderation

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"
)

var t0 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)

func newTestEngine(t testing.TB, cfg Config) *Engine {
	t.Helper()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// noLimits turns off the stateful limits so content rules can be tested alone.
var noLimits = Settings{RatePerSec: -1, DuplicateWindowSec: -1}

func TestKeywords(t *testing.T) {
	e := newTestEngine(t, Config{
		Global:   KeywordList{Words: []string{"fuck", "shit", "ass", "hell", "cunt", "cock", "rapist", "anal", "傻逼", "kill yourself", "*nazi*", "spam*"}},
		Defaults: noLimits,
	})
	tests := []struct {
		text string
		want Action
		rule string
	}{
		// Evasions that must be caught.
		{"fuck", Reject, "keyword:global:fuck"},
		{"FUCK you", Reject, "keyword:global:fuck"},
		{"ｆｕｃｋ", Reject, "keyword:global:fuck"},
		{"ＦＵＣＫ　ｙｏｕ", Reject, "keyword:global:fuck"},
		{"f\u200buck", Reject, "keyword:global:fuck"},
		{"fu\u00adck", Reject, "keyword:global:fuck"},
		{"f.u.c.k this", Reject, "keyword:global:fuck"},
		{"f u c k this", Reject, "keyword:global:fuck"},
		{"f_u_c_k", Reject, "keyword:global:fuck"},
		{"f-u-c-k", Reject, "keyword:global:fuck"},
		{"fuuuuuck", Reject, "keyword:global:fuck"},
		{"fuсk", Reject, "keyword:global:fuck"},    // Cyrillic с
		{"ѕһіt", Reject, "keyword:global:shit"},    // Cyrillic ѕ һ і
		{"sh1t", Reject, "keyword:global:shit"},    // leet
		{"$h!t", Reject, "keyword:global:shit"},    // leet
		{"a$$", Reject, "keyword:global:ass"},      // leet
		{"@ss hole", Reject, "keyword:global:ass"}, // leet
		{"asssss", Reject, "keyword:global:ass"},
		{"a.s.s", Reject, "keyword:global:ass"},
		{"kick-ass", Reject, "keyword:global:ass"},
		{"what the hell!", Reject, "keyword:global:hell"},
		{"𝐟𝐮𝐜𝐤", Reject, "keyword:global:fuck"},
		{"F̶u̶c̶k̶", Reject, "keyword:global:fuck"},
		{"fück", Reject, "keyword:global:fuck"},
		{"你是傻逼吧", Reject, "keyword:global:傻逼"},
		{"你是傻 逼吧", Reject, "keyword:global:傻逼"},
		{"你是傻\u200b逼吧", Reject, "keyword:global:傻逼"},
		{"fuck你", Reject, "keyword:global:fuck"},
		{"just kill    yourself", Reject, "keyword:global:kill yourself"},
		{"neonazis", Reject, "keyword:global:*nazi*"},
		{"spammer", Reject, "keyword:global:spam*"},
		// Innocent text that must pass.
		{"class", Accept, ""},
		{"assistant", Accept, ""},
		{"passage", Accept, ""},
		{"Scunthorpe", Accept, ""},
		{"hello there", Accept, ""},
		{"shell", Accept, ""},
		{"as sorted", Accept, ""},
		{"as soon as", Accept, ""},
		{"analysis", Accept, ""},
		{"cocktail", Accept, ""},
		{"therapist", Accept, ""},
		{"Hello, shell-class assistant", Accept, ""},
		{"grass", Accept, ""},
		{"I am a bass player", Accept, ""},
		{"shiitake", Accept, ""},
		{"2023年你好", Accept, ""},
		{"kill it yourself", Accept, ""},
		{"antispam", Accept, ""},
		{"gg wp 666", Accept, ""},
		{"he'll be there", Accept, ""},
		{"Sussex and Essex", Accept, ""},
		{"the cockpit of a hellcat", Accept, ""},
		{"basement bassist", Accept, ""},
		{"classic cocktails at the assembly", Accept, ""},
		{"she’ll see, we'll see", Accept, ""},
		{"f'u'c'k", Reject, "keyword:global:fuck"},
	}
	for _, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			v := e.Check(Input{Room: "r", UID: "u", Text: tc.text, Now: t0})
			if v.Action != tc.want || v.Rule != tc.rule {
				n, _ := Normalize(tc.text)
				t.Fatalf("Check(%q) = %v %q, want %v %q (normalised %q)", tc.text, v.Action, v.Rule, tc.want, tc.rule, n)
			}
			if tc.want == Reject && v.Code != CodeBlocked {
				t.Fatalf("code %q, want blocked", v.Code)
			}
			if tc.want == Accept && v.Text != tc.text {
				t.Fatalf("text %q, want %q", v.Text, tc.text)
			}
		})
	}
}

func TestMask(t *testing.T) {
	e := newTestEngine(t, Config{Defaults: noLimits})
	if err := e.SetRoomKeywords("r", KeywordList{Words: []string{"fuck", "ass", "傻逼"}, Action: ActionMask}); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ in, want string }{
		{"oh fuck off", "oh **** off"},
		{"oh fuuuuck off", "oh ******* off"},
		{"oh f.u.c.k off", "oh ******* off"},
		{"oh f\u200bu\u200bck off", "oh **** off"},
		{"ｆｕｃｋ ｙｏｕ", "**** ｙｏｕ"},
		{"a$$ and class", "*** and class"},
		{"你是傻逼吧", "你是**吧"},
		{"fuck and ass", "**** and ***"},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			v := e.Check(Input{Room: "r", UID: "u", Text: tc.in, Now: t0})
			if v.Action != Mask || v.Text != tc.want || v.Code != "" {
				t.Fatalf("Check(%q) = %v %q %q, want Mask %q", tc.in, v.Action, v.Text, v.Rule, tc.want)
			}
		})
	}
	// Other rooms are not affected by the room list.
	if v := e.Check(Input{Room: "other", UID: "u", Text: "fuck", Now: t0}); v.Action != Accept {
		t.Fatalf("other room: %v %q", v.Action, v.Rule)
	}
}

func TestCombinedScopes(t *testing.T) {
	e := newTestEngine(t, Config{Defaults: noLimits, Global: KeywordList{Words: []string{"darn"}, Action: ActionMask}})
	if err := e.SetRoomKeywords("r", KeywordList{Words: []string{"promo"}, Action: ActionHold}); err != nil {
		t.Fatal(err)
	}
	v := e.Check(Input{Room: "r", UID: "u", Text: "darn promo", Now: t0})
	if v.Action != Hold || v.Rule != "keyword:room:promo" || v.Text != "**** promo" {
		t.Fatalf("mask+hold: %+v", v)
	}
	if err := e.SetRoomRules("r", []Rule{{Pattern: "promo"}}); err != nil {
		t.Fatal(err)
	}
	v = e.Check(Input{Room: "r", UID: "u2", Text: "darn promo", Now: t0})
	if v.Action != Reject || v.Code != CodeBlocked || v.Rule != "regex:room:promo" || v.Text != "" {
		t.Fatalf("block wins: %+v", v)
	}
	if got := e.RoomRules("r"); len(got) != 1 || got[0].Pattern != "promo" {
		t.Fatalf("RoomRules = %+v", got)
	}
	if got := e.RoomKeywords("r"); len(got.Words) != 1 {
		t.Fatalf("rules replaced the keywords: %+v", got)
	}
}

func TestHoldKeywords(t *testing.T) {
	e := newTestEngine(t, Config{Defaults: noLimits})
	if err := e.SetRoomKeywords("r", KeywordList{Words: []string{"giveaway"}, Action: ActionHold}); err != nil {
		t.Fatal(err)
	}
	v := e.Check(Input{Room: "r", UID: "u", Text: "free GIVEAWAY here", Now: t0})
	if v.Action != Hold || v.Rule != "keyword:room:giveaway" || v.Text != "free GIVEAWAY here" {
		t.Fatalf("got %+v", v)
	}
	if got := e.RoomKeywords("r"); len(got.Words) != 1 || got.Action != ActionHold {
		t.Fatalf("RoomKeywords = %+v", got)
	}
}

func TestRegexRules(t *testing.T) {
	e := newTestEngine(t, Config{Defaults: noLimits, GlobalRules: []Rule{{Pattern: `(?i)\bbuy\s+followers\b`}}})
	if err := e.SetRoomRules("r", []Rule{{Pattern: `\d{11}`, Action: ActionMask}, {Pattern: `(?i)discord`, Action: ActionHold}}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text     string
		action   Action
		rule     string
		wantText string
	}{
		{"Buy  Followers now", Reject, "regex:global:(?i)\\bbuy\\s+followers\\b", ""},
		{"call 13800138000 ok", Mask, `regex:room:\d{11}`, "call *********** ok"},
		{"join my Discord", Hold, "regex:room:(?i)discord", "join my Discord"},
		{"nothing here", Accept, "", "nothing here"},
	}
	for _, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			v := e.Check(Input{Room: "r", UID: "u", Text: tc.text, Now: t0})
			if v.Action != tc.action || v.Rule != tc.rule || v.Text != tc.wantText {
				t.Fatalf("got %v %q %q, want %v %q %q", v.Action, v.Rule, v.Text, tc.action, tc.rule, tc.wantText)
			}
		})
	}
	if err := e.SetRoomRules("r", []Rule{{Pattern: `(`}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad regex: err = %v", err)
	}
	if err := e.SetRoomRules("r", []Rule{{Pattern: `x`, Action: "explode"}}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad action: err = %v", err)
	}
}

func TestRateLimit(t *testing.T) {
	e := newTestEngine(t, Config{Defaults: Settings{DuplicateWindowSec: -1}})
	check := func(uid, role string, at time.Duration) Verdict {
		return e.Check(Input{Room: "r", UID: uid, Role: role, Text: "hi", Now: t0.Add(at)})
	}
	for i := range 3 { // burst 3
		if v := check("u", "", 0); v.Action != Accept {
			t.Fatalf("message %d: %+v", i, v)
		}
	}
	v := check("u", "", 0)
	if v.Action != Reject || v.Code != CodeRateLimited || v.Rule != RuleRateLimit || v.RetryAfter != time.Second {
		t.Fatalf("4th message: %+v", v)
	}
	if v := check("u", "", 500*time.Millisecond); v.Code != CodeRateLimited || v.RetryAfter != 500*time.Millisecond {
		t.Fatalf("after 0.5s: %+v", v)
	}
	if v := check("u", "", time.Second); v.Action != Accept {
		t.Fatalf("after 1s: %+v", v)
	}
	if v := check("other", "", time.Second); v.Action != Accept {
		t.Fatalf("other user: %+v", v)
	}
	for i := range 10 {
		if v := check("m", RoleMod, time.Second); v.Action != Accept {
			t.Fatalf("mod message %d: %+v", i, v)
		}
	}
}

func TestSlowMode(t *testing.T) {
	e := newTestEngine(t, Config{})
	if err := e.SetSettings("r", Settings{SlowModeSec: 10}); err != nil {
		t.Fatal(err)
	}
	if v := e.Check(Input{Room: "r", UID: "u", Text: "one", Now: t0}); v.Action != Accept {
		t.Fatalf("first: %+v", v)
	}
	v := e.Check(Input{Room: "r", UID: "u", Text: "two", Now: t0.Add(4 * time.Second)})
	if v.Code != CodeSlowMode || v.Rule != RuleSlowMode || v.RetryAfter != 6*time.Second {
		t.Fatalf("second: %+v", v)
	}
	if v := e.Check(Input{Room: "r", UID: "u", Text: "three", Now: t0.Add(10 * time.Second)}); v.Action != Accept {
		t.Fatalf("after 10s: %+v", v)
	}
	if v := e.Check(Input{Room: "r", UID: "s", Role: RoleStreamer, Text: "a", Now: t0}); v.Action != Accept {
		t.Fatalf("streamer: %+v", v)
	}
	if v := e.Check(Input{Room: "r", UID: "s", Role: RoleStreamer, Text: "b", Now: t0.Add(time.Second)}); v.Action != Accept {
		t.Fatalf("streamer bypasses slow mode: %+v", v)
	}
	if s := e.Settings("r"); s.SlowModeSec != 10 || s.MaxLength != 100 || s.Burst != 3 || s.RatePerSec != 1 {
		t.Fatalf("Settings = %+v", s)
	}
}

func TestMaxLength(t *testing.T) {
	e := newTestEngine(t, Config{})
	if err := e.SetSettings("r", Settings{MaxLength: 5}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text, role string
		code       Code
	}{
		{"你好你好你", "", ""},
		{"你好你好你好", "", CodeTooLong},
		{"abcdef", RoleMod, CodeTooLong},
		{"", "", CodeInvalid},
		{"   ", "", CodeInvalid},
		{"a\xffb", "", CodeInvalid},
	}
	for i, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			v := e.Check(Input{Room: "r", UID: fmt.Sprint("u", i), Role: tc.role, Text: tc.text, Now: t0})
			if v.Code != tc.code {
				t.Fatalf("got %+v, want code %q", v, tc.code)
			}
		})
	}
}

func TestLinks(t *testing.T) {
	e := newTestEngine(t, Config{Defaults: noLimits})
	if err := e.SetSettings("block", Settings{LinkPolicy: LinkBlock, RatePerSec: -1, DuplicateWindowSec: -1}); err != nil {
		t.Fatal(err)
	}
	if err := e.SetSettings("allow", Settings{LinkPolicy: LinkAllowList, LinkAllow: []string{"youtube.com", "bilibili.com"}, RatePerSec: -1, DuplicateWindowSec: -1}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		room, text, role string
		blocked          bool
	}{
		{"block", "see https://example.org/x", "", true},
		{"block", "see example.com/x", "", true},
		{"block", "see example.com", "", true},
		{"block", "go to www.test.co now", "", true},
		{"block", "youtu.be/abc", "", true},
		{"block", "example dot com", "", true},
		{"block", "example(dot)com", "", true},
		{"block", "example[.]com", "", true},
		{"block", "example . com", "", true},
		{"block", "ｅｘａｍｐｌｅ．ｃｏｍ", "", true},
		{"block", "example。com", "", true},
		{"block", "EXAMPLE.COM", "", true},
		{"block", "see example.com", RoleMod, false},
		{"block", "e.g. this is fine", "", false},
		{"block", "ok.so what", "", false},
		{"block", "I want to go.to bed", "", false},
		{"block", "version 1.2.3 released", "", false},
		{"block", "wait... what", "", false},
		{"block", "a dot on the map", "", false},
		{"allow", "https://www.youtube.com/watch?v=1", "", false},
		{"allow", "m.bilibili.com/video", "", false},
		{"allow", "evil-youtube.com", "", true},
		{"allow", "example dot com", "", true},
		{"other", "example.com", "", false},
	}
	for _, tc := range tests {
		t.Run(tc.room+"/"+tc.text, func(t *testing.T) {
			v := e.Check(Input{Room: tc.room, UID: "u", Role: tc.role, Text: tc.text, Now: t0})
			got := v.Action == Reject && v.Code == CodeBlocked && v.Rule == RuleLink
			if got != tc.blocked {
				t.Fatalf("got %+v, want blocked=%v", v, tc.blocked)
			}
		})
	}
}

func TestDuplicate(t *testing.T) {
	e := newTestEngine(t, Config{Defaults: Settings{RatePerSec: -1}})
	check := func(uid, role, text string, at time.Duration) Verdict {
		return e.Check(Input{Room: "r", UID: uid, Role: role, Text: text, Now: t0.Add(at)})
	}
	if v := check("u", "", "Hello there", 0); v.Action != Accept {
		t.Fatalf("first: %+v", v)
	}
	for _, text := range []string{"Hello there", "HELLO THERE!!!", "hellooo there", "ｈｅｌｌｏ there"} {
		if v := check("u", "", text, 10*time.Second); v.Code != CodeBlocked || v.Rule != RuleDuplicate {
			t.Fatalf("%q: %+v", text, v)
		}
	}
	if v := check("u", "", "something else", 10*time.Second); v.Action != Accept {
		t.Fatalf("different text: %+v", v)
	}
	if v := check("v", "", "Hello there", 10*time.Second); v.Action != Accept {
		t.Fatalf("other user: %+v", v)
	}
	if v := check("u", "", "Hello there", 31*time.Second); v.Action != Accept {
		t.Fatalf("after the window: %+v", v)
	}
	for range 3 {
		if v := check("m", RoleMod, "same", 0); v.Action != Accept {
			t.Fatalf("mod: %+v", v)
		}
	}
}

func TestFlood(t *testing.T) {
	for _, action := range []string{ActionHold, ActionReject} {
		t.Run(action, func(t *testing.T) {
			e := newTestEngine(t, Config{})
			if err := e.SetSettings("r", Settings{FloodUsers: 3, FloodWindowSec: 5, FloodAction: action}); err != nil {
				t.Fatal(err)
			}
			check := func(uid, text string, at time.Duration) Verdict {
				return e.Check(Input{Room: "r", UID: uid, Text: text, Now: t0.Add(at)})
			}
			for i, uid := range []string{"a", "b"} {
				if v := check(uid, "JOIN NOW", time.Duration(i)*time.Second); v.Action != Accept {
					t.Fatalf("%s: %+v", uid, v)
				}
			}
			v := check("c", "join now!", 2*time.Second)
			if action == ActionHold && (v.Action != Hold || v.Rule != RuleFlood || v.Text != "join now!") {
				t.Fatalf("third user: %+v", v)
			}
			if action == ActionReject && (v.Action != Reject || v.Code != CodeBlocked || v.Rule != RuleFlood) {
				t.Fatalf("third user: %+v", v)
			}
			if v := check("d", "something else", 2*time.Second); v.Action != Accept {
				t.Fatalf("other text: %+v", v)
			}
			if v := check("e", "join now", 8*time.Second); v.Action != Accept {
				t.Fatalf("after the window: %+v", v)
			}
		})
	}
}

func TestSpamHold(t *testing.T) {
	e := newTestEngine(t, Config{Defaults: noLimits})
	if err := e.SetSettings("r", Settings{HoldThreshold: 0.8, RatePerSec: -1, DuplicateWindowSec: -1}); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		text string
		want Action
	}{
		{"WHAT IS GOING ON HERE", Hold},
		{"!!!!!!$$$$$$%%%%%%", Hold},
		{"what is going on here", Accept},
		{"LOL", Accept},
		{"nice play, GG", Accept},
	}
	for _, tc := range tests {
		t.Run(tc.text, func(t *testing.T) {
			v := e.Check(Input{Room: "r", UID: "u", Text: tc.text, Now: t0})
			if v.Action != tc.want || (tc.want == Hold && v.Rule != RuleSpam) {
				t.Fatalf("got %+v, want %v", v, tc.want)
			}
		})
	}
}

func TestBans(t *testing.T) {
	e := newTestEngine(t, Config{Defaults: noLimits})
	e.Ban("r", "u", t0.Add(time.Minute))
	e.Ban("", "g", time.Time{})
	tests := []struct {
		room, uid string
		at        time.Duration
		banned    bool
		retry     time.Duration
	}{
		{"r", "u", 0, true, time.Minute},
		{"r", "u", 59 * time.Second, true, time.Second},
		{"r", "u", time.Minute, false, 0},
		{"other", "u", 0, false, 0},
		{"r", "g", 0, true, 0},
		{"other", "g", time.Hour, true, 0},
		{"r", "x", 0, false, 0},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("%s/%s/%v", tc.room, tc.uid, tc.at), func(t *testing.T) {
			v := e.Check(Input{Room: tc.room, UID: tc.uid, Text: fmt.Sprint("hi ", tc.at), Now: t0.Add(tc.at)})
			if got := v.Code == CodeBanned; got != tc.banned || v.RetryAfter != tc.retry {
				t.Fatalf("got %+v, want banned=%v retry=%v", v, tc.banned, tc.retry)
			}
		})
	}
	if until, ok := e.Banned("r", "g", t0); !ok || !until.IsZero() {
		t.Fatalf("Banned global = %v %v", until, ok)
	}
	if got := e.Bans("", t0); len(got) != 1 || got[0].UID != "g" {
		t.Fatalf("Bans global = %v", got)
	}
	e.Unban("", "g")
	e.Ban("r", "w", time.Time{})
	e.Ban("r", "a", t0.Add(time.Hour))
	// u's timeout expired (and was dropped) when u sent at t0+1m.
	if got := e.Bans("r", t0); len(got) != 2 || got[0].UID != "a" || got[1].UID != "w" || !got[1].Until.IsZero() {
		t.Fatalf("Bans(r) = %v", got)
	}
	e.Unban("r", "w")
	if _, ok := e.Banned("r", "w", t0); ok {
		t.Fatal("still banned after Unban")
	}
	if v := e.Check(Input{Room: "r", UID: "g", Text: "back", Now: t0}); v.Action != Accept {
		t.Fatalf("after global unban: %+v", v)
	}
}

func TestSettingsValidate(t *testing.T) {
	tests := []struct {
		name string
		s    Settings
		ok   bool
	}{
		{"zero", Settings{}, true},
		{"full", Settings{MaxLength: 200, RatePerSec: 2, Burst: 5, SlowModeSec: 3, LinkPolicy: LinkAllowList, LinkAllow: []string{"a.com"}, FloodUsers: 5, FloodAction: ActionReject, HoldThreshold: 0.5}, true},
		{"negative length", Settings{MaxLength: -1}, false},
		{"huge length", Settings{MaxLength: 1 << 20}, false},
		{"bad policy", Settings{LinkPolicy: "maybe"}, false},
		{"bad domain", Settings{LinkAllow: []string{"not a domain"}}, false},
		{"flood one", Settings{FloodUsers: 1}, false},
		{"bad flood action", Settings{FloodAction: "mask"}, false},
		{"threshold", Settings{HoldThreshold: 1.5}, false},
		{"slow", Settings{SlowModeSec: -3}, false},
	}
	e := newTestEngine(t, Config{})
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := e.SetSettings("r", tc.s)
			if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrInvalid)) {
				t.Fatalf("SetSettings(%+v) = %v, want ok=%v", tc.s, err, tc.ok)
			}
		})
	}
}

func TestKeywordListValidate(t *testing.T) {
	tests := []struct {
		name string
		kl   KeywordList
		ok   bool
	}{
		{"ok", KeywordList{Words: []string{"a", "傻逼", "*x*"}}, true},
		{"emoji only", KeywordList{Words: []string{"😀"}}, false},
		{"bad action", KeywordList{Words: []string{"a"}, Action: "nuke"}, false},
		{"too long", KeywordList{Words: []string{string(make([]byte, 100))}}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.kl.Validate(); (err == nil) != tc.ok {
				t.Fatalf("Validate = %v, want ok=%v", err, tc.ok)
			}
		})
	}
}

func TestSweepBoundsMemory(t *testing.T) {
	e := newTestEngine(t, Config{MaxUsersPerRoom: 50, SweepInterval: time.Minute})
	for i := range 200 {
		e.Check(Input{Room: "r", UID: fmt.Sprint("u", i), Text: "hi", Now: t0})
	}
	r := e.room("r", false)
	r.mu.Lock()
	n := len(r.users)
	r.mu.Unlock()
	if n > 50 {
		t.Fatalf("%d users tracked, cap 50", n)
	}
	for i := range 20 {
		e.Check(Input{Room: fmt.Sprint("room", i), UID: "u", Text: "hi", Now: t0})
	}
	e.Sweep(t0.Add(time.Hour))
	if got := e.nrooms.Load(); got != 0 {
		t.Fatalf("%d rooms left after sweep, want 0", got)
	}
	// Configured rooms survive.
	if err := e.SetSettings("kept", Settings{SlowModeSec: 1}); err != nil {
		t.Fatal(err)
	}
	e.Sweep(t0.Add(2 * time.Hour))
	if got := e.Settings("kept").SlowModeSec; got != 1 {
		t.Fatalf("configured room lost its settings: slow=%d", got)
	}
}

func TestMaxRooms(t *testing.T) {
	e := newTestEngine(t, Config{MaxRooms: 2})
	for i, want := range []Code{"", "", CodeUnavailable} {
		if v := e.Check(Input{Room: fmt.Sprint("r", i), UID: "u", Text: "hi", Now: t0}); v.Code != want {
			t.Fatalf("room %d: %+v, want %q", i, v, want)
		}
	}
}

func TestConcurrent(t *testing.T) {
	e := newTestEngine(t, Config{Global: KeywordList{Words: []string{"fuck", "傻逼"}}})
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				room := fmt.Sprint("r", i%4)
				switch i % 50 {
				case 0:
					_ = e.SetRoomKeywords(room, KeywordList{Words: []string{"spam", fmt.Sprint("w", i)}, Action: ActionMask})
				case 1:
					_ = e.SetSettings(room, Settings{SlowModeSec: i % 3})
				case 2:
					e.Ban(room, fmt.Sprint("u", w), t0.Add(time.Second))
				case 3:
					e.Sweep(t0.Add(time.Duration(i) * time.Millisecond))
				}
				v := e.Check(Input{Room: room, UID: fmt.Sprint("u", w), Text: fmt.Sprint("hello fuck spam ", i), Now: t0.Add(time.Duration(i) * time.Millisecond)})
				if v.Action == Accept {
					t.Errorf("keyword passed: %+v", v)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func FuzzCheck(f *testing.F) {
	for _, s := range []string{"oh f.u.c.k off", "ｆｕｃｋ", "你是傻 逼吧", "example dot com/x", "a$$", "\xff", "he'll"} {
		f.Add(s)
	}
	e := newTestEngine(f, Config{
		Global:   KeywordList{Words: []string{"fuck", "ass", "傻逼", "*x*", "kill yourself"}, Action: ActionMask},
		Defaults: Settings{RatePerSec: -1, DuplicateWindowSec: -1, LinkPolicy: LinkBlock, HoldThreshold: 0.9},
	})
	f.Fuzz(func(t *testing.T, s string) {
		v := e.Check(Input{Room: "r", UID: "u", Text: s, Now: t0})
		switch v.Action {
		case Reject:
			if v.Code == "" || v.Text != "" {
				t.Fatalf("reject without code or with text: %+v", v)
			}
		case Mask:
			if !utf8.ValidString(v.Text) || utf8.RuneCountInString(v.Text) > utf8.RuneCountInString(s) || !strings.Contains(v.Text, "*") {
				t.Fatalf("bad mask of %q: %q", s, v.Text)
			}
		}
	})
}
