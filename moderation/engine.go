package moderation

import (
	"fmt"
	"hash/maphash"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/danmaku-live/danmaku/moderation/internal/ac"
)

// Config configures an Engine. The zero value is usable.
type Config struct {
	// Global is the keyword list applied in every room.
	Global KeywordList
	// GlobalRules are regex rules applied in every room.
	GlobalRules []Rule
	// Defaults are the settings of rooms without their own; zero fields
	// mean the built-in defaults (see Settings).
	Defaults Settings
	// MaxRooms caps the rooms tracked at once. Zero means 100,000. A
	// message for a new room beyond it is rejected CodeUnavailable.
	MaxRooms int
	// MaxUsersPerRoom caps the per-user state of a room. Zero means
	// 100,000. Past it, idle users are swept and then an arbitrary user's
	// state is dropped.
	MaxUsersPerRoom int
	// MaxFloodTexts caps the distinct texts tracked for flood detection per
	// room. Zero means 4,096; texts beyond it are not tracked.
	MaxFloodTexts int
	// SweepInterval is how often idle state is swept. Zero means 1 minute.
	SweepInterval time.Duration
	// Clock returns the current time when Input.Now is zero. Nil means time.Now.
	Clock func() time.Time
	// HeldPerRoom caps the held-for-review queue of each room. Zero means 500.
	HeldPerRoom int
	// HeldTTL is how long a message stays held. Zero means 10 minutes.
	HeldTTL time.Duration
	// Logger receives configuration changes. Nil means slog.Default().
	Logger *slog.Logger
}

const numShards = 64

// Engine decides what happens to each chat message. All methods are safe
// for concurrent use.
//
// Lock order: shard.mu, then room.mu, then Engine.banMu; no two rooms are
// locked at once.
type Engine struct {
	cfg      Config
	log      *slog.Logger
	defaults atomic.Pointer[limits]
	global   atomic.Pointer[filters]
	globalMu sync.Mutex // serialises writers of global
	seed     maphash.Seed
	shards   [numShards]shard
	nrooms   atomic.Int64

	banMu sync.RWMutex
	bans  map[string]time.Time // global bans by uid; zero time = permanent
	nbans atomic.Int64

	lastSweep atomic.Int64
	scratch   sync.Pool
	held      *HeldQueue
}

// filters are the compiled keyword list and regex rules of one scope.
type filters struct {
	kw    *keywordSet
	rules []Rule
	rx    []compiledRule
}

type shard struct {
	mu    sync.RWMutex
	rooms map[string]*room
}

