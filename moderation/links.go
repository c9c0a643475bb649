package moderation

import (
	"bytes"
	"strings"
)

// strongTLDs are top-level domains that are rarely ordinary words, so
// "label.tld" alone (also "label dot tld") counts as a link.
var strongTLDs = map[string]bool{
	"com": true, "net": true, "org": true, "io": true, "gg": true, "tv": true, "xyz": true,
	"info": true, "biz": true, "ru": true, "cn": true, "top": true, "site": true,
	"online": true, "club": true, "shop": true, "live": true, "vip": true, "app": true,
	"dev": true, "link": true, "cc": true, "ly": true, "tk": true, "ml": true, "ga": true,
	"cf": true, "gq": true, "pw": true, "ws": true, "fm": true, "su": true, "icu": true,
	"store": true, "tech": true, "website": true, "pro": true, "cloud": true, "asia": true,
	"xxx": true, "porn": true, "sex": true, "onion": true, "gov": true, "edu": true,
	"moe": true, "ink": true, "win": true, "bet": true, "casino": true, "game": true,
	"games": true, "stream": true, "chat": true, "click": true, "work": true, "lol": true,
}

// weakTLDs are top-level domains that are also common words or
// abbreviations ("go.to", "be.in"); "label.tld" counts as a link only with a
// scheme, "www." or a following path.
var weakTLDs = map[string]bool{
	"co": true, "me": true, "to": true, "be": true, "us": true, "in": true, "it": true,
	"at": true, "is": true, "no": true, "am": true, "de": true, "fr": true, "uk": true,
	"jp": true, "kr": true, "ca": true, "au": true, "nl": true, "pl": true, "es": true,
	"se": true, "ch": true, "eu": true, "tw": true, "hk": true, "sg": true,
	"so": true, "id": true, "my": true, "ai": true, "sh": true, "st": true, "im": true,
}

// linkBytes renders the normalised entries as an ASCII string for link
// scanning: letters and digits stay, '.' and '。' become '.', white space
// becomes ' ', other ASCII punctuation stays, anything else becomes '#'.
func linkBytes(t *normText, buf []byte) []byte {
	buf = buf[:0]
	for _, e := range t.ents {
		r := e.r
		switch {
		case r == '。' || r == '｡' || r == '．':
			buf = append(buf, '.')
		case e.cls == clsSpace:
			buf = append(buf, ' ')
		case r < 0x80:
			buf = append(buf, byte(r))
		default:
			buf = append(buf, '#')
		}
	}
	return buf
}

// mayHaveLink is a cheap pre-check on the raw text.
func mayHaveLink(text string) bool {
	return strings.IndexByte(text, '.') >= 0 || strings.Contains(text, "。") ||
		strings.Contains(text, "．") || strings.Contains(text, "｡") ||
		containsFoldASCII(text, "dot")
}

func containsFoldASCII(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		j := 0
		for ; j < len(sub); j++ {
			c := s[i+j]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != sub[j] {
				break
			}
		}
		if j == len(sub) {
			return true
		}
	}
	return false
}

// dotForms are spelled-out dots, replaced by '.' before scanning.
var dotForms = [][]byte{[]byte(" dot "), []byte("(dot)"), []byte("[dot]"), []byte("{dot}"), []byte("<dot>"), []byte("[.]"), []byte("(.)"), []byte("{.}"), []byte(" . ")}

func isLabel(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' }

// findLinks calls fn with the host of every link in b (lower-case ASCII from
// linkBytes) until fn returns false. It may rewrite b.
func findLinks(b []byte, fn func(host string) bool) {
	// Spelled-out dots between labels become '.'.
	for _, f := range dotForms {
		for {
			i := bytes.Index(b, f)
			if i < 0 || i == 0 || i+len(f) >= len(b) || !isLabel(b[i-1]) || !isLabel(b[i+len(f)]) {
				break
			}
			b = append(b[:i+1], b[i+len(f):]...)
			b[i] = '.'
		}
	}
	for i := 0; i < len(b); {
		if !isLabel(b[i]) {
			i++
			continue
		}
		j := i
		for j < len(b) && (isLabel(b[j]) || b[j] == '.') {
			j++
		}
		host := strings.Trim(string(b[i:j]), ".")
		scheme := i >= 3 && string(b[i-3:i]) == "://"
		path := j < len(b) && (b[j] == '/' || b[j] == ':')
		if k := strings.LastIndexByte(host, '.'); k > 0 {
			tld := host[k+1:]
			www := strings.HasPrefix(host, "www.")
			if strongTLDs[tld] || (weakTLDs[tld] && (scheme || path || www)) || (scheme && tld != "") {
				if !fn(host) {
					return
				}
			}
		}
		i = j
	}
}

// domainAllowed reports whether host is one of allow or a subdomain of one.
func domainAllowed(host string, allow []string) bool {
	for _, a := range allow {
		if host == a || (strings.HasSuffix(host, a) && host[len(host)-len(a)-1] == '.') {
			return true
		}
	}
	return false
}
