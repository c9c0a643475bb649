package moderation

import (
	"sync"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
	"golang.org/x/text/width"
)

// Character classes of normalised runes.
const (
	clsIgnore uint8 = iota // dropped: zero-width, format and combining characters
	clsLetter              // a letter of a script that separates words with spaces
	clsCJK                 // a letter of a script written without spaces (Han, kana, Hangul, Thai, ...)
	clsDigit               // a decimal digit or other number
	clsSpace               // white space; in a stream, one hard word boundary
	clsPunct               // punctuation, symbols, emoji
)

// Flags of a stream position.
const (
	flagSoftBefore uint8 = 1 << iota // separators were removed just before this run
	flagSoftInside                   // separators were removed inside this run
)

// maxExpansion caps how many runes one input rune may normalise to.
const maxExpansion = 8

// foldTableSize covers the BMP and the SMP (mathematical alphanumerics,
// enclosed letters, emoji); runes above it are folded on the fly.
const foldTableSize = 0x20000

// frune is one normalised rune with its class.
type frune struct {
	r   rune
	cls uint8
}

// foldEntry describes how one input rune normalises.
type foldEntry struct {
	off   uint32 // into foldTable.pool
	n     uint8  // number of output runes, 0 when the rune is dropped
	upper bool   // the input rune is an upper-case or title-case letter
	ocls  uint8  // class of the input rune itself
}

type foldTable struct {
	entries []foldEntry
	pool    []frune
	ascii   [128]asciiFold
}

// asciiFold is the fold of an ASCII rune, which is always one rune or none.
type asciiFold struct {
	r     rune
	cls   uint8 // clsIgnore when dropped
	ocls  uint8
	upper bool
}

// folds is built once, on first use, and is read-only afterwards.
var folds = sync.OnceValue(buildFoldTable)

func buildFoldTable() *foldTable {
	t := &foldTable{entries: make([]foldEntry, foldTableSize), pool: make([]frune, 0, foldTableSize+4096)}
	var buf [maxExpansion]frune
	for r := rune(0); r < foldTableSize; r++ {
		out, upper, ocls := foldRune(r, buf[:0])
		t.entries[r] = foldEntry{off: uint32(len(t.pool)), n: uint8(len(out)), upper: upper, ocls: ocls}
		t.pool = append(t.pool, out...)
		if r < 128 {
			a := asciiFold{ocls: ocls, upper: upper}
			if len(out) == 1 {
				a.r, a.cls = out[0].r, out[0].cls
			}
			t.ascii[r] = a
		}
	}
	return t
}

// lookup returns the normalised runes of r. It does not allocate for runes
// inside the table.
func (t *foldTable) lookup(r rune, buf []frune) (out []frune, upper bool, ocls uint8) {
	if r >= 0 && r < foldTableSize {
		e := t.entries[r]
		return t.pool[e.off : e.off+uint32(e.n)], e.upper, e.ocls
	}
	return foldRune(r, buf[:0])
}

// ignorable reports characters that are dropped before matching: combining
// marks, format characters (zero-width space/joiners, word joiner, BOM, soft
// hyphen, bidi controls), control characters other than white space, and
// invisible fillers.
func ignorable(r rune) bool {
	switch {
	case r == utf8.RuneError:
		return false
	case r < 0x20 || r == 0x7f:
		return !unicode.IsSpace(r)
	case r < 0x80:
		return false
	case r == 0x3164 || r == 0x115f || r == 0x1160 || r == 0xffa0 || r == 0x180e:
		return true
	}
	return unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf, unicode.Cc) && !unicode.IsSpace(r)
}

func isCJK(r rune) bool {
	return unicode.In(r, unicode.Han, unicode.Hiragana, unicode.Katakana, unicode.Hangul,
		unicode.Thai, unicode.Lao, unicode.Khmer, unicode.Myanmar, unicode.Bopomofo) ||
		(r >= 0x3040 && r <= 0x30ff) || (r >= 0x31f0 && r <= 0x31ff)
}

func classOf(r rune) uint8 {
	switch {
	case ignorable(r):
		return clsIgnore
	case unicode.IsSpace(r):
		return clsSpace
	case unicode.IsLetter(r):
		if isCJK(r) {
			return clsCJK
		}
		return clsLetter
	case unicode.IsNumber(r):
		return clsDigit
	case unicode.IsMark(r):
		return clsLetter
	}
	return clsPunct
}

