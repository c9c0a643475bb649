package ac

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

func naive(patterns []string, text string) []Hit {
	tr := []rune(text)
	var out []Hit
	seen := map[string]bool{}
	first := map[string]int{}
	for i, p := range patterns {
		if _, ok := first[p]; !ok {
			first[p] = i
		}
	}
	for end := 1; end <= len(tr); end++ {
		var at []Hit
		for _, p := range patterns {
			pr := []rune(p)
			if len(pr) == 0 || seen[p] || len(pr) > end {
				continue
			}
			seen[p] = true
			if string(tr[end-len(pr):end]) == p {
				at = append(at, Hit{Pattern: int32(first[p]), End: int32(end)})
			}
		}
		clear(seen)
		slices.SortFunc(at, func(a, b Hit) int { return int(a.Pattern - b.Pattern) })
		out = append(out, at...)
	}
	return out
}

func sorted(h []Hit) []Hit {
	slices.SortFunc(h, func(a, b Hit) int {
		if a.End != b.End {
			return int(a.End - b.End)
		}
		return int(a.Pattern - b.Pattern)
	})
	return h
}

func runes(ps []string) [][]rune {
	out := make([][]rune, len(ps))
	for i, p := range ps {
		out[i] = []rune(p)
	}
	return out
}

func TestFindAll(t *testing.T) {
	tests := []struct {
		name     string
		patterns []string
		text     string
	}{
		{"classic", []string{"he", "she", "his", "hers"}, "ushers"},
		{"overlap", []string{"a", "aa", "aaa"}, "aaaa"},
		{"cjk", []string{"傻逼", "逼", "你好"}, "你好傻逼啊"},
		{"none", []string{"xyz"}, "abcabc"},
		{"dup", []string{"ab", "ab", ""}, "abab"},
		{"many children", []string{"ab", "ac", "ad", "ae", "af", "ag", "ah", "ai", "aj", "ak", "al"}, "akajal"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := Build(runes(tc.patterns))
			got := sorted(m.FindAll([]rune(tc.text), nil))
			want := naive(tc.patterns, tc.text)
			if !slices.Equal(got, want) {
				t.Fatalf("got %v want %v", got, want)
			}
		})
	}
}

func TestRandomAgainstNaive(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for iter := 0; iter < 200; iter++ {
		var ps []string
		for i := 0; i < 1+rng.IntN(20); i++ {
			var b strings.Builder
			for j := 0; j < 1+rng.IntN(4); j++ {
				b.WriteByte(byte('a' + rng.IntN(3)))
			}
			ps = append(ps, b.String())
		}
		var b strings.Builder
		for j := 0; j < rng.IntN(40); j++ {
			b.WriteByte(byte('a' + rng.IntN(4)))
		}
		m := Build(runes(ps))
		got := sorted(m.FindAll([]rune(b.String()), nil))
		want := naive(ps, b.String())
		if !slices.Equal(got, want) {
			t.Fatalf("patterns %q text %q: got %v want %v", ps, b.String(), got, want)
		}
	}
}

func TestZeroMatcher(t *testing.T) {
	var m *Matcher
	if got := m.FindAll([]rune("abc"), nil); len(got) != 0 {
		t.Fatalf("nil matcher found %v", got)
	}
	if got := Build(nil).FindAll([]rune("abc"), nil); len(got) != 0 {
		t.Fatalf("empty matcher found %v", got)
	}
}