// New returns an Engine. It fails when the global keyword list, rules or
// default settings are invalid.
func New(cfg Config) (*Engine, error) {
	if cfg.MaxRooms <= 0 {
		cfg.MaxRooms = 100_000
	}
	if cfg.MaxUsersPerRoom <= 0 {
		cfg.MaxUsersPerRoom = 100_000
	}
	if cfg.MaxFloodTexts <= 0 {
		cfg.MaxFloodTexts = 4096
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Minute
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if err := cfg.Defaults.Validate(); err != nil {
		return nil, err
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, seed: maphash.MakeSeed(), bans: make(map[string]time.Time)}
	for i := range e.shards {
		e.shards[i].rooms = make(map[string]*room)
	}
	d := newLimits(cfg.Defaults.WithDefaults(builtinSettings))
	e.defaults.Store(&d)
	if err := e.SetGlobalKeywords(cfg.Global); err != nil {
		return nil, err
	}
	if err := e.SetGlobalRules(cfg.GlobalRules); err != nil {
		return nil, err
	}
	e.scratch.New = func() any { return new(scratch) }
	e.held = NewHeldQueue(cfg.HeldPerRoom, cfg.MaxRooms, cfg.HeldTTL)
	folds() // build the fold table now rather than on the first message
	return e, nil
}

// scratch is per-Check working memory, pooled.
type scratch struct {
	t     normText
	hits  []ac.Hit
	ms    []match
	spans []Span
	link  []byte
}

func compileFilters(kl KeywordList, rules []Rule, scope string) (*filters, error) {
	ks, err := compileKeywords(kl, scope)
	if err != nil {
		return nil, err
	}
	rx, err := compileRules(rules, scope)
	if err != nil {
		return nil, err
	}
	return &filters{kw: ks, rules: slices.Clone(rules), rx: rx}, nil
}

// Held returns the engine's held-for-review queue. Check does not add to
// it: the caller that receives a Hold verdict adds the message with the
// data it needs to publish it on approval.
func (e *Engine) Held() *HeldQueue { return e.held }

// SetGlobalKeywords replaces the global keyword list.
func (e *Engine) SetGlobalKeywords(kl KeywordList) error {
	e.globalMu.Lock()
	defer e.globalMu.Unlock()
	old := e.global.Load()
	var rules []Rule
	if old != nil {
		rules = old.rules
	}
	f, err := compileFilters(kl, rules, "global")
	if err != nil {
		return err
	}
	e.global.Store(f)
	e.log.Info("moderation: global keywords set", "count", len(kl.Words), "action", kl.Action)
	return nil
}

// SetGlobalRules replaces the global regex rules.
func (e *Engine) SetGlobalRules(rules []Rule) error {
	rx, err := compileRules(rules, "global")
	if err != nil {
		return err
	}
	e.globalMu.Lock()
	defer e.globalMu.Unlock()
	old := e.global.Load()
	f := &filters{rules: slices.Clone(rules), rx: rx}
	if old != nil {
		f.kw = old.kw
	} else if f.kw, err = compileKeywords(KeywordList{}, "global"); err != nil {
		return err
	}
	e.global.Store(f)
	e.log.Info("moderation: global rules set", "count", len(rules))
	return nil
}

// GlobalRules returns the global regex rules.
func (e *Engine) GlobalRules() []Rule { return slices.Clone(e.global.Load().rules) }

// GlobalKeywords returns the global keyword list.
func (e *Engine) GlobalKeywords() KeywordList { return e.global.Load().kw.list }

func (e *Engine) shardOf(roomID string) *shard {
	return &e.shards[maphash.String(e.seed, roomID)%numShards]
}

// room returns the room's state, creating it when create is set. It returns
// nil when the room is unknown and create is false, or at capacity.
func (e *Engine) room(id string, create bool) *room {
	sh := e.shardOf(id)
	sh.mu.RLock()
	r := sh.rooms[id]
	sh.mu.RUnlock()
	if r != nil || !create {
		return r
	}
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if r = sh.rooms[id]; r != nil {
		return r
	}
	if e.nrooms.Load() >= int64(e.cfg.MaxRooms) {
		return nil
	}
	r = newRoom()
	sh.rooms[id] = r
	e.nrooms.Add(1)
	return r
}

// SetSettings replaces the room's settings. Zero fields mean the defaults.
func (e *Engine) SetSettings(roomID string, s Settings) error {
	if err := s.Validate(); err != nil {
		return err
	}
	r := e.room(roomID, true)
	if r == nil {
		return fmt.Errorf("moderation: too many rooms (%d)", e.cfg.MaxRooms)
	}
	l := newLimits(s.WithDefaults(e.defaults.Load().s))
	r.mu.Lock()
	r.limits = &l
	r.explicit = true
	r.mu.Unlock()
	e.log.Info("moderation: settings set", "room", roomID)
	return nil
}

// Settings returns the room's effective settings, defaults filled in.
func (e *Engine) Settings(roomID string) Settings {
	if r := e.room(roomID, false); r != nil {
		r.mu.Lock()
		l := r.limits
		r.mu.Unlock()
		if l != nil {
			return l.s
		}
	}
	return e.defaults.Load().s
}

// SetRoomKeywords replaces the room's keyword list.
func (e *Engine) SetRoomKeywords(roomID string, kl KeywordList) error {
	ks, err := compileKeywords(kl, "room")
	if err != nil {
		return err
	}
	err = e.updateFilters(roomID, func(old *filters) *filters {
		f := &filters{kw: ks}
		if old != nil {
			f.rules, f.rx = old.rules, old.rx
		}
		return f
	})
	if err != nil {
		return err
	}
	e.log.Info("moderation: room keywords set", "room", roomID, "count", len(kl.Words), "action", kl.Action)
	return nil
}

// updateFilters sets roomID's filters to what update makes of its current
// ones (nil: none), creating the room's state and marking it configured
// (never swept); it fails past Config.MaxRooms.
func (e *Engine) updateFilters(roomID string, update func(old *filters) *filters) error {
	r := e.room(roomID, true)
	if r == nil {
		return fmt.Errorf("moderation: too many rooms (%d)", e.cfg.MaxRooms)
	}
	r.mu.Lock()
	r.filters = update(r.filters)
	r.explicit = true
	r.mu.Unlock()
	return nil
}

// RoomKeywords returns the room's keyword list.
func (e *Engine) RoomKeywords(roomID string) KeywordList {
	if r := e.room(roomID, false); r != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.filters != nil && r.filters.kw != nil {
			return r.filters.kw.list
		}
	}
	return KeywordList{Action: ActionBlock}
}

// SetRoomRules replaces the room's regex rules.
func (e *Engine) SetRoomRules(roomID string, rules []Rule) error {
	rx, err := compileRules(rules, "room")
	if err != nil {
		return err
	}
	err = e.updateFilters(roomID, func(old *filters) *filters {
		f := &filters{rules: slices.Clone(rules), rx: rx}
		if old != nil {
			f.kw = old.kw
		}
		return f
	})
	if err != nil {
		return err
	}
	e.log.Info("moderation: room rules set", "room", roomID, "count", len(rules))
	return nil
}

