package moderation

import (
	"testing"
	"unicode/utf8"
)

func TestNormalize(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"case", "FuCk", "fuck"},
		{"full width", "ｆｕｃｋ", "fuck"},
		{"full width space", "ＦＵＣＫ\u3000ＹＯＵ", "fuck you"},
		{"zero width", "f\u200bu\u200c\u200dc\u2060k\ufeff", "fuck"},
		{"soft hyphen", "fu\u00adck", "fuck"},
		{"dots", "f.u.c.k", "fuck"},
		{"spaces", "f u c k", "fuck"},
		{"underscores", "f_u_c_k", "fuck"},
		{"dashes", "f-u-c-k", "fuck"},
		{"repeats", "fuuuuuck", "fuck"},
		{"cyrillic", "fuсk", "fuck"},
		{"greek", "ναι", "vai"},
		{"leet", "sh1t a$$ h3ll0", "shit as helo"},
		{"leet bang", "sh!t", "shit"},
		{"digits alone", "2023 is 1337", "2023 is 137"},
		{"diacritics", "fück héllo", "fuck helo"},
		{"combining strike", "F̶u̶c̶k̶", "fuck"},
		{"math bold", "𝐟𝐮𝐜𝐤", "fuck"},
		{"circled", "ⓕⓤⓒⓚ", "fuck"},
		{"words stay apart", "as sorted", "as sorted"},
		{"single then word", "a fuck", "a fuck"},
		{"cjk spaced", "傻 逼", "傻逼"},
		{"kana voiced", "がぎ", "がぎ"},
		{"punctuation runs", "hello!!! world???", "helo world"},
		{"empty", "", ""},
		{"only emoji", "😀😀", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, spans := Normalize(tc.in)
			if got != tc.want {
				t.Fatalf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
			}
			if len(spans) != utf8.RuneCountInString(got) {
				t.Fatalf("%d spans for %d runes", len(spans), utf8.RuneCountInString(got))
			}
		})
	}
}

func TestNormalizeSpans(t *testing.T) {
	_, spans := Normalize("x fuuuck y")
	// x ' ' f u c k ' ' y
	want := []Span{{0, 1}, {1, 2}, {2, 3}, {3, 6}, {6, 7}, {7, 8}, {8, 9}, {9, 10}}
	if len(spans) != len(want) {
		t.Fatalf("spans %v, want %v", spans, want)
	}
	for i := range want {
		if spans[i] != want[i] {
			t.Fatalf("spans %v, want %v", spans, want)
		}
	}
}

func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"f.u.c.k", "ｆｕｃｋ", "傻 逼", "sh1t", "\xff\xfe", "a\u0301\u0301", "ﷺ", "example dot com"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		out, spans := Normalize(s)
		if !utf8.ValidString(out) {
			t.Fatalf("invalid UTF-8 output %q", out)
		}
		n := utf8.RuneCountInString(s)
		if len(spans) != utf8.RuneCountInString(out) {
			t.Fatalf("%d spans for %d runes", len(spans), utf8.RuneCountInString(out))
		}
		prev := 0
		for _, sp := range spans {
			if sp.Start < 0 || sp.End > n || sp.Start >= sp.End || sp.Start < prev {
				t.Fatalf("span %v out of range [0,%d] or out of order (prev start %d)", sp, n, prev)
			}
			prev = sp.Start
		}
		// Masking every match span must keep the rune count stable or smaller.
		if m := maskText(s, append([]Span(nil), spans...)); utf8.RuneCountInString(m) > n {
			t.Fatalf("mask grew the text: %q -> %q", s, m)
		}
	})
}
