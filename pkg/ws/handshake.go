package ws

import (
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"strconv"
	"strings"
	"time"
)

// DefaultMaxHeader is the header block limit of ParseUpgrade when maxHeader
// is not positive, and the limit of ParseHandshakeResponse.
const DefaultMaxHeader = 8 << 10

// acceptGUID is the fixed suffix of RFC 6455 section 1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// Handshake is a parsed and validated client upgrade request. Every string
// is a substring of one copy of the header block (no further allocation);
// values are raw (Path is not percent-decoded).
type Handshake struct {
	Path          string   // request path, e.g. "/ws"
	RawQuery      string   // after '?', without it, e.g. "room=r1&token=..."
	Host          string   // Host header
	Origin        string   // Origin header, "" for non-browser clients
	Key           string   // Sec-WebSocket-Key, validated to decode to 16 bytes
	Protocols     []string // Sec-WebSocket-Protocol tokens in order, nil when absent
	Extensions    string   // raw Sec-WebSocket-Extensions (repeated headers joined by ", ")
	XForwardedFor string   // raw X-Forwarded-For (repeated headers joined by ", ")
	XRealIP       string   // X-Real-IP header
	UserAgent     string   // User-Agent header
	Authorization string   // raw Authorization header value, e.g. "Bearer <jwt>"
}

// HandshakeError is a rejected upgrade request. The server answers with
// AppendHTTPError(dst, Status, Message, Header) and closes the connection.
// ParseHandshakeResponse also returns it for a non-101 server answer.
type HandshakeError struct {
	Status  int    // HTTP status code, e.g. 400
	Message string // short text for the response body
	Header  string // extra header lines, each ending in "\r\n", e.g. "Sec-WebSocket-Version: 13\r\n"
}

// Error implements error.
func (e *HandshakeError) Error() string {
	return "ws: handshake rejected: " + strconv.Itoa(e.Status) + " " + StatusText(e.Status) + ": " + e.Message
}

