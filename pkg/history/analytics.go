package history

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// Session is one live stream of a room: a streamer or a service marks its
// start and end, and the replay page opens it by id.
type Session struct {
	ID    string `json:"id"`
	Room  string `json:"room"`
	Title string `json:"title,omitempty"`
	// StartMs and EndMs are Unix ms; EndMs is 0 while the session is live.
	StartMs int64 `json:"start"`
	EndMs   int64 `json:"end,omitempty"`
	// By is the uid that started it.
	By string `json:"by,omitempty"`
}

// Sessions stores stream sessions. PutSession inserts a session or replaces
// the one with the same (Room, ID).
type Sessions interface {
	PutSession(ctx context.Context, s Session) error
	// Sessions returns up to limit sessions of room, newest start first.
	Sessions(ctx context.Context, room string, limit int) ([]Session, error)
	// Session returns one session; ok is false when there is none.
	Session(ctx context.Context, room, id string) (s Session, ok bool, err error)
}

// MinuteStat is one minute of a room's traffic.
type MinuteStat struct {
	// Minute is the minute's start, Unix ms.
	Minute   int64 `json:"t"`
	Messages int64 `json:"messages"`
	Chatters int64 `json:"chatters"`
}

// PhraseCount is a phrase and the number of messages that contain it.
type PhraseCount struct {
	Phrase string `json:"phrase"`
	Count  int64  `json:"count"`
	// Estimated is set when Count was scaled up from a sample of the
	// range's messages (a store may sample very long ranges).
	Estimated bool `json:"estimated,omitempty"`
}

// Analytics answers aggregate questions about a room's stored messages in
// [fromMs, toMs), computed by the store (never by reading every message
// out). Deleted and purged messages are left out of every figure.
type Analytics interface {
	// Density returns the number of messages in each bucketMs-wide
	// interval from fromMs: ceil((toMs-fromMs)/bucketMs) counts.
	Density(ctx context.Context, room string, fromMs, toMs, bucketMs int64) ([]int64, error)
	// Minutes returns messages and distinct senders per minute (minutes
	// aligned to the Unix epoch), ascending, only minutes with messages.
	Minutes(ctx context.Context, room string, fromMs, toMs int64) ([]MinuteStat, error)
	// TopPhrases returns the limit phrases (see Phrases) found in the most
	// messages, most first, ties by phrase; phrases that contain a blocked
	// word or are part of one are left out. Over very long ranges a store
	// may count a sample of the messages and mark the counts Estimated.
	TopPhrases(ctx context.Context, room string, fromMs, toMs int64, blocked []string, limit int) ([]PhraseCount, error)
}

// VerdictCount counts moderation verdicts of one rule and action in one
// minute of a room.
type VerdictCount struct {
	Room string `json:"room,omitempty"`
	// Minute is the minute's start, Unix ms (0 in summed answers).
	Minute int64  `json:"t,omitempty"`
	Action string `json:"action"`
	Rule   string `json:"rule"`
	Count  int64  `json:"count"`
}

// VerdictLog keeps counts of the moderation verdicts logic decided.
type VerdictLog interface {
	// AddVerdicts adds counts (Minute is truncated to the minute).
	AddVerdicts(ctx context.Context, counts []VerdictCount) error
	// Verdicts returns the counts of room whose minute starts in
	// [fromMs, toMs), summed per (rule, action), most first, ties by rule
	// then action; Room and Minute are empty.
	Verdicts(ctx context.Context, room string, fromMs, toMs int64) ([]VerdictCount, error)
}

// ErrRange is returned for a time range or bucket the stores refuse.
var ErrRange = errors.New("history: bad range")

// MaxBuckets bounds Density's answer.
const MaxBuckets = 2000

// CheckDensity validates Density's arguments.
func CheckDensity(fromMs, toMs, bucketMs int64) error {
	if fromMs < 0 || toMs <= fromMs || bucketMs <= 0 {
		return ErrRange
	}
	if (toMs-fromMs+bucketMs-1)/bucketMs > MaxBuckets {
		return ErrRange
	}
	return nil
}

// Stopwords are Latin words too common to be phrases.
var Stopwords = []string{"an", "and", "are", "as", "at", "be", "but", "by", "do", "for", "he", "if", "in", "is", "it",
	"me", "my", "no", "of", "on", "or", "so", "that", "the", "this", "to", "was", "we", "you"}

