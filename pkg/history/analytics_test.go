package history_test

import (
	"reflect"
	"testing"

	"github.com/danmaku-live/danmaku/pkg/history"
)

func TestPhrases(t *testing.T) {
	for _, c := range []struct {
		text string
		want []string
	}{
		{"哈哈哈哈", []string{"哈哈"}},
		{"打得好!好", []string{"打得", "得好", "好"}},
		{"GG wp, the GG 666 a", []string{"gg", "wp", "666"}},
		{"nice😀😀☃", []string{"nice", "😀", "☃"}},
		{"主播yyds太强了", []string{"主播", "太强", "强了", "yyds"}},
		{"é! x", nil},
		{"Café au lait, CAFÉ", []string{"café", "au", "lait"}},
		{"cafe\u0301 naïve Ørsted", []string{"cafe\u0301", "naïve", "ørsted"}},
		{"nice 👍🏽👍 👨\u200d👩\u200d👧 ☃\ufe0f 🏽", []string{"nice", "👍🏽", "👍", "👨\u200d👩\u200d👧", "☃\ufe0f"}},
	} {
		if got := history.Phrases(c.text, history.PhraseFilter{}); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Phrases(%q) = %q, want %q", c.text, got, c.want)
		}
	}
	blocked := history.NewPhraseFilter([]string{"垃圾", " BAD ", "sh.t"})
	for _, c := range []struct {
		text string
		want []string
	}{
		{"垃圾主播", []string{"主播"}},                    // not 圾主, half of 垃圾
		{"主播垃圾了", []string{"主播"}},                   // not 播垃 nor 圾了
		{"垃 bad badly sh.t shot", []string{"shot"}}, // 垃 is part of 垃圾; badly holds bad
		{"so BAD, good", []string{"good"}},
	} {
		if got := history.Phrases(c.text, blocked); !reflect.DeepEqual(got, c.want) {
			t.Errorf("Phrases(%q, blocked) = %q, want %q", c.text, got, c.want)
		}
	}
}

func TestHighlights(t *testing.T) {
	const m0, min = int64(600000000), int64(60000)
	var ms []history.MinuteStat
	for i := int64(0); i < 10; i++ {
		ms = append(ms, history.MinuteStat{Minute: m0 + i*min, Messages: 2})
	}
	ms = append(ms,
		history.MinuteStat{Minute: m0 + 10*min, Messages: 20}, // 10× the median
		history.MinuteStat{Minute: m0 + 11*min, Messages: 5},  // 2.5×: no
		history.MinuteStat{Minute: m0 + 13*min, Messages: 13}, // after a silent minute: median still 2
		history.MinuteStat{Minute: m0 + 14*min, Messages: 11}, // 5.5× but only 9 above: no
	)
	got := history.Highlights(ms, m0, m0+20*min)
	want := []history.Highlight{{Minute: m0 + 10*min, Messages: 20, Median: 2}, {Minute: m0 + 13*min, Messages: 13, Median: 2}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Highlights = %+v, want %+v", got, want)
	}
	if got := history.Highlights(nil, m0, m0+min); got != nil {
		t.Errorf("Highlights(nil) = %v", got)
	}
}