// homoglyphs maps lower-case look-alikes from other scripts to Latin.
var homoglyphs = map[rune]rune{
	// Cyrillic
	'а': 'a', 'в': 'b', 'е': 'e', 'к': 'k', 'м': 'm', 'н': 'h', 'о': 'o', 'р': 'p',
	'с': 'c', 'т': 't', 'у': 'y', 'х': 'x', 'і': 'i', 'ј': 'j', 'ѕ': 's', 'ԁ': 'd',
	'һ': 'h', 'ԛ': 'q', 'ԝ': 'w', 'ӏ': 'l', 'ь': 'b', 'п': 'n', 'г': 'r', 'ѵ': 'v',
	'ү': 'y', 'ɡ': 'g',
	// Greek
	'α': 'a', 'β': 'b', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'ν': 'v', 'ο': 'o',
	'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x', 'γ': 'y', 'ω': 'w', 'μ': 'u', 'ϲ': 'c',
	'ϳ': 'j',
	// Armenian
	'օ': 'o', 'ս': 'u', 'հ': 'h', 'ո': 'n',
	// Latin small capitals and variants
	'ı': 'i', 'ɑ': 'a', 'ɩ': 'i', 'ʀ': 'r', 'ɢ': 'g', 'ʜ': 'h', 'ɪ': 'i', 'ʟ': 'l',
	'ɴ': 'n', 'ᴏ': 'o', 'ᴄ': 'c', 'ᴅ': 'd', 'ᴇ': 'e', 'ᴊ': 'j', 'ᴋ': 'k', 'ᴍ': 'm',
	'ᴘ': 'p', 'ᴛ': 't', 'ᴜ': 'u', 'ᴠ': 'v', 'ᴡ': 'w', 'ᴢ': 'z', 'ꜰ': 'f', 'ꜱ': 's',
	'ø': 'o', 'ð': 'd', 'ł': 'l', 'đ': 'd', 'ħ': 'h', 'ƀ': 'b',
}

// stripMark removes diacritics from letters of alphabetic scripts
// (é → e, ё → е). Kana and Hangul keep theirs (が stays が).
func stripMark(r rune) rune {
	if r < 0x80 || isCJK(r) {
		return r
	}
	d := norm.NFD.String(string(r))
	base, size := utf8.DecodeRuneInString(d)
	if size == len(d) {
		return r
	}
	for _, m := range d[size:] {
		if !unicode.Is(unicode.Mn, m) {
			return r
		}
	}
	return base
}

// foldRune normalises one rune: width folding, NFKC, lower case, diacritic
// removal and homoglyph mapping. It appends to buf.
func foldRune(r rune, buf []frune) (out []frune, upper bool, ocls uint8) {
	upper = unicode.IsUpper(r) || unicode.IsTitle(r)
	ocls = classOf(r)
	if ocls == clsIgnore {
		return buf, upper, ocls
	}
	if r < 0x80 {
		c := unicode.ToLower(r)
		return append(buf, frune{c, classOf(c)}), upper, ocls
	}
	s := norm.NFKC.String(width.Fold.String(string(r)))
	for _, c := range s {
		if len(buf) == maxExpansion {
			break
		}
		if ignorable(c) {
			continue
		}
		c = stripMark(unicode.ToLower(c))
		if h, ok := homoglyphs[c]; ok {
			c = h
		}
		buf = append(buf, frune{c, classOf(c)})
	}
	return buf, upper, ocls
}

// leet maps look-alike digits and symbols to letters inside words.
func leet(r rune) rune {
	switch r {
	case '0':
		return 'o'
	case '1':
		return 'i'
	case '3':
		return 'e'
	case '4':
		return 'a'
	case '5':
		return 's'
	case '7':
		return 't'
	case '@':
		return 'a'
	case '$':
		return 's'
	}
	return 0
}

// entry is a normalised rune before separator handling.
type entry struct {
	r    rune
	orig int32 // index of the input rune it came from
	cls  uint8
}