// RetryAfter returns the delay of the Retry-After header line in e.Header
// (delta-seconds; an HTTP-date is not understood), or 0 when there is none.
// A server sets it on the 503 and 429 it answers; a client that parsed the
// response (ParseHandshakeResponse) finds it here.
func (e *HandshakeError) RetryAfter() time.Duration {
	for h := e.Header; h != ""; {
		var line string
		line, h, _ = strings.Cut(h, "\r\n")
		name, value, ok := strings.Cut(line, ":")
		if !ok || !equalFold(name, "Retry-After") {
			continue
		}
		secs, err := strconv.ParseUint(trimOWS(value), 10, 31)
		if err != nil {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	return 0
}

func badRequest(msg string) *HandshakeError {
	return &HandshakeError{Status: 400, Message: msg}
}

// headerEnd returns the length of the header block in buf up to and
// including the empty line that ends it, or -1 if it is incomplete. Lines
// end in CRLF; a bare LF is tolerated (RFC 9112 section 2.2).
func headerEnd(buf []byte) int {
	end := -1
	if i := bytes.Index(buf, []byte("\n\r\n")); i >= 0 {
		end = i + 3
	}
	if i := bytes.Index(buf, []byte("\n\n")); i >= 0 && (end < 0 || i+2 < end) {
		end = i + 2
	}
	return end
}

// nextLine splits off the first line of s, without its line ending. A CR
// anywhere but before the LF makes ok false.
func nextLine(s string) (line, rest string, ok bool) {
	i := strings.IndexByte(s, '\n')
	if i < 0 {
		return s, "", false
	}
	line, rest = s[:i], s[i+1:]
	line = strings.TrimSuffix(line, "\r")
	return line, rest, strings.IndexByte(line, '\r') < 0
}

// ParseUpgrade parses and validates one HTTP/1.1 WebSocket upgrade request
// at the start of buf and returns the number of bytes it spans.
//
// It returns ErrNeedMore while the header block is incomplete and buf holds
// at most maxHeader bytes (maxHeader <= 0 means DefaultMaxHeader); beyond
// that, or for a longer complete block, a *HandshakeError with status 431.
// Every other rejection is a *HandshakeError too:
//   - malformed request line or header syntax, HTTP/1.0, a missing Host,
//     a request body, a malformed upgrade or an invalid Sec-WebSocket-Key: 400;
//   - a method other than GET: 405 with "Allow: GET";
//   - no WebSocket upgrade requested (a plain HTTP request, or an upgrade to
//     another protocol): 426 with "Upgrade: websocket";
//   - Sec-WebSocket-Version missing or not 13: 426 with
//     "Sec-WebSocket-Version: 13".
//
// ParseUpgrade never modifies buf. It allocates one string for the header
// block (plus Protocols when present).
func ParseUpgrade(buf []byte, maxHeader int) (h Handshake, n int, err error) {
	if maxHeader <= 0 {
		maxHeader = DefaultMaxHeader
	}
	end := headerEnd(buf)
	if end < 0 {
		if len(buf) > maxHeader {
			return h, 0, &HandshakeError{Status: 431, Message: "request header too large"}
		}
		return h, 0, ErrNeedMore
	}
	if end > maxHeader {
		return h, 0, &HandshakeError{Status: 431, Message: "request header too large"}
	}
	s, err := parseRequestLine(string(buf[:end]), &h)
	if err != nil {
		return h, 0, err
	}
	var seen upgradeHeaders
	for {
		line, rest, ok := nextLine(s)
		if !ok {
			return h, 0, badRequest("malformed header line")
		}
		if line == "" {
			break
		}
		s = rest
		if err := seen.add(line, &h); err != nil {
			return h, 0, err
		}
	}
	if err := seen.check(&h); err != nil {
		return h, 0, err
	}
	return h, end, nil
}

// parseRequestLine parses the request line at the start of s (method SP
// request-target SP HTTP-version) into h's path and query, and returns
// the header lines that follow.
func parseRequestLine(s string, h *Handshake) (string, error) {
	line, s, ok := nextLine(s)
	if !ok {
		return s, badRequest("malformed request line")
	}
	method, rest, ok1 := strings.Cut(line, " ")
	target, version, ok2 := strings.Cut(rest, " ")
	if !ok1 || !ok2 || !isToken(method) || target == "" || !isVisible(target) || strings.IndexByte(version, ' ') >= 0 {
		return s, badRequest("malformed request line")
	}
	if method != "GET" {
		return s, &HandshakeError{Status: 405, Message: "method not allowed", Header: "Allow: GET\r\n"}
	}
	major, minor, ok := parseHTTPVersion(version)
	if !ok {
		return s, badRequest("malformed HTTP version")
	}
	if major < 1 || major == 1 && minor < 1 {
		return s, badRequest("HTTP/1.1 or later required")
	}
	if target[0] != '/' {
		return s, badRequest("request target must be a path")
	}
	h.Path, h.RawQuery, _ = strings.Cut(target, "?")
	return s, nil
}

// upgradeHeaders is what ParseUpgrade has seen of a request's headers.
type upgradeHeaders struct {
	hasHost, hasKey, hasVersion, hasUpgrade bool
	upgradeWS, connUpgrade                  bool
	hasOrigin, hasRealIP, hasUA, hasAuth    bool
	hasLength                               bool
	wsVersion                               string
}

// add reads one header line into h, refusing malformed lines, a request
// body and repeats of the headers that must appear once.
func (u *upgradeHeaders) add(line string, h *Handshake) error {
	if line[0] == ' ' || line[0] == '\t' {
		return badRequest("obsolete header line folding")
	}
	name, value, found := strings.Cut(line, ":")
	if !found || !isToken(name) {
		return badRequest("malformed header line")
	}
	value = trimOWS(value)
	if !isFieldValue(value) {
		return badRequest("invalid character in header " + name)
	}
	dup := false
	switch {
	case equalFold(name, "Host"):
		dup, u.hasHost = u.hasHost, true
		h.Host = value
	case equalFold(name, "Upgrade"):
		u.hasUpgrade = true
		u.upgradeWS = u.upgradeWS || hasToken(value, "websocket")
	case equalFold(name, "Connection"):
		u.connUpgrade = u.connUpgrade || hasToken(value, "upgrade")
	case equalFold(name, "Sec-WebSocket-Key"):
		dup, u.hasKey = u.hasKey, true
		h.Key = value
	case equalFold(name, "Sec-WebSocket-Version"):
		dup, u.hasVersion = u.hasVersion, true
		u.wsVersion = value
	case equalFold(name, "Sec-WebSocket-Protocol"):
		for tok := range strings.SplitSeq(value, ",") {
			if tok = trimOWS(tok); tok != "" {
				h.Protocols = append(h.Protocols, tok)
			}
		}
	case equalFold(name, "Sec-WebSocket-Extensions"):
		h.Extensions = joinList(h.Extensions, value)
	case equalFold(name, "Origin"):
		dup, u.hasOrigin = u.hasOrigin, true
		h.Origin = value
	case equalFold(name, "X-Forwarded-For"):
		h.XForwardedFor = joinList(h.XForwardedFor, value)
	case equalFold(name, "X-Real-IP"):
		dup, u.hasRealIP = u.hasRealIP, true
		h.XRealIP = value
	case equalFold(name, "User-Agent"):
		dup, u.hasUA = u.hasUA, true
		h.UserAgent = value
	case equalFold(name, "Authorization"):
		dup, u.hasAuth = u.hasAuth, true
		h.Authorization = value
	case equalFold(name, "Content-Length"):
		dup, u.hasLength = u.hasLength, true
		if value == "" || strings.Trim(value, "0123456789") != "" {
			return badRequest("malformed Content-Length")
		}
		if strings.Trim(value, "0") != "" {
			return badRequest("request body not allowed")
		}
	case equalFold(name, "Transfer-Encoding"):
		return badRequest("request body not allowed")
	}
	if dup {
		return badRequest("repeated " + name + " header")
	}
	return nil
}

// check refuses a request whose headers do not ask for a WebSocket
// upgrade this server accepts.
func (u *upgradeHeaders) check(h *Handshake) error {
	switch {
	case !u.hasHost || h.Host == "":
		return badRequest("missing Host header")
	case !u.upgradeWS && (u.hasUpgrade || !u.connUpgrade):
		return &HandshakeError{Status: 426, Message: "WebSocket upgrade required", Header: "Upgrade: websocket\r\n"}
	case !u.upgradeWS:
		return badRequest("Connection: upgrade without Upgrade: websocket")
	case !u.connUpgrade:
		return badRequest("Upgrade: websocket without Connection: upgrade")
	case u.wsVersion != "13":
		return &HandshakeError{Status: 426, Message: "unsupported WebSocket version", Header: "Sec-WebSocket-Version: 13\r\n"}
	case !validKey(h.Key):
		return badRequest("invalid Sec-WebSocket-Key")
	}
	return nil
}

// validKey reports whether key is the base64 encoding of 16 bytes.
func validKey(key string) bool {
	if len(key) != 24 {
		return false
	}
	var raw [18]byte
	n, err := base64.StdEncoding.Decode(raw[:], []byte(key))
	return err == nil && n == 16
}

// parseHTTPVersion parses "HTTP/d.d".
func parseHTTPVersion(v string) (major, minor int, ok bool) {
	if len(v) != 8 || v[:5] != "HTTP/" || v[6] != '.' ||
		v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

// joinList appends a repeated list header to the value seen so far.
func joinList(prev, value string) string {
	if prev == "" {
		return value
	}
	return prev + ", " + value
}

// hasToken reports whether the comma-separated list contains tok,
// compared case-insensitively.
func hasToken(list, tok string) bool {
	for list != "" {
		var item string
		item, list, _ = strings.Cut(list, ",")
		if equalFold(trimOWS(item), tok) {
			return true
		}
	}
	return false
}

// equalFold compares ASCII strings case-insensitively.
func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if x == y {
			continue
		}
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func trimOWS(s string) string {
	for s != "" && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for s != "" && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isToken reports whether s is a non-empty RFC 9110 token.
func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// isVisible reports whether s holds only visible ASCII (a request target).
func isVisible(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return true
}

// isFieldValue reports whether s holds no control characters other than HT.
func isFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// AcceptKey returns the Sec-WebSocket-Accept value for a client key.
func AcceptKey(key string) string {
	var b [28]byte
	return string(appendAcceptKey(b[:0], key))
}

func appendAcceptKey(dst []byte, key string) []byte {
	var in [64]byte
	p := append(in[:0], key...)
	p = append(p, acceptGUID...)
	sum := sha1.Sum(p)
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}

// SelectProtocol returns the subprotocol the server answers with
// (Sec-WebSocket-Protocol) for a client that offered offered: the first
// offered token that is in supported, compared exactly (RFC 6455 section
// 4.2.2 step 5.4), or "" when none is. With "" the server must send no
// Sec-WebSocket-Protocol header; a client that offered subprotocols then
// fails the connection itself (RFC 6455 section 4.1, browsers and most
// libraries do), so the offer and the answer must match.
func SelectProtocol(offered []string, supported ...string) string {
	for _, p := range offered {
		for _, s := range supported {
			if p == s {
				return p
			}
		}
	}
	return ""
}

// AppendAccept appends the server's "101 Switching Protocols" response for
// the client key. extraHeaders holds additional header lines, each ending
// in "\r\n" (e.g. "Sec-WebSocket-Protocol: chat\r\n"), or "".
func AppendAccept(dst []byte, key string, extraHeaders string) []byte {
	dst = append(dst, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	dst = appendAcceptKey(dst, key)
	dst = append(dst, "\r\n"...)
	dst = append(dst, extraHeaders...)
	return append(dst, "\r\n"...)
}

// AppendHTTPError appends a complete HTTP/1.1 error response with a
// text/plain body holding message and "Connection: close"; the server closes
// the connection after writing it. extraHeaders holds additional header
// lines, each ending in "\r\n", or "".
func AppendHTTPError(dst []byte, status int, message string, extraHeaders string) []byte {
	if status < 100 || status > 999 {
		status = 500
	}
	dst = append(dst, "HTTP/1.1 "...)
	dst = strconv.AppendInt(dst, int64(status), 10)
	dst = append(dst, ' ')
	dst = append(dst, StatusText(status)...)
	dst = append(dst, "\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: "...)
	dst = strconv.AppendInt(dst, int64(len(message)+1), 10)
	dst = append(dst, "\r\n"...)
	dst = append(dst, extraHeaders...)
	dst = append(dst, "\r\n"...)
	dst = append(dst, message...)
	return append(dst, '\n')
}

// StatusText returns the reason phrase for the HTTP status codes a
// WebSocket endpoint answers with, or "Error" for others.
func StatusText(status int) string {
	switch status {
	case 101:
		return "Switching Protocols"
	case 200:
		return "OK"
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 405:
		return "Method Not Allowed"
	case 408:
		return "Request Timeout"
	case 426:
		return "Upgrade Required"
	case 429:
		return "Too Many Requests"
	case 431:
		return "Request Header Fields Too Large"
	case 500:
		return "Internal Server Error"
	case 503:
		return "Service Unavailable"
	}
	return "Error"
}