// IsEmoji reports whether r is in the emoji blocks phrases take emoji
// from: the pictographic planes U+1F300–U+1FAFF and the symbols
// U+2600–U+27BF. Skin-tone modifiers (IsEmojiModifier) are among them but
// never start a phrase: they stay with the emoji before them.
func IsEmoji(r rune) bool {
	return r >= 0x1F300 && r <= 0x1FAFF || r >= 0x2600 && r <= 0x27BF
}

// IsEmojiModifier reports whether r belongs to the emoji before it: a
// skin tone (U+1F3FB–U+1F3FF) or the emoji presentation selector U+FE0F.
func IsEmojiModifier(r rune) bool {
	return r >= 0x1F3FB && r <= 0x1F3FF || r == 0xFE0F
}

// BlockedMark replaces each blocked word in a message before Phrases
// splits it. It counts as a Han character and as a letter, so every
// phrase that overlaps a blocked word (or is a word joined to one)
// contains it, and such phrases are left out: "垃圾主播" with 垃圾 blocked
// gives 主播, not 圾主.
const BlockedMark = '\uFFFC'

// Lower is the case folding of phrases: each character lower-cased on its
// own exactly as ClickHouse 18.16's lowerUTF8 does, so that both stores
// count the same phrases. lowerUTF8 leaves the characters KeptCase
// reports ("İ", "ẞ", "ǅ", "Ⓐ", …) as they are; the chstore test
// TestLowerMatchesServer checks every code point against the server.
// Blocked words are folded fully (NormBlocked) and still match what
// Lower leaves (BlockedPattern): "İBNE" is blocked by "ibne".
func Lower(s string) string { return strings.Map(lowerRune, s) }

func lowerRune(r rune) rune {
	if KeptCase(r) {
		return r
	}
	return unicode.ToLower(r)
}

// lowerFull lower-cases every character (Go's unicode.ToLower): the
// folding of blocked words.
func lowerFull(s string) string { return strings.Map(unicode.ToLower, s) }

// KeptCase reports whether r has a lower case that ClickHouse 18.16's
// lowerUTF8 does not give it: the lower case has another UTF-8 length
// (it rewrites in place), r is in U+2000–U+2FFF (skipped whole: circled
// letters, Roman numerals, Glagolitic, Coptic, Latin Extended-C), r is a
// title-case letter, or its Unicode tables predate r (newerCased).
func KeptCase(r rune) bool {
	l := unicode.ToLower(r)
	return l != r && (utf8.RuneLen(l) != utf8.RuneLen(r) || r >= 0x2000 && r <= 0x2FFF ||
		unicode.Is(unicode.Lt, r) || unicode.Is(newerCased, r))
}

// newerCased holds the upper-case letters 18.16's tables do not know:
// Cherokee, Georgian Mtavruli, Latin Extended-D from U+A7B3, Osage,
// Vithkuqi, Old Hungarian, Medefaidrin and Adlam.
var newerCased = &unicode.RangeTable{
	R16: []unicode.Range16{{Lo: 0x13A0, Hi: 0x13F5, Stride: 1}, {Lo: 0x1C90, Hi: 0x1CBF, Stride: 1}, {Lo: 0xA7B3, Hi: 0xA7F5, Stride: 1}},
	R32: []unicode.Range32{{Lo: 0x104B0, Hi: 0x104D3, Stride: 1}, {Lo: 0x10570, Hi: 0x10595, Stride: 1},
		{Lo: 0x10C80, Hi: 0x10CB2, Stride: 1}, {Lo: 0x16E40, Hi: 0x16E5F, Stride: 1}, {Lo: 0x1E900, Hi: 0x1E921, Stride: 1}},
}

// keptUpper maps a lower-case character to the characters whose lower
// case it is but which Lower leaves (KeptCase): 'i' → 'İ', 'k' → 'K'
// (Kelvin sign), 'ß' → 'ẞ'.
var keptUpper = sync.OnceValue(func() map[rune][]rune {
	m := map[rune][]rune{}
	for _, cr := range unicode.CaseRanges {
		for r := rune(cr.Lo); r <= rune(cr.Hi); r++ {
			if KeptCase(r) {
				l := unicode.ToLower(r)
				m[l] = append(m[l], r)
			}
		}
	}
	return m
})

