package ws

import (
	"bytes"
	"errors"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
)

const testKey = "dGhlIHNhbXBsZSBub25jZQ=="

// upgradeReq builds a request from a request line and header lines.
func upgradeReq(requestLine string, headers ...string) []byte {
	return []byte(requestLine + "\r\n" + strings.Join(headers, "\r\n") + "\r\n\r\n")
}

var goodHeaders = []string{
	"Host: example.com",
	"Upgrade: websocket",
	"Connection: Upgrade",
	"Sec-WebSocket-Key: " + testKey,
	"Sec-WebSocket-Version: 13",
}

// with returns goodHeaders with the named headers removed and extra added.
func with(remove []string, extra ...string) []string {
	var out []string
	for _, h := range goodHeaders {
		name, _, _ := strings.Cut(h, ":")
		drop := false
		for _, r := range remove {
			drop = drop || strings.EqualFold(name, r)
		}
		if !drop {
			out = append(out, h)
		}
	}
	return append(out, extra...)
}

func TestParseUpgradeAccepts(t *testing.T) {
	tests := []struct {
		name string
		req  []byte
		want Handshake
	}{
		{
			name: "minimal",
			req:  upgradeReq("GET /ws HTTP/1.1", goodHeaders...),
			want: Handshake{Path: "/ws", Host: "example.com", Key: testKey},
		},
		{
			name: "all fields",
			req: upgradeReq("GET /ws?room=r1&token=abc HTTP/1.1", with(nil,
				"Origin: https://live.example", "Sec-WebSocket-Protocol: danmaku.v1 , json", "Sec-WebSocket-Protocol: x",
				"Sec-WebSocket-Extensions: permessage-deflate", "Sec-WebSocket-Extensions: x-foo",
				"X-Forwarded-For: 1.2.3.4", "X-Forwarded-For: 10.0.0.1", "X-Real-IP: 1.2.3.4",
				"User-Agent: bench/1.0", "Authorization: Bearer a.b.c", "Content-Length: 0")...),
			want: Handshake{Path: "/ws", RawQuery: "room=r1&token=abc", Host: "example.com", Key: testKey,
				Origin: "https://live.example", Protocols: []string{"danmaku.v1", "json", "x"},
				Extensions: "permessage-deflate, x-foo", XForwardedFor: "1.2.3.4, 10.0.0.1", XRealIP: "1.2.3.4",
				UserAgent: "bench/1.0", Authorization: "Bearer a.b.c"},
		},
		{
			name: "case-insensitive names and token lists",
			req: upgradeReq("GET / HTTP/1.1", "hOsT: h", "upgrade: WebSocket", "CONNECTION: keep-alive, Upgrade",
				"sec-websocket-key:"+testKey, "sec-websocket-version:   13\t"),
			want: Handshake{Path: "/", Host: "h", Key: testKey},
		},
		{
			name: "Connection split over two headers",
			req:  upgradeReq("GET / HTTP/1.1", with([]string{"Connection"}, "Connection: keep-alive", "Connection: upgrade")...),
			want: Handshake{Path: "/", Host: "example.com", Key: testKey},
		},
		{
			name: "bare LF line ends",
			req:  []byte("GET /a HTTP/1.1\n" + strings.Join(goodHeaders, "\n") + "\n\n"),
			want: Handshake{Path: "/a", Host: "example.com", Key: testKey},
		},
		{
			name: "HTTP/1.2",
			req:  upgradeReq("GET / HTTP/1.2", goodHeaders...),
			want: Handshake{Path: "/", Host: "example.com", Key: testKey},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// Frames may already follow the request in the buffer.
			buf := append(bytes.Clone(tc.req), cf(OpText, "early")...)
			h, n, err := ParseUpgrade(buf, 0)
			if err != nil {
				t.Fatalf("ParseUpgrade: %v", err)
			}
			if n != len(tc.req) {
				t.Errorf("consumed %d, want %d", n, len(tc.req))
			}
			if !reflect.DeepEqual(h, tc.want) {
				t.Errorf("got\n %+v\nwant\n %+v", h, tc.want)
			}
			// Every proper prefix of the header block is incomplete.
			for i := range len(tc.req) {
				if _, n, err := ParseUpgrade(tc.req[:i], 0); err != ErrNeedMore || n != 0 {
					t.Fatalf("prefix of %d bytes: n %d err %v, want ErrNeedMore", i, n, err)
				}
			}
		})
	}
}