// run is one stream position: a rune repeated cnt times in the input.
type run struct {
	os, oe int32 // input rune span [os, oe)
	cls    uint8 // clsLetter, clsCJK, clsDigit or clsSpace (a hard boundary)
	cnt    uint8 // run length, saturating at 255
	flag   uint8 // flagSoft*
}

// normText is the normalised form of one text: a stream of runs (repeated
// runes collapsed to one, with the run length kept), in which separators
// between the letters of one evasively spelled word were removed (a "soft"
// boundary) and every other separator run became one ' ' (a hard boundary).
// For each run it keeps the span of input runes it came from.
//
// A normText is scratch space reused through a pool; it is not safe for
// concurrent use.
type normText struct {
	ents   []entry
	tokLen []int32

	r    []rune // run rune (the matcher's input)
	runs []run  // the rest of each run, parallel to r

	runes   int // input runes
	letters int // input letters
	upper   int // input upper-case letters
	symbols int // input punctuation/symbol runes (emoji included)
	repeats int // runes removed by collapsing runs
	hash    uint64
	buf     [maxExpansion]frune
	ft      *foldTable
}

func (t *normText) reset() {
	t.ents = t.ents[:0]
	t.tokLen = t.tokLen[:0]
	t.r = t.r[:0]
	t.runs = t.runs[:0]
	t.runes, t.letters, t.upper, t.symbols, t.repeats = 0, 0, 0, 0, 0
	t.hash = 0
}

func isWordCls(c uint8) bool { return c == clsLetter || c == clsDigit }

// normalize fills t from text. It does not allocate once t's slices have
// grown to the text's size.
func (t *normText) normalize(text string) {
	t.reset()
	if t.ft == nil {
		t.ft = folds()
	}
	t.fold(text)
	readBangPipe(t.ents)
	t.leetTokens()
	t.collapse()
	t.hash = streamHash(t.r)
}

// fold is normalize's pass 1: each rune of text folded (case, width,
// confusables, marks) into t.ents, with the letter, upper-case and symbol
// counts.
func (t *normText) fold(text string) {
	ft := t.ft
	ri := int32(0)
	for _, c := range text {
		if c < 0x80 {
			a := &ft.ascii[c]
			switch a.ocls {
			case clsLetter:
				t.letters++
				if a.upper {
					t.upper++
				}
			case clsPunct:
				t.symbols++
			}
			if a.cls != clsIgnore {
				t.ents = append(t.ents, entry{r: a.r, orig: ri, cls: a.cls})
			}
			ri++
			continue
		}
		out, upper, ocls := ft.lookup(c, t.buf[:0])
		switch ocls {
		case clsLetter, clsCJK:
			t.letters++
			if upper {
				t.upper++
			}
		case clsPunct:
			t.symbols++
		}
		for _, f := range out {
			t.ents = append(t.ents, entry{r: f.r, orig: ri, cls: f.cls})
		}
		ri++
	}
	t.runes = int(ri)
}

// readBangPipe is normalize's pass 2a: '!' and '|' between letters read
// as i and l (sh!t).
func readBangPipe(ents []entry) {
	for j := 1; j+1 < len(ents); j++ {
		if ents[j].cls == clsPunct && ents[j-1].cls == clsLetter && ents[j+1].cls == clsLetter {
			switch ents[j].r {
			case '!':
				ents[j].r, ents[j].cls = 'i', clsLetter
			case '|':
				ents[j].r, ents[j].cls = 'l', clsLetter
			}
		}
	}
}

// leetTokens is normalize's pass 2b: leetspeak inside tokens that contain
// a letter, and each entry's token length (t.tokLen).
func (t *normText) leetTokens() {
	ents := t.ents
	if cap(t.tokLen) < len(ents) {
		t.tokLen = make([]int32, len(ents), 2*len(ents))
	}
	t.tokLen = t.tokLen[:len(ents)]
	for j := 0; j < len(ents); {
		if !isTokenRune(ents[j]) {
			t.tokLen[j] = 0
			j++
			continue
		}
		k, letter := j, false
		for ; k < len(ents) && isTokenRune(ents[k]); k++ {
			if ents[k].cls == clsLetter {
				letter = true
			}
		}
		for x := j; x < k; x++ {
			if letter {
				if l := leet(ents[x].r); l != 0 {
					ents[x].r, ents[x].cls = l, clsLetter
				}
			}
			if ents[x].cls == clsPunct { // a lone '@' or '$' stays a separator
				t.tokLen[x] = 0
			} else {
				t.tokLen[x] = int32(k - j)
			}
		}
		j = k
	}
}