// BlockedPattern returns the regular expression (RE2 syntax, as Go's
// regexp and ClickHouse take it) that finds the blocked words, as
// NormBlocked leaves them, in a Lower'd text; "" for none. A character
// also matches the ones Lower leaves whose lower case it is ("ibne"
// matches "İbne"). Leftmost first, longer words first where one starts
// another.
func BlockedPattern(blocked []string) string {
	if len(blocked) == 0 {
		return ""
	}
	ws := slices.Clone(blocked)
	slices.SortFunc(ws, func(a, b string) int { return len(b) - len(a) })
	kept := keptUpper()
	for i, w := range ws {
		var b strings.Builder
		for _, c := range w {
			if ks := kept[c]; len(ks) > 0 {
				fmt.Fprintf(&b, "[\\x{%X}", c)
				for _, k := range ks {
					fmt.Fprintf(&b, "\\x{%X}", k)
				}
				b.WriteByte(']')
			} else {
				b.WriteString(regexp.QuoteMeta(string(c)))
			}
		}
		ws[i] = b.String()
	}
	return strings.Join(ws, "|")
}

// BlockedFolds returns, for the blocked words as NormBlocked leaves them,
// the characters Lower leaves whose lower case is in one of them, each
// with that lower case, in code point order: replacing them in a phrase
// before looking it up in the blocked words finds "İb" in "ibne", as
// Phrases does.
func BlockedFolds(blocked []string) [][2]string {
	kept := keptUpper()
	var out [][2]string
	seen := map[rune]bool{}
	for _, w := range blocked {
		for _, c := range w {
			if seen[c] {
				continue
			}
			seen[c] = true
			for _, k := range kept[c] {
				out = append(out, [2]string{string(k), string(c)})
			}
		}
	}
	slices.SortFunc(out, func(a, b [2]string) int { return strings.Compare(a[0], b[0]) })
	return out
}

// PhraseFilter is a room's blocked words prepared for Phrases. The zero
// value blocks nothing.
type PhraseFilter struct {
	words []string
	re    *regexp.Regexp
}

// NewPhraseFilter prepares blocked words (raw, as rooms keep them).
func NewPhraseFilter(blocked []string) PhraseFilter {
	ws := NormBlocked(blocked)
	if len(ws) == 0 {
		return PhraseFilter{}
	}
	return PhraseFilter{words: ws, re: regexp.MustCompile(BlockedPattern(ws))}
}

// Phrases returns the distinct phrases of one message, the units top
// phrases count, from its Lower'd text with each blocked word replaced by
// BlockedMark:
//   - Han text: each run of Han characters gives its overlapping bigrams
//     ("打得好" → 打得, 得好); a run of one character gives itself;
//   - words: runs of Latin letters (accented ones too) and ASCII digits,
//     each with the combining marks after it ("café", "cafe\u0301"), of two
//     or more letters or digits, except Stopwords;
//   - emoji (IsEmoji): each one with its modifiers (IsEmojiModifier) and
//     the emoji joined to it by U+200D is a phrase ("👍🏽" is one).
//
// A phrase holding BlockedMark (it overlaps a blocked word) or contained
// in a blocked word is left out. The ClickHouse store computes the same
// phrases in SQL.
func Phrases(text string, f PhraseFilter) []string {
	t := Lower(text)
	if f.re != nil {
		t = f.re.ReplaceAllLiteralString(t, string(BlockedMark))
	}
	rs := []rune(t)
	var out []string
	add := func(p []rune) {
		s := string(p)
		if slices.Contains(p, BlockedMark) || slices.Contains(out, s) {
			return
		}
		full := lowerFull(s)
		for _, w := range f.words {
			if strings.Contains(w, full) {
				return
			}
		}
		out = append(out, s)
	}
	isHan := func(r rune) bool { return r == BlockedMark || unicode.Is(unicode.Han, r) }
	isLetter := func(r rune) bool { return r == BlockedMark || r >= '0' && r <= '9' || unicode.Is(unicode.Latin, r) }
	isBase := func(r rune) bool { return IsEmoji(r) && !IsEmojiModifier(r) }
	// Han runs.
	for i := 0; i < len(rs); {
		j := i
		for j < len(rs) && isHan(rs[j]) {
			j++
		}
		switch {
		case j-i == 1:
			add(rs[i:j])
		case j-i > 1:
			for k := i; k+1 < j; k++ {
				add(rs[k : k+2])
			}
		}
		i = max(j, i+1)
	}
	// Words: a letter, then letters and marks.
	for i := 0; i < len(rs); {
		if !isLetter(rs[i]) {
			i++
			continue
		}
		j, letters := i, 0
		for j < len(rs) && (isLetter(rs[j]) || unicode.Is(unicode.M, rs[j])) {
			if isLetter(rs[j]) {
				letters++
			}
			j++
		}
		if w := rs[i:j]; letters >= 2 && !slices.Contains(Stopwords, string(w)) {
			add(w)
		}
		i = j
	}
	// Emoji with their modifiers and joined emoji.
	for i := 0; i < len(rs); {
		if !isBase(rs[i]) {
			i++
			continue
		}
		j := i + 1
		for {
			for j < len(rs) && IsEmojiModifier(rs[j]) {
				j++
			}
			if j+1 < len(rs) && rs[j] == 0x200D && isBase(rs[j+1]) {
				j += 2
				continue
			}
			break
		}
		add(rs[i:j])
		i = j
	}
	return out
}