func TestParseUpgradeRejects(t *testing.T) {
	tests := []struct {
		name   string
		req    []byte
		status int
		header string
	}{
		{"POST", upgradeReq("POST /ws HTTP/1.1", goodHeaders...), 405, "Allow: GET\r\n"},
		{"lowercase get", upgradeReq("get /ws HTTP/1.1", goodHeaders...), 405, "Allow: GET\r\n"},
		{"HTTP/1.0", upgradeReq("GET /ws HTTP/1.0", goodHeaders...), 400, ""},
		{"HTTP/0.9 style", upgradeReq("GET /ws", goodHeaders...), 400, ""},
		{"bad version", upgradeReq("GET /ws HTTP/x.y", goodHeaders...), 400, ""},
		{"extra space", upgradeReq("GET  /ws HTTP/1.1", goodHeaders...), 400, ""},
		{"trailing junk", upgradeReq("GET /ws HTTP/1.1 x", goodHeaders...), 400, ""},
		{"absolute target", upgradeReq("GET http://h/ws HTTP/1.1", goodHeaders...), 400, ""},
		{"control char in target", upgradeReq("GET /w\x01s HTTP/1.1", goodHeaders...), 400, ""},
		{"empty request line", []byte("\r\n\r\n"), 400, ""},
		{"header without colon", upgradeReq("GET / HTTP/1.1", with(nil, "Bogus")...), 400, ""},
		{"space before colon", upgradeReq("GET / HTTP/1.1", with(nil, "X-A : b")...), 400, ""},
		{"folded header", upgradeReq("GET / HTTP/1.1", with(nil, "X-A: b", " c")...), 400, ""},
		{"control char in value", upgradeReq("GET / HTTP/1.1", with(nil, "X-A: b\x00")...), 400, ""},
		{"bare CR in line", upgradeReq("GET / HTTP/1.1", with(nil, "X-A: b\rc")...), 400, ""},
		{"missing Host", upgradeReq("GET / HTTP/1.1", with([]string{"Host"})...), 400, ""},
		{"empty Host", upgradeReq("GET / HTTP/1.1", with([]string{"Host"}, "Host: ")...), 400, ""},
		{"two Hosts", upgradeReq("GET / HTTP/1.1", with(nil, "Host: other")...), 400, ""},
		{"two keys", upgradeReq("GET / HTTP/1.1", with(nil, "Sec-WebSocket-Key: "+testKey)...), 400, ""},
		{"two Authorization", upgradeReq("GET / HTTP/1.1", with(nil, "Authorization: a", "Authorization: b")...), 400, ""},
		{"Content-Length body", upgradeReq("GET / HTTP/1.1", with(nil, "Content-Length: 5")...), 400, ""},
		{"bad Content-Length", upgradeReq("GET / HTTP/1.1", with(nil, "Content-Length: -1")...), 400, ""},
		{"Transfer-Encoding", upgradeReq("GET / HTTP/1.1", with(nil, "Transfer-Encoding: chunked")...), 400, ""},
		{"plain HTTP request", upgradeReq("GET / HTTP/1.1", "Host: h", "Accept: */*"), 426, "Upgrade: websocket\r\n"},
		{"upgrade to another protocol", upgradeReq("GET / HTTP/1.1", with([]string{"Upgrade"}, "Upgrade: h2c")...), 426, "Upgrade: websocket\r\n"},
		{"Connection upgrade without Upgrade", upgradeReq("GET / HTTP/1.1", with([]string{"Upgrade"})...), 400, ""},
		{"Upgrade without Connection upgrade", upgradeReq("GET / HTTP/1.1", with([]string{"Connection"}, "Connection: keep-alive")...), 400, ""},
		{"Upgrade without Connection", upgradeReq("GET / HTTP/1.1", with([]string{"Connection"})...), 400, ""},
		{"missing version", upgradeReq("GET / HTTP/1.1", with([]string{"Sec-WebSocket-Version"})...), 426, "Sec-WebSocket-Version: 13\r\n"},
		{"version 8", upgradeReq("GET / HTTP/1.1", with([]string{"Sec-WebSocket-Version"}, "Sec-WebSocket-Version: 8")...), 426, "Sec-WebSocket-Version: 13\r\n"},
		{"missing key", upgradeReq("GET / HTTP/1.1", with([]string{"Sec-WebSocket-Key"})...), 400, ""},
		{"short key", upgradeReq("GET / HTTP/1.1", with([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: c2hvcnQ=")...), 400, ""},
		{"key not base64", upgradeReq("GET / HTTP/1.1", with([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: !!!!!!!!!!!!!!!!!!!!!!==")...), 400, ""},
		{"key of 17 bytes", upgradeReq("GET / HTTP/1.1", with([]string{"Sec-WebSocket-Key"}, "Sec-WebSocket-Key: AAAAAAAAAAAAAAAAAAAAAAA=")...), 400, ""},
		{"header block too large", upgradeReq("GET / HTTP/1.1", with(nil, "X-Pad: "+strings.Repeat("p", DefaultMaxHeader))...), 431, ""},
		{"incomplete block too large", []byte("GET / HTTP/1.1\r\nX-Pad: " + strings.Repeat("p", DefaultMaxHeader)), 431, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, n, err := ParseUpgrade(tc.req, 0)
			var he *HandshakeError
			if !errors.As(err, &he) {
				t.Fatalf("err = %v, want *HandshakeError", err)
			}
			if n != 0 || he.Status != tc.status || he.Header != tc.header {
				t.Errorf("n %d, status %d, header %q; want status %d header %q (%s)", n, he.Status, he.Header, tc.status, tc.header, he.Message)
			}
			if he.Message == "" {
				t.Error("empty message")
			}
		})
	}
}

func TestParseUpgradeMaxHeader(t *testing.T) {
	req := upgradeReq("GET / HTTP/1.1", goodHeaders...)
	if _, _, err := ParseUpgrade(req, len(req)); err != nil {
		t.Errorf("request of exactly maxHeader bytes: %v", err)
	}
	var he *HandshakeError
	if _, _, err := ParseUpgrade(req, len(req)-1); !errors.As(err, &he) || he.Status != 431 {
		t.Errorf("request over maxHeader: %v, want 431", err)
	}
	if _, _, err := ParseUpgrade(req[:20], 20); err != ErrNeedMore {
		t.Errorf("incomplete request within maxHeader: %v, want ErrNeedMore", err)
	}
	if _, _, err := ParseUpgrade(req[:21], 20); !errors.As(err, &he) || he.Status != 431 {
		t.Errorf("incomplete request over maxHeader: %v, want 431", err)
	}
}

func TestParseUpgradeAllocs(t *testing.T) {
	req := upgradeReq("GET /ws?room=r1 HTTP/1.1", with(nil, "Origin: https://a", "User-Agent: x", "Authorization: Bearer t")...)
	allocs := testing.AllocsPerRun(100, func() {
		if _, _, err := ParseUpgrade(req, 0); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 1 {
		t.Errorf("ParseUpgrade allocates %.0f times, want 1 (the header block string)", allocs)
	}
}

func TestAppendHTTPError(t *testing.T) {
	got := string(AppendHTTPError(nil, 426, "WebSocket upgrade required", "Sec-WebSocket-Version: 13\r\n"))
	want := "HTTP/1.1 426 Upgrade Required\r\nConnection: close\r\nContent-Type: text/plain; charset=utf-8\r\n" +
		"Content-Length: 27\r\nSec-WebSocket-Version: 13\r\n\r\nWebSocket upgrade required\n"
	if got != want {
		t.Fatalf("AppendHTTPError =\n%q\nwant\n%q", got, want)
	}
	head, body, _ := strings.Cut(got, "\r\n\r\n")
	if !strings.Contains(head, "Content-Length: "+strconv.Itoa(len(body))+"\r\n") {
		t.Error("Content-Length does not match the body")
	}
	if got := string(AppendHTTPError(nil, 7, "", "")); !strings.HasPrefix(got, "HTTP/1.1 500 Internal Server Error\r\n") {
		t.Errorf("invalid status not mapped to 500: %q", got)
	}
}

func TestClientServerHandshake(t *testing.T) {
	key := NewKey()
	if !validKey(key) {
		t.Fatalf("NewKey returned invalid key %q", key)
	}
	req := AppendClientHandshake(nil, "gw.example:8090", "/ws?room=r1", key, "Authorization: Bearer t\r\n")
	h, n, err := ParseUpgrade(req, 0)
	if err != nil || n != len(req) {
		t.Fatalf("server rejected client handshake: n %d err %v\n%s", n, err, req)
	}
	if h.Path != "/ws" || h.RawQuery != "room=r1" || h.Host != "gw.example:8090" || h.Key != key || h.Authorization != "Bearer t" {
		t.Errorf("parsed %+v", h)
	}
	resp := AppendAccept(nil, h.Key, "")
	withFrame := append(bytes.Clone(resp), AppendFrame(nil, OpText, []byte("hi"))...)
	for i := range len(resp) {
		if n, _, err := ParseHandshakeResponse(withFrame[:i], key); err != ErrNeedMore || n != 0 {
			t.Fatalf("prefix %d: n %d err %v, want ErrNeedMore", i, n, err)
		}
	}
	n, status, err := ParseHandshakeResponse(withFrame, key)
	if err != nil || status != 101 || n != len(resp) {
		t.Fatalf("ParseHandshakeResponse = %d, %d, %v", n, status, err)
	}
}

func TestParseHandshakeResponseRejects(t *testing.T) {
	good := string(AppendAccept(nil, testKey, ""))
	tests := []struct {
		name   string
		resp   string
		status int
		typed  bool          // *HandshakeError rather than ErrBadHandshake
		retry  time.Duration // its RetryAfter
	}{
		{"wrong accept", strings.Replace(good, "s3pPLMBi", "AAAAAAAA", 1), 101, false, 0},
		{"missing upgrade", strings.Replace(good, "Upgrade: websocket\r\n", "", 1), 101, false, 0},
		{"missing connection", strings.Replace(good, "Connection: Upgrade\r\n", "", 1), 101, false, 0},
		{"malformed status line", "HTTP/1.1 abc\r\n\r\n", 0, false, 0},
		{"not HTTP", "SSH-2.0-OpenSSH\r\n\r\n", 0, false, 0},
		{"forbidden", string(AppendHTTPError(nil, 403, "banned", "")), 403, true, 0},
		{"version required", string(AppendHTTPError(nil, 426, "v", "Sec-WebSocket-Version: 13\r\n")), 426, true, 0},
		{"at the cap", "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n", 503, true, time.Second},
		{"per-IP cap", string(AppendHTTPError(nil, 429, "too many", "retry-after:  5 \r\n")), 429, true, 5 * time.Second},
		{"retry at a date", string(AppendHTTPError(nil, 503, "d", "Retry-After: Fri, 31 Dec 1999 23:59:59 GMT\r\n")), 503, true, 0},
		{"negative retry", string(AppendHTTPError(nil, 503, "d", "Retry-After: -1\r\n")), 503, true, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, status, err := ParseHandshakeResponse([]byte(tc.resp), testKey)
			if status != tc.status {
				t.Errorf("status %d, want %d", status, tc.status)
			}
			var he *HandshakeError
			if tc.typed {
				if !errors.As(err, &he) || he.Status != tc.status {
					t.Fatalf("err = %v, want *HandshakeError %d", err, tc.status)
				}
				if got := he.RetryAfter(); got != tc.retry {
					t.Errorf("RetryAfter = %v, want %v", got, tc.retry)
				}
			} else if !errors.Is(err, ErrBadHandshake) {
				t.Errorf("err = %v, want ErrBadHandshake", err)
			}
		})
	}
}

func TestSelectProtocol(t *testing.T) {
	for _, tc := range []struct {
		offered   []string
		supported []string
		want      string
	}{
		{nil, []string{"danmaku.v1"}, ""},
		{[]string{"danmaku.v1"}, []string{"danmaku.v1"}, "danmaku.v1"},
		{[]string{"mqtt", "danmaku.v1"}, []string{"danmaku.v1"}, "danmaku.v1"},
		{[]string{"a", "b"}, []string{"b", "a"}, "a"}, // the client's order decides
		{[]string{"mqtt", "graphql-ws"}, []string{"danmaku.v1"}, ""},
		{[]string{"Danmaku.V1"}, []string{"danmaku.v1"}, ""}, // tokens compare exactly
		{[]string{"danmaku.v1"}, nil, ""},
	} {
		if got := SelectProtocol(tc.offered, tc.supported...); got != tc.want {
			t.Errorf("SelectProtocol(%q, %q) = %q, want %q", tc.offered, tc.supported, got, tc.want)
		}
	}
}
