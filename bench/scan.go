package bench

import (
	"bytes"
	"strconv"
)

// TextPrefix starts the text of every message the harness publishes:
// "b:<send unix nanoseconds>:<counter>". Viewers read the send time back
// from it to measure send → viewer latency.
const TextPrefix = "b:"

var (
	keySeq     = []byte(`"seq":`)
	keyAnyText = []byte(`"text":"`)
	textPrefix = []byte(TextPrefix)
	keyOp      = []byte(`"op":"`)
	keyMsgs    = []byte(`"msgs":[`)
	keyCompact = []byte(`"m":[`)
	keyAfterMs = []byte(`"after_ms":`)
	keyCode    = []byte(`"code":"`)
	keyID      = []byte(`"id":"`)
	keyFrom    = []byte(`"from":`)
	keyTo      = []byte(`"to":`)
	falseCompl = []byte(`"complete":false`)
)

// frameOp returns the op of a server frame (the first "op" field).
func frameOp(p []byte) []byte {
	return stringField(p, keyOp)
}

// stringField returns the string after key (which ends in the opening
// quote), up to the next quote; nil when absent.
func stringField(p, key []byte) []byte {
	i := bytes.Index(p, key)
	if i < 0 {
		return nil
	}
	p = p[i+len(key):]
	j := bytes.IndexByte(p, '"')
	if j < 0 {
		return nil
	}
	return p[:j]
}

// uintField returns the unsigned number after key, and whether it was found.
func uintField(p, key []byte) (uint64, bool) {
	i := bytes.Index(p, key)
	if i < 0 {
		return 0, false
	}
	v, n := parseUint(p[i+len(key):])
	return v, n > 0
}

// parseUint reads the decimal digits at the start of p.
func parseUint(p []byte) (v uint64, n int) {
	for n < len(p) && p[n] >= '0' && p[n] <= '9' {
		v = v*10 + uint64(p[n]-'0')
		n++
	}
	return v, n
}

// batchMarks returns a batch's from/to marks (docs/protocol.md: a thinned
// or shed batch covers from..to), looked for only before its "msgs" array;
// ok is false for a batch without marks.
func batchMarks(p []byte) (from, to uint64, ok bool) {
	if i := bytes.Index(p, keyMsgs); i >= 0 {
		p = p[:i]
	} else if i := bytes.Index(p, keyCompact); i >= 0 {
		p = p[:i]
	}
	to, ok = uintField(p, keyTo)
	if !ok || to == 0 {
		return 0, 0, false
	}
	from, _ = uintField(p, keyFrom)
	return from, to, true
}

// eachMessage calls f for every message of the "msgs" array of a batch or
// history frame with its seq and the send time (unix ns) read from a
// harness text, or 0 for another text. It scans each byte once, relying on
// the field order of protocol.Message (seq first, then text, in every
// message) and on JSON escaping: a quote inside a string is escaped, so
// the keys cannot occur inside a name or a text.
func eachMessage(p []byte, f func(seq uint64, sentNs int64)) {
	i := bytes.Index(p, keyMsgs)
	if i < 0 {
		eachCompact(p, f)
		return
	}
	p = p[i+len(keyMsgs):]
	for {
		i = indexAnchored(p, keySeq, 3) // 'q'
		if i < 0 {
			return
		}
		p = p[i+len(keySeq):]
		seq, n := parseUint(p)
		p = p[n:]
		var sent int64
		if j := indexAnchored(p, keyAnyText, 3); j >= 0 { // 'x'

			p = p[j+len(keyAnyText):]
			if bytes.HasPrefix(p, textPrefix) {
				v, n := parseUint(p[len(textPrefix):])
				if n > 0 {
					sent = int64(v)
				}
				p = p[len(textPrefix)+n:]
			}
		}
		f(seq, sent)
	}
}

// eachCompact is eachMessage for a compact batch (docs/protocol.md,
// "Compact batches"): {"seq":S,...,"m":[[step,dts,"text","uid",...],...]}.
// It stops at the first thing it cannot read.
func eachCompact(p []byte, f func(seq uint64, sentNs int64)) {
	i := bytes.Index(p, keyCompact)
	if i < 0 {
		return
	}
	seq, ok := uintField(p[:i], keySeq)
	if !ok {
		return
	}
	p = p[i+len(keyCompact):]
	for len(p) > 0 && p[0] == '[' {
		step, n := parseUint(p[1:])
		if n == 0 || len(p) < 1+n+1 || p[1+n] != ',' {
			return
		}
		p = p[1+n+1:]
		// dts: skip the (maybe negative) number.
		j := bytes.IndexByte(p, ',')
		if j < 0 || j+1 >= len(p) || p[j+1] != '"' {
			return
		}
		p = p[j+2:] // inside the text
		var sent int64
		if bytes.HasPrefix(p, textPrefix) {
			if v, n := parseUint(p[len(textPrefix):]); n > 0 {
				sent = int64(v)
			}
		}
		if p = skipString(p); p == nil {
			return
		}
		// The rest of the message: strings, null, an object.
		for len(p) > 0 && p[0] == ',' {
			p = p[1:]
			switch {
			case len(p) > 0 && p[0] == '"':
				p = skipString(p[1:])
			case bytes.HasPrefix(p, []byte("null")):
				p = p[4:]
			case len(p) > 0 && p[0] == '{':
				p = skipObject(p[1:])
			default:
				return
			}
			if p == nil {
				return
			}
		}
		if len(p) == 0 || p[0] != ']' {
			return
		}
		seq += step
		f(seq, sent)
		p = p[1:]
		if len(p) > 0 && p[0] == ',' {
			p = p[1:]
		}
	}
}

// skipString returns p after the JSON string whose opening quote is just
// before p, or nil when it does not end.
func skipString(p []byte) []byte {
	for i := 0; ; {
		j := bytes.IndexByte(p[i:], '"')
		if j < 0 {
			return nil
		}
		end := i + j
		bs := 0
		for k := end - 1; k >= 0 && p[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			return p[end+1:]
		}
		i = end + 1
	}
}

// skipObject returns p after the flat JSON object (string, bool or number
// values) whose opening brace is just before p, or nil.
func skipObject(p []byte) []byte {
	for len(p) > 0 {
		switch p[0] {
		case '}':
			return p[1:]
		case '"':
			p = skipString(p[1:])
			if p == nil {
				return nil
			}
		default:
			p = p[1:]
		}
	}
	return nil
}

// indexAnchored is bytes.Index(p, key) that looks for key[anchor] first:
// a byte rare in JSON ('q' of "seq", 'x' of "text") makes the SIMD
// IndexByte skip most of the input, where bytes.Index would stop at every
// quote.
func indexAnchored(p, key []byte, anchor int) int {
	off := 0
	for off+len(key) <= len(p) {
		i := bytes.IndexByte(p[off+anchor:], key[anchor])
		if i < 0 {
			return -1
		}
		start := off + i
		if start+len(key) > len(p) {
			return -1
		}
		if bytes.Equal(p[start:start+len(key)], key) {
			return start
		}
		off = start + 1
	}
	return -1
}

// benchText is the text of the n-th published message sent at ns.
func benchText(ns int64, n uint64) string {
	b := make([]byte, 0, 40)
	b = append(b, TextPrefix...)
	b = strconv.AppendInt(b, ns, 10)
	b = append(b, ':')
	b = strconv.AppendUint(b, n, 10)
	return string(b)
}
