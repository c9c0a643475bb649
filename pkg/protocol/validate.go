package protocol

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// ValidRoom reports whether room matches [A-Za-z0-9_-]{1,64}.
func ValidRoom(room string) bool {
	if len(room) == 0 || len(room) > MaxRoomLen {
		return false
	}
	for i := 0; i < len(room); i++ {
		c := room[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// ValidID reports whether id is a usable sender message id: 1 to 64 bytes of
// printable ASCII.
func ValidID(id string) bool {
	if len(id) == 0 || len(id) > MaxIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		if id[i] < 0x21 || id[i] > 0x7e {
			return false
		}
	}
	return true
}

// ParseMode returns the display mode named by s in its wire form: "" for
// "" and "scroll", "top", "bottom". Anything else is CodeInvalid.
func ParseMode(s string) (string, *Error) {
	switch s {
	case "", "scroll":
		return ModeScroll, nil
	case ModeTop, ModeBottom:
		return s, nil
	}
	return "", &Error{Code: CodeInvalid, Message: "mode must be scroll, top or bottom"}
}

// ParseSize returns the display size named by s in its wire form: "" for
// "" and "normal", "small", "large". Anything else is CodeInvalid.
func ParseSize(s string) (string, *Error) {
	switch s {
	case "", "normal":
		return SizeNormal, nil
	case SizeSmall, SizeLarge:
		return s, nil
	}
	return "", &Error{Code: CodeInvalid, Message: "size must be small, normal or large"}
}

// CleanText validates and normalises message text: it must be valid UTF-8;
// control and format characters that could break rendering (C0/C1 controls,
// bidi overrides) are removed, newlines and tabs become spaces, and
// surrounding space is trimmed. It returns CodeInvalid for invalid UTF-8 or
// text that is empty after cleaning, and CodeTooLong past MaxTextRunes.
func CleanText(s string) (string, *Error) {
	if !utf8.ValidString(s) {
		return "", &Error{Code: CodeInvalid, Message: "text is not valid UTF-8"}
	}
	clean := true
	for _, r := range s {
		if needsCleaning(r) {
			clean = false
			break
		}
	}
	if !clean {
		var b strings.Builder
		b.Grow(len(s))
		for _, r := range s {
			switch {
			case r == '\n' || r == '\r' || r == '\t':
				b.WriteByte(' ')
			case needsCleaning(r):
			default:
				b.WriteRune(r)
			}
		}
		s = b.String()
	}
	s = strings.TrimSpace(s)
	if s == "" {
		return "", &Error{Code: CodeInvalid, Message: "text is empty"}
	}
	if utf8.RuneCountInString(s) > MaxTextRunes {
		return "", &Error{Code: CodeTooLong, Message: "text is too long"}
	}
	return s, nil
}

// needsCleaning reports control characters and bidi controls, which are
// removed from message text.
func needsCleaning(r rune) bool {
	if r < 0x20 || (r >= 0x7f && r < 0xa0) {
		return true
	}
	switch r {
	case 0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069:
		return true
	}
	return r > 0xffff && unicode.Is(unicode.Co, r) // private-use planes
}