// RoomRules returns the room's regex rules.
func (e *Engine) RoomRules(roomID string) []Rule {
	if r := e.room(roomID, false); r != nil {
		r.mu.Lock()
		defer r.mu.Unlock()
		if r.filters != nil {
			return slices.Clone(r.filters.rules)
		}
	}
	return nil
}

func (e *Engine) now(in Input) time.Time {
	if in.Now.IsZero() {
		return e.cfg.Clock()
	}
	return in.Now
}

// Check decides what happens to one message. It is safe for concurrent use
// and does not allocate on the common paths.
//
// Order: ban → length → rate limit → slow mode → links → keywords/regex →
// duplicate/flood → spam-score hold.
func (e *Engine) Check(in Input) Verdict {
	now := e.now(in)
	priv := privileged(in.Role)
	r, lim, rf, v, ok := e.admit(in, now, priv)
	if !ok {
		return v
	}
	sc := e.scratch.Get().(*scratch)
	defer e.scratch.Put(sc)
	t := &sc.t
	t.normalize(in.Text)
	if len(t.ents) == 0 || len(t.r) == 0 && blank(t) {
		return reject(CodeInvalid, RuleEmpty, 0)
	}
	hasLink, blocked := e.checkLinks(in.Text, sc, lim, priv)
	if blocked {
		return reject(CodeBlocked, RuleLink, 0)
	}
	if v = e.checkFilters(in.Text, sc, rf); v.Action == Reject || priv {
		return v
	}
	return e.checkRepeat(in.UID, r, lim, t, hasLink, now.UnixNano(), v)
}

