package moderation

import (
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/danmaku-live/danmaku/moderation/internal/ac"
)

// variant is one keyword behind an automaton pattern. Several keywords can
// share a pattern because patterns have repeated letters collapsed ("ass"
// and "as" are both "as"); the run counts tell them apart.
type variant struct {
	word  int32   // index into keywordSet.rules
	cnt   []uint8 // minimum run length at each pattern position
	needL bool    // a word boundary is required before the match
	needR bool    // a word boundary is required after the match
}

// keywordSet is a compiled KeywordList. It is immutable.
type keywordSet struct {
	list     KeywordList
	m        *ac.Matcher
	variants [][]variant // by pattern
	rules    []string    // "keyword:<scope>:<word>", by word
	action   Action
}

func compileKeywords(kl KeywordList, scope string) (*keywordSet, error) {
	action, err := parseAction(kl.Action)
	if err != nil {
		return nil, err
	}
	if len(kl.Words) > MaxKeywords {
		return nil, fmt.Errorf("%w: %d keywords, max %d", ErrInvalid, len(kl.Words), MaxKeywords)
	}
	ks := &keywordSet{list: kl, action: action}
	ks.list.Words = append([]string(nil), kl.Words...)
	index := make(map[string]int32, len(kl.Words))
	var patterns [][]rune
	var t normText
	for _, w := range kl.Words {
		if !utf8.ValidString(w) || utf8.RuneCountInString(w) > MaxKeywordRunes {
			return nil, fmt.Errorf("%w: keyword %q: invalid UTF-8 or longer than %d runes", ErrInvalid, w, MaxKeywordRunes)
		}
		body := strings.TrimSpace(w)
		starL := strings.HasPrefix(body, "*")
		body = strings.TrimPrefix(body, "*")
		starR := strings.HasSuffix(body, "*")
		body = strings.TrimSuffix(body, "*")
		t.normalize(body)
		if len(t.r) == 0 {
			return nil, fmt.Errorf("%w: keyword %q has no letters or digits", ErrInvalid, w)
		}
		wi := int32(len(ks.rules))
		ks.rules = append(ks.rules, "keyword:"+scope+":"+w)
		v := variant{
			word:  wi,
			cnt:   runCounts(&t),
			needL: !starL && t.runs[0].cls != clsCJK,
			needR: !starR && t.runs[len(t.runs)-1].cls != clsCJK,
		}
		key := string(t.r)
		pi, ok := index[key]
		if !ok {
			pi = int32(len(patterns))
			index[key] = pi
			patterns = append(patterns, []rune(key))
			ks.variants = append(ks.variants, nil)
		}
		ks.variants[pi] = append(ks.variants[pi], v)
	}
	ks.m = ac.Build(patterns)
	return ks, nil
}

// match is a keyword occurrence in stream positions [start, end).
type match struct {
	start, end int32
	rule       int32
}

// find appends the keyword occurrences in t to dst. With first set it stops
// at the first occurrence. hits is scratch space; it returns both slices.
func (ks *keywordSet) find(t *normText, first bool, hits []ac.Hit, dst []match) ([]ac.Hit, []match) {
	if ks == nil || len(ks.variants) == 0 {
		return hits, dst
	}
	hits = ks.m.FindAll(t.r, hits[:0])
	for _, h := range hits {
		end := int(h.End)
		start := end - ks.m.Len(h.Pattern)
		for _, v := range ks.variants[h.Pattern] {
			if v.ok(t, start, end) {
				dst = append(dst, match{start: int32(start), end: int32(end), rule: v.word})
				if first {
					return hits, dst
				}
				break
			}
		}
	}
	return hits, dst
}

func (v *variant) ok(t *normText, start, end int) bool {
	for i, c := range v.cnt {
		if t.runs[start+i].cnt < c {
			return false
		}
	}
	if v.needL && !t.leftBoundary(start) {
		return false
	}
	if v.needR && !t.rightBoundary(end) {
		return false
	}
	return true
}

func runCounts(t *normText) []uint8 {
	out := make([]uint8, len(t.runs))
	for i, r := range t.runs {
		out[i] = r.cnt
	}
	return out
}