// NormBlocked prepares blocked words for TopPhrases: every character
// lower-cased (not only those Lower folds: "İBNE" blocks "ibne"), blanks
// dropped.
func NormBlocked(words []string) []string {
	var out []string
	for _, w := range words {
		w = strings.TrimSpace(lowerFull(w))
		if w != "" && utf8.ValidString(w) && !slices.Contains(out, w) {
			out = append(out, w)
		}
	}
	return out
}

// Highlight is a minute whose message rate jumped well above the trailing
// median.
type Highlight struct {
	Minute   int64 `json:"t"`
	Messages int64 `json:"messages"`
	// Median is the median rate of the HighlightWindow minutes before.
	Median float64 `json:"median"`
}

// Highlight thresholds: a minute is a highlight when its count is at least
// HighlightFactor times the median of the HighlightWindow minutes before it
// (minutes without messages count as 0) and at least HighlightMin more
// than that median.
const (
	HighlightWindow = 10
	HighlightFactor = 3
	HighlightMin    = 10
)

// Highlights finds the highlight minutes of a per-minute series (as
// Minutes returns it: ascending, minutes without messages left out) over
// [fromMs, toMs).
func Highlights(minutes []MinuteStat, fromMs, toMs int64) []Highlight {
	if len(minutes) == 0 {
		return nil
	}
	first := max(fromMs/60000*60000, minutes[0].Minute-HighlightWindow*60000)
	n := int((toMs-first+59999)/60000) + 1
	if n <= 0 {
		return nil
	}
	counts := make([]int64, n)
	for _, m := range minutes {
		if i := int((m.Minute - first) / 60000); i >= 0 && i < n {
			counts[i] = m.Messages
		}
	}
	var out []Highlight
	window := make([]int64, 0, HighlightWindow)
	for i := range counts {
		if i < HighlightWindow || counts[i] == 0 {
			continue
		}
		window = append(window[:0], counts[i-HighlightWindow:i]...)
		sort.Slice(window, func(a, b int) bool { return window[a] < window[b] })
		med := float64(window[HighlightWindow/2-1]+window[HighlightWindow/2]) / 2
		if float64(counts[i]) >= HighlightFactor*med && float64(counts[i]) >= med+HighlightMin {
			out = append(out, Highlight{Minute: first + int64(i)*60000, Messages: counts[i], Median: med})
		}
	}
	return out
}

// sortPhrases orders counts most first, ties by phrase, and keeps limit.
func sortPhrases(counts map[string]int64, limit int) []PhraseCount {
	out := make([]PhraseCount, 0, len(counts))
	for p, n := range counts {
		out = append(out, PhraseCount{Phrase: p, Count: n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Count != out[j].Count {
			return out[i].Count > out[j].Count
		}
		return out[i].Phrase < out[j].Phrase
	})
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	return out
}

// SortVerdicts orders summed verdict counts most first, ties by rule then
// action.
func SortVerdicts(v []VerdictCount) {
	sort.Slice(v, func(i, j int) bool {
		if v[i].Count != v[j].Count {
			return v[i].Count > v[j].Count
		}
		if v[i].Rule != v[j].Rule {
			return v[i].Rule < v[j].Rule
		}
		return v[i].Action < v[j].Action
	})
}
