// Package ac implements an Aho–Corasick automaton over runes.
//
// The automaton is immutable once built, so one Matcher may be shared by any
// number of goroutines. Matching cost is linear in the text length plus the
// number of hits and does not grow with the number of patterns.
package ac

import (
	"slices"
)

// Hit is one occurrence of a pattern: the pattern's index in the slice given
// to Build and the index of the text rune just past its last rune.
type Hit struct {
	Pattern int32
	End     int32
}

// Matcher is a compiled Aho–Corasick automaton. The zero value matches
// nothing. It is safe for concurrent use.
type Matcher struct {
	ascii   [128]int32     // rune -> symbol for ASCII; -1 when absent
	symbols map[rune]int32 // rune -> symbol for other runes
	root    []int32        // dense transitions of the root state, by symbol
	edgeOff []int32        // edges of state s are edgeOff[s]:edgeOff[s+1]
	edgeSym []int32        // sorted by symbol within a state
	edgeTo  []int32        // target state
	fail    []int32        // failure link
	term    []int32        // pattern ending at this state, or -1
	hit     []int32        // this state if term>=0, else nearest failure ancestor with a term, 0 = none
	next    []int32        // nearest proper failure ancestor with a term, 0 = none
	lens    []int32        // pattern lengths in runes
	nstates int
}

// Build compiles patterns into a Matcher. Empty patterns are ignored; a
// pattern that occurs twice is reported under its first index only.
func Build(patterns [][]rune) *Matcher {
	m := &Matcher{symbols: make(map[rune]int32)}
	for i := range m.ascii {
		m.ascii[i] = -1
	}
	children, nsym := m.buildTrie(patterns)
	m.packEdges(children, nsym)
	m.linkFailures(children)
	m.linkOutputs()
	return m
}

// buildTrie numbers the patterns' runes as symbols (m.ascii, m.symbols)
// and builds their trie with map children, setting m.lens and m.term. It
// returns the children of each state and the number of symbols.
func (m *Matcher) buildTrie(patterns [][]rune) (children []map[int32]int32, nsym int32) {
	m.lens = make([]int32, len(patterns))
	sym := func(r rune) int32 {
		if r >= 0 && r < 128 {
			if m.ascii[r] < 0 {
				m.ascii[r] = nsym
				nsym++
			}
			return m.ascii[r]
		}
		s, ok := m.symbols[r]
		if !ok {
			s = nsym
			m.symbols[r] = s
			nsym++
		}
		return s
	}
	children = []map[int32]int32{{}}
	term := []int32{-1}
	for pi, p := range patterns {
		m.lens[pi] = int32(len(p))
		if len(p) == 0 {
			continue
		}
		s := int32(0)
		for _, r := range p {
			c := sym(r)
			n, ok := children[s][c]
			if !ok {
				n = int32(len(children))
				children = append(children, map[int32]int32{})
				term = append(term, -1)
				children[s][c] = n
			}
			s = n
		}
		if term[s] < 0 {
			term[s] = int32(pi)
		}
	}
	m.term = term
	return children, nsym
}

// packEdges lays the trie's edges out as CSR arrays sorted by symbol
// (m.edgeOff, m.edgeSym, m.edgeTo) plus the root's dense transitions, and
// sizes the per-state links.
func (m *Matcher) packEdges(children []map[int32]int32, nsym int32) {
	n := len(children)
	m.nstates = n
	m.fail = make([]int32, n)
	m.hit = make([]int32, n)
	m.next = make([]int32, n)
	m.edgeOff = make([]int32, n+1)
	for s := 0; s < n; s++ {
		m.edgeOff[s+1] = m.edgeOff[s] + int32(len(children[s]))
	}
	m.edgeSym = make([]int32, m.edgeOff[n])
	m.edgeTo = make([]int32, m.edgeOff[n])
	keys := make([]int32, 0, 64)
	for s := 0; s < n; s++ {
		keys = keys[:0]
		for k := range children[s] {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		off := m.edgeOff[s]
		for i, k := range keys {
			m.edgeSym[off+int32(i)] = k
			m.edgeTo[off+int32(i)] = children[s][k]
		}
	}
	m.root = make([]int32, nsym)
	for k, v := range children[0] {
		m.root[k] = v
	}
}

// linkFailures sets every state's failure link, breadth first.
func (m *Matcher) linkFailures(children []map[int32]int32) {
	queue := make([]int32, 0, m.nstates)
	for _, v := range children[0] {
		queue = append(queue, v) // fail = 0
	}
	for len(queue) > 0 {
		s := queue[0]
		queue = queue[1:]
		for k, v := range children[s] {
			f := m.fail[s]
			for {
				if t, ok := m.child(f, k); ok {
					m.fail[v] = t
					break
				}
				if f == 0 {
					m.fail[v] = 0
					break
				}
				f = m.fail[f]
			}
			queue = append(queue, v)
		}
	}
}

// linkOutputs sets the output links (m.hit, m.next) in BFS order, so
// parents' links are ready.
func (m *Matcher) linkOutputs() {
	order := make([]int32, 0, m.nstates)
	order = append(order, 0)
	for i := 0; i < len(order); i++ {
		s := order[i]
		for e := m.edgeOff[s]; e < m.edgeOff[s+1]; e++ {
			order = append(order, m.edgeTo[e])
		}
	}
	for _, s := range order[1:] {
		f := m.fail[s]
		m.next[s] = m.hit[f]
		if m.term[s] >= 0 {
			m.hit[s] = s
		} else {
			m.hit[s] = m.hit[f]
		}
	}
}

// child returns the goto transition of state s on symbol c.
func (m *Matcher) child(s, c int32) (int32, bool) {
	if s == 0 {
		t := m.root[c]
		return t, t != 0
	}
	lo, hi := m.edgeOff[s], m.edgeOff[s+1]
	if hi-lo <= 8 {
		for e := lo; e < hi; e++ {
			if m.edgeSym[e] == c {
				return m.edgeTo[e], true
			}
		}
		return 0, false
	}
	for lo < hi {
		mid := int32(uint32(lo+hi) >> 1)
		switch v := m.edgeSym[mid]; {
		case v == c:
			return m.edgeTo[mid], true
		case v < c:
			lo = mid + 1
		default:
			hi = mid
		}
	}
	return 0, false
}

// States reports the number of automaton states (a size measure).
func (m *Matcher) States() int { return m.nstates }

// Len returns the length in runes of pattern p.
func (m *Matcher) Len(p int32) int { return int(m.lens[p]) }

// FindAll appends every occurrence of every pattern in text to dst and
// returns it. Overlapping occurrences are all reported, in order of End.
func (m *Matcher) FindAll(text []rune, dst []Hit) []Hit {
	if m == nil || m.nstates <= 1 {
		return dst
	}
	s := int32(0)
	for i, r := range text {
		var c int32
		if r >= 0 && r < 128 {
			c = m.ascii[r]
		} else if v, ok := m.symbols[r]; ok {
			c = v
		} else {
			c = -1
		}
		if c < 0 {
			s = 0
			continue
		}
		for {
			if t, ok := m.child(s, c); ok {
				s = t
				break
			}
			if s == 0 {
				break
			}
			s = m.fail[s]
		}
		for t := m.hit[s]; t != 0; t = m.next[t] {
			dst = append(dst, Hit{Pattern: m.term[t], End: int32(i + 1)})
		}
	}
	return dst
}
