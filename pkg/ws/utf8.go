package ws

import "encoding/binary"

// utf8State carries an incomplete UTF-8 sequence between fragments of a
// text message. The zero value is "at a rune boundary". It packs the number
// of continuation bytes still expected (bits 0-7) and the inclusive range
// allowed for the next one (lo in bits 8-15, hi in bits 16-23), so a prefix
// that can never complete (overlong form, surrogate, beyond U+10FFFF) is
// rejected on the byte that makes it invalid.
type utf8State uint32

// validUTF8 advances st over p. It returns false as soon as p contains a
// byte that cannot continue a valid UTF-8 text.
func validUTF8(st utf8State, p []byte) (utf8State, bool) {
	need := uint32(st) & 0xff
	lo, hi := byte(st>>8), byte(st>>16)
	i := 0
	for i < len(p) {
		if need > 0 {
			c := p[i]
			if c < lo || c > hi {
				return 0, false
			}
			need--
			lo, hi = 0x80, 0xBF
			i++
			continue
		}
		// At a rune boundary: skip ASCII eight bytes at a time.
		for i+8 <= len(p) && binary.LittleEndian.Uint64(p[i:])&0x8080808080808080 == 0 {
			i += 8
		}
		if i == len(p) {
			break
		}
		c := p[i]
		i++
		switch {
		case c < 0x80:
			continue
		case c >= 0xC2 && c <= 0xDF:
			need, lo, hi = 1, 0x80, 0xBF
		case c == 0xE0:
			need, lo, hi = 2, 0xA0, 0xBF // no overlong 3-byte forms
		case c == 0xED:
			need, lo, hi = 2, 0x80, 0x9F // no surrogates
		case c >= 0xE1 && c <= 0xEF:
			need, lo, hi = 2, 0x80, 0xBF
		case c == 0xF0:
			need, lo, hi = 3, 0x90, 0xBF // no overlong 4-byte forms
		case c >= 0xF1 && c <= 0xF3:
			need, lo, hi = 3, 0x80, 0xBF
		case c == 0xF4:
			need, lo, hi = 3, 0x80, 0x8F // nothing beyond U+10FFFF
		default:
			return 0, false
		}
	}
	if need == 0 {
		return 0, true
	}
	return utf8State(need | uint32(lo)<<8 | uint32(hi)<<16), true
}