// admit is Check's first phase, on the raw text: the room and the global
// and room bans, length and encoding, and (for the unprivileged) rate
// limits and slow mode. It returns the room with its limits and filters,
// or ok false with the rejecting verdict.
func (e *Engine) admit(in Input, now time.Time, priv bool) (r *room, lim *limits, rf *filters, v Verdict, ok bool) {
	nowNS := now.UnixNano()
	if in.Room == "" {
		return nil, nil, nil, reject(CodeInvalid, RuleNoRoom, 0), false
	}
	if until, banned := e.globalBan(in.UID, nowNS); banned {
		return nil, nil, nil, reject(CodeBanned, RuleBanned, retryUntil(until, now)), false
	}
	if r = e.room(in.Room, true); r == nil {
		return nil, nil, nil, reject(CodeUnavailable, RuleCapacity, time.Second), false
	}
	if e.cfg.SweepInterval > 0 {
		e.maybeSweep(nowNS)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if lim = r.limits; lim == nil {
		lim = e.defaults.Load()
	}
	rf = r.filters
	if until, banned := r.banned(in.UID, nowNS); banned {
		return nil, nil, nil, reject(CodeBanned, RuleBanned, retryUntil(until, now)), false
	}
	switch {
	case utf8.RuneCountInString(in.Text) > lim.maxLen:
		return nil, nil, nil, reject(CodeTooLong, RuleTooLong, 0), false
	case !utf8.ValidString(in.Text):
		return nil, nil, nil, reject(CodeInvalid, RuleEncoding, 0), false
	}
	if !priv {
		if v, ok := r.limit(e, in.UID, nowNS, lim); !ok {
			return nil, nil, nil, v, false
		}
	}
	return r, lim, rf, Verdict{}, true
}

// checkLinks finds the links of the normalised text in sc when the room's
// link policy or spam hold needs them: hasLink for the spam score, and
// blocked when a link breaks the policy (never for the privileged).
func (e *Engine) checkLinks(text string, sc *scratch, lim *limits, priv bool) (hasLink, blocked bool) {
	if !(!priv && lim.linkPolicy != LinkAllow || lim.hold > 0) || !mayHaveLink(text) {
		return false, false
	}
	sc.link = linkBytes(&sc.t, sc.link)
	findLinks(sc.link, func(host string) bool {
		hasLink = true
		if lim.linkPolicy == LinkBlock || lim.linkPolicy == LinkAllowList && !domainAllowed(host, lim.linkAllow) {
			blocked = true
			return false
		}
		return true
	})
	return hasLink, blocked && !priv
}

// checkFilters applies the global and the room's keyword and regex rules:
// a rejecting verdict, or an accepting (or holding) one with the matched
// spans masked.
func (e *Engine) checkFilters(text string, sc *scratch, rf *filters) Verdict {
	v := Verdict{Action: Accept, Text: text}
	sc.spans = sc.spans[:0]
	for _, f := range [2]*filters{e.global.Load(), rf} {
		if f == nil {
			continue
		}
		if v = e.applyFilters(f, sc, text, v); v.Action == Reject {
			return v
		}
	}
	if len(sc.spans) > 0 {
		v.Text = maskText(text, sc.spans)
	}
	return v
}

// checkRepeat is Check's last phase for the unprivileged: duplicates and
// floods (from the normalised text's hash), then the spam score, which
// holds v when it reaches the room's threshold.
func (e *Engine) checkRepeat(uid string, r *room, lim *limits, t *normText, hasLink bool, nowNS int64, v Verdict) Verdict {
	h := t.hash
	if len(t.r) == 0 {
		h = entsHash(t)
	}
	r.mu.Lock()
	dv, ok := r.repeat(e, uid, h, nowNS, lim)
	r.mu.Unlock()
	if !ok {
		if dv.Action == Hold {
			dv.Text = v.Text
		}
		return dv
	}
	if lim.hold > 0 && v.Action < Hold {
		v.Score = spamScore(t, hasLink)
		if v.Score >= lim.hold {
			v.Action, v.Rule = Hold, RuleSpam
		}
	}
	return v
}

// applyFilters runs f's keywords and rules over the text and merges the
// outcome into v: the most severe action wins, the first rule of that
// action names it. Mask spans are appended to sc.spans.
func (e *Engine) applyFilters(f *filters, sc *scratch, text string, v Verdict) Verdict {
	t := &sc.t
	if ks := f.kw; ks != nil && len(ks.variants) > 0 {
		sc.ms = sc.ms[:0]
		sc.hits, sc.ms = ks.find(t, ks.action != Mask, sc.hits, sc.ms)
		if len(sc.ms) > 0 {
			rule := ks.rules[sc.ms[0].rule]
			if ks.action == Mask {
				for _, m := range sc.ms {
					sc.spans = append(sc.spans, Span{Start: int(t.runs[m.start].os), End: int(t.runs[m.end-1].oe)})
				}
			}
			v = merge(v, ks.action, rule)
			if v.Action == Reject {
				return v
			}
		}
	}
	for i := range f.rx {
		rx := &f.rx[i]
		if rx.action == Mask {
			locs := rx.re.FindAllStringIndex(text, -1)
			for _, l := range locs {
				sc.spans = append(sc.spans, Span{Start: utf8.RuneCountInString(text[:l[0]]), End: utf8.RuneCountInString(text[:l[1]])})
			}
			if len(locs) > 0 {
				v = merge(v, Mask, rx.name)
			}
			continue
		}
		if rx.re.MatchString(text) {
			if v = merge(v, rx.action, rx.name); v.Action == Reject {
				return v
			}
		}
	}
	return v
}

func merge(v Verdict, a Action, rule string) Verdict {
	if a > v.Action {
		v.Action, v.Rule = a, rule
		if a == Reject {
			v.Code, v.Text = CodeBlocked, ""
		}
	}
	return v
}

func reject(c Code, rule string, retry time.Duration) Verdict {
	return Verdict{Action: Reject, Code: c, Rule: rule, RetryAfter: retry}
}

func retryUntil(until int64, now time.Time) time.Duration {
	if until == 0 {
		return 0
	}
	return time.Duration(until - now.UnixNano())
}

// blank reports whether the text has nothing but white space.
func blank(t *normText) bool {
	for _, e := range t.ents {
		if e.cls != clsSpace {
			return false
		}
	}
	return true
}

func entsHash(t *normText) uint64 {
	h := uint64(14695981039346656037)
	for _, e := range t.ents {
		h ^= uint64(e.r)
		h *= 1099511628211
	}
	return h
}

// maskText replaces the input runes covered by spans with '*' and drops
// the invisible characters inside them.
func maskText(text string, spans []Span) string {
	slices.SortFunc(spans, func(a, b Span) int { return a.Start - b.Start })
	out := make([]byte, 0, len(text))
	i, k := 0, 0
	for _, r := range text {
		for k < len(spans) && spans[k].End <= i {
			k++
		}
		if k < len(spans) && spans[k].Start <= i {
			if !ignorable(r) {
				out = append(out, '*')
			}
		} else {
			out = utf8.AppendRune(out, r)
		}
		i++
	}
	return string(out)
}

// spamScore rates a text in [0,1]: the largest of the share of capital
// letters (texts with ≥ 6 letters), twice the share of runes removed as
// repeats (texts with ≥ 6 runes), the share of symbols and emoji (texts
// with ≥ 4 runes), and 0.5 when the text carries a link.
func spamScore(t *normText, link bool) float64 {
	s := 0.0
	if t.letters >= 6 {
		s = max(s, float64(t.upper)/float64(t.letters))
	}
	if t.runes >= 6 {
		s = max(s, min(1, 2*float64(t.repeats)/float64(t.runes)))
	}
	if t.runes >= 4 {
		s = max(s, float64(t.symbols)/float64(t.runes))
	}
	if link {
		s = max(s, 0.5)
	}
	return s
}