// collapse is normalize's pass 3: separators between word entries become
// one space, or nothing where they split a word (soft), and runs of one
// rune collapse into one entry with its count, into t.r and t.runs.
func (t *normText) collapse() {
	ents := t.ents
	last := -1 // index of the last word entry
	sepStart, sepCount, sepSpace := 0, 0, false
	for j, e := range ents {
		switch e.cls {
		case clsLetter, clsDigit, clsCJK:
		default:
			if sepCount == 0 {
				sepStart, sepSpace = j, false
			}
			sepCount++
			if e.cls == clsSpace || e.r == '\'' || e.r == '’' || e.r == '‘' || e.r == '`' {
				sepSpace = true // apostrophes join only single letters: "he'll" is not "hell"
			}
			continue
		}
		soft := false
		if last >= 0 && sepCount > 0 {
			a := ents[last]
			if sepCount <= 3 {
				switch {
				case a.cls == clsCJK && e.cls == clsCJK:
					soft = true
				case a.cls != clsCJK && e.cls != clsCJK:
					soft = !sepSpace || (t.tokLen[last] == 1 && t.tokLen[j] == 1)
				}
			}
			if !soft {
				t.push(' ', clsSpace, ents[sepStart].orig, ents[j-1].orig+1, 0)
			}
		}
		var f uint8
		if soft {
			f = flagSoftBefore
		}
		n := len(t.r)
		if n > 0 && t.r[n-1] == e.r {
			p := &t.runs[n-1]
			if p.cnt < 255 {
				p.cnt++
			}
			p.oe = e.orig + 1
			if soft {
				p.flag |= flagSoftInside
			}
			t.repeats++
		} else {
			t.push(e.r, e.cls, e.orig, e.orig+1, f)
		}
		last, sepCount = j, 0
	}
}

// streamHash is FNV-1a over the normalised stream.
func streamHash(rs []rune) uint64 {
	h := uint64(14695981039346656037)
	for _, r := range rs {
		h ^= uint64(r)
		h *= 1099511628211
	}
	return h
}

func isTokenRune(e entry) bool {
	return e.cls == clsLetter || e.cls == clsDigit || (e.cls == clsPunct && (e.r == '@' || e.r == '$'))
}

func (t *normText) push(r rune, cls uint8, os, oe int32, f uint8) {
	t.r = append(t.r, r)
	t.runs = append(t.runs, run{os: os, oe: oe, cls: cls, cnt: 1, flag: f})
}

// leftBoundary reports whether a word starts at stream position s.
func (t *normText) leftBoundary(s int) bool {
	return s == 0 || !isWordCls(t.runs[s-1].cls) || !isWordCls(t.runs[s].cls) || t.runs[s].flag != 0
}

// rightBoundary reports whether a word ends just before stream position e.
func (t *normText) rightBoundary(e int) bool {
	return e >= len(t.r) || !isWordCls(t.runs[e].cls) || !isWordCls(t.runs[e-1].cls) ||
		t.runs[e].flag&flagSoftBefore != 0 || t.runs[e-1].flag&flagSoftInside != 0
}

// Span is a half-open range [Start, End) of rune indexes in an input text.
type Span struct {
	Start, End int
}

// Normalize returns text as the keyword matcher sees it — lower case, NFKC,
// folded width, without diacritics, zero-width characters and separators
// inside words, with look-alike letters mapped to Latin, repeated letters
// collapsed to one and every other separator run reduced to one space — and,
// for each rune of the result, the span of input runes it came from.
// It is meant for tests and for showing moderators why a rule fired.
func Normalize(text string) (string, []Span) {
	var t normText
	t.normalize(text)
	spans := make([]Span, len(t.r))
	for i := range t.r {
		spans[i] = Span{Start: int(t.runs[i].os), End: int(t.runs[i].oe)}
	}
	return string(t.r), spans
}
