package ws

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

// fuzzConfig maps the fuzzer's flag byte to a Reader configuration.
func fuzzConfig(flags byte) Reader {
	return Reader{
		Client:     flags&1 != 0,
		AllowRSV1:  flags&2 != 0,
		MaxMessage: int(flags>>2) * 17, // 0 means DefaultMaxMessage
	}
}

// fuzzFlags is the inverse of fuzzConfig, as close as it gets.
func fuzzFlags(r Reader) byte {
	var f byte
	if r.Client {
		f |= 1
	}
	if r.AllowRSV1 {
		f |= 2
	}
	if r.MaxMessage > 0 {
		f |= byte(min(r.MaxMessage/17+1, 63)) << 2
	}
	return f
}

// FuzzReader feeds arbitrary input to a Reader whole, in chunks whose sizes
// come from chunks, and byte by byte, and requires identical outcomes. feed
// checks that consumption never exceeds the input, that errors consume
// nothing and that unconsumed bytes are never modified.
func FuzzReader(f *testing.F) {
	for _, tc := range conformanceCases() {
		if len(tc.in) <= 4096 {
			f.Add(tc.in, []byte{1, 7, 3}, fuzzFlags(tc.r))
		}
	}
	f.Fuzz(func(t *testing.T, data, chunks []byte, flags byte) {
		if len(data) > 1<<16 {
			return
		}
		cfg := fuzzConfig(flags)
		want := feed(t, cfg, data, nil)
		if want.Consumed > len(data) {
			t.Fatalf("consumed %d of %d bytes", want.Consumed, len(data))
		}
		if len(chunks) > 0 {
			var cuts []int
			for i, at := 0, 0; ; i++ {
				at += int(chunks[i%len(chunks)])%64 + 1
				if at >= len(data) {
					break
				}
				cuts = append(cuts, at)
			}
			if got := feed(t, cfg, data, cuts); !reflect.DeepEqual(got, want) {
				t.Fatalf("chunked outcome differs:\n got  %+v\n want %+v", got, want)
			}
		}
		if len(data) <= 1024 {
			cuts := make([]int, 0, len(data))
			for i := 1; i < len(data); i++ {
				cuts = append(cuts, i)
			}
			if got := feed(t, cfg, data, cuts); !reflect.DeepEqual(got, want) {
				t.Fatalf("byte-by-byte outcome differs:\n got  %+v\n want %+v", got, want)
			}
		}
	})
}

// FuzzParseUpgrade checks that ParseUpgrade never panics, never modifies
// its input, classifies every input as a handshake, ErrNeedMore or a
// *HandshakeError with a sensible status, and that an accepted request is
// self-consistent.
func FuzzParseUpgrade(f *testing.F) {
	f.Add(upgradeReq("GET /ws?room=r1 HTTP/1.1", goodHeaders...), uint16(0))
	f.Add(upgradeReq("GET /ws HTTP/1.1", with(nil, "Origin: https://a", "Sec-WebSocket-Protocol: a, b", "X-Forwarded-For: 1.2.3.4")...), uint16(512))
	f.Add(upgradeReq("POST / HTTP/1.1", goodHeaders...), uint16(0))
	f.Add(upgradeReq("GET / HTTP/1.1", "Host: h"), uint16(0))
	f.Add([]byte("GET / HTTP/1.1\nHost: h\n\n"), uint16(20))
	f.Fuzz(func(t *testing.T, data []byte, maxHeader uint16) {
		orig := bytes.Clone(data)
		h, n, err := ParseUpgrade(data, int(maxHeader))
		if !bytes.Equal(data, orig) {
			t.Fatal("ParseUpgrade modified its input")
		}
		limit := int(maxHeader)
		if limit == 0 {
			limit = DefaultMaxHeader
		}
		var he *HandshakeError
		switch {
		case err == nil:
			if n <= 0 || n > len(data) || n > limit {
				t.Fatalf("accepted with n = %d of %d (limit %d)", n, len(data), limit)
			}
			if !validKey(h.Key) || h.Host == "" || h.Path == "" || h.Path[0] != '/' {
				t.Fatalf("accepted an invalid handshake %+v", h)
			}
			// The result depends only on the header block.
			h2, n2, err2 := ParseUpgrade(data[:n], int(maxHeader))
			if err2 != nil || n2 != n || !reflect.DeepEqual(h, h2) {
				t.Fatalf("header block alone: %+v %d %v", h2, n2, err2)
			}
			if _, _, err := ParseUpgrade(data[:n-1], int(maxHeader)); err != ErrNeedMore {
				t.Fatalf("header block minus one byte: %v, want ErrNeedMore", err)
			}
			resp := AppendAccept(nil, h.Key, "")
			if _, status, err := ParseHandshakeResponse(resp, h.Key); err != nil || status != 101 {
				t.Fatalf("own accept rejected: %d %v", status, err)
			}
		case err == ErrNeedMore:
			if n != 0 || len(data) > limit {
				t.Fatalf("ErrNeedMore with n = %d, %d bytes buffered (limit %d)", n, len(data), limit)
			}
		case errors.As(err, &he):
			if n != 0 {
				t.Fatalf("error with n = %d", n)
			}
			switch he.Status {
			case 400, 405, 426, 431:
			default:
				t.Fatalf("unexpected status %d", he.Status)
			}
			if he.Status == 431 && len(data) <= limit && headerEnd(data) <= limit {
				t.Fatalf("431 for %d bytes within limit %d", len(data), limit)
			}
			resp := AppendHTTPError(nil, he.Status, he.Message, he.Header)
			if _, status, _ := ParseHandshakeResponse(resp, "k"); status != he.Status {
				t.Fatalf("own error response parsed as status %d, want %d", status, he.Status)
			}
		default:
			t.Fatalf("unexpected error %T %v", err, err)
		}
	})
}

// FuzzParseHandshakeResponse checks the client side of the upgrade: it
// never panics or modifies its input, accepts only a complete 101 with the
// right accept key, reports a refusal as a *HandshakeError with its status
// (and a Retry-After the client can wait on: never negative), and needs more
// only while the header block is incomplete.
func FuzzParseHandshakeResponse(f *testing.F) {
	f.Add(AppendAccept(nil, testKey, ""))
	f.Add([]byte("HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\nRetry-After: 1\r\nContent-Length: 0\r\n\r\n"))
	f.Add(AppendHTTPError(nil, 429, "too many", "Retry-After: 5\r\n"))
	f.Add(AppendHTTPError(nil, 403, "banned", ""))
	f.Add([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		orig := bytes.Clone(data)
		n, status, err := ParseHandshakeResponse(data, testKey)
		if !bytes.Equal(data, orig) {
			t.Fatal("ParseHandshakeResponse modified its input")
		}
		var he *HandshakeError
		switch {
		case err == nil:
			if status != 101 || n <= 0 || n > len(data) || n > DefaultMaxHeader {
				t.Fatalf("accepted with status %d, n = %d of %d", status, n, len(data))
			}
		case err == ErrNeedMore:
			if n != 0 || len(data) > DefaultMaxHeader {
				t.Fatalf("need more with n = %d of %d", n, len(data))
			}
		case errors.As(err, &he):
			if he.Status == 101 || he.Status != status || n <= 0 || n > len(data) {
				t.Fatalf("refusal %+v with status %d, n = %d of %d", he, status, n, len(data))
			}
			if d := he.RetryAfter(); d < 0 {
				t.Fatalf("RetryAfter = %v", d)
			}
		case !errors.Is(err, ErrBadHandshake):
			t.Fatalf("err = %v, want nil, ErrNeedMore, *HandshakeError or ErrBadHandshake", err)
		}
	})
}
