package ws

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func parseOp(t *testing.T, s string) OpCode {
	t.Helper()
	for op := range OpCode(16) {
		if op.String() == s {
			return op
		}
	}
	t.Fatalf("unknown opcode %q", s)
	return 0
}

func TestGoldenFrames(t *testing.T) {
	f, err := os.Open(filepath.Join("testdata", "rfc6455_frames.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	rows := 0
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		cols := strings.Split(line, "\t")
		if len(cols) != 5 {
			t.Fatalf("malformed golden line %q", line)
		}
		kind, role, name, framesHex, expected := cols[0], cols[1], cols[2], cols[3], cols[4]
		rows++
		t.Run(name, func(t *testing.T) {
			var frames [][]byte
			for _, fh := range strings.Fields(framesHex) {
				b, err := hex.DecodeString(fh)
				if err != nil {
					t.Fatal(err)
				}
				frames = append(frames, b)
			}
			switch kind {
			case "header":
				opName, lenStr, _ := strings.Cut(expected, ":")
				length, err := strconv.Atoi(lenStr)
				if err != nil {
					t.Fatal(err)
				}
				got := AppendFrameHeader(nil, parseOp(t, opName), true, length)
				if !bytes.Equal(got, frames[0]) {
					t.Errorf("AppendFrameHeader = %x, want %x", got, frames[0])
				}
				// The header followed by a payload must parse back.
				in := append(bytes.Clone(frames[0]), make([]byte, length)...)
				out := feed(t, Reader{Client: true, MaxMessage: 1 << 20}, in, nil)
				if len(out.Msgs) != 1 || len(out.Msgs[0].Payload) != length || out.Consumed != len(in) {
					t.Errorf("parsing the header back: %+v", out)
				}
			case "read":
				var want []event
				for _, m := range strings.Fields(expected) {
					opName, ph, _ := strings.Cut(m, ":")
					if ph == "-" {
						ph = ""
					}
					p, err := hex.DecodeString(ph)
					if err != nil {
						t.Fatal(err)
					}
					want = append(want, event{parseOp(t, opName), string(p), false})
				}
				r := Reader{Client: role == "client"}
				got := feedAll(t, r, bytes.Join(frames, nil))
				if !reflect.DeepEqual(got.Msgs, want) || got.Code != 0 {
					t.Fatalf("read %+v, want %v", got, want)
				}
				if len(frames) != 1 {
					return
				}
				var enc []byte
				if r.Client {
					enc = AppendFrame(nil, want[0].Op, []byte(want[0].Payload))
				} else {
					mask := [4]byte(frames[0][2:6])
					enc = AppendClientFrame(nil, want[0].Op, []byte(want[0].Payload), mask)
				}
				if !bytes.Equal(enc, frames[0]) {
					t.Errorf("encoded %x, want %x", enc, frames[0])
				}
			default:
				t.Fatalf("unknown kind %q", kind)
			}
		})
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if rows < 10 {
		t.Fatalf("only %d golden rows", rows)
	}
}

// readHTTP reads a golden HTTP message, turning its LF line ends into CRLF.
func readHTTP(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return bytes.ReplaceAll(b, []byte("\n"), []byte("\r\n"))
}

func TestGoldenHandshake(t *testing.T) {
	req := readHTTP(t, "rfc6455_request.http")
	h, n, err := ParseUpgrade(req, 0)
	if err != nil || n != len(req) {
		t.Fatalf("ParseUpgrade: n %d of %d, err %v", n, len(req), err)
	}
	want := Handshake{Path: "/chat", Host: "server.example.com", Origin: "http://example.com",
		Key: "dGhlIHNhbXBsZSBub25jZQ==", Protocols: []string{"chat", "superchat"}}
	if !reflect.DeepEqual(h, want) {
		t.Errorf("ParseUpgrade =\n %+v\nwant\n %+v", h, want)
	}
	if got := AcceptKey(h.Key); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Errorf("AcceptKey = %q", got)
	}
	resp := readHTTP(t, "rfc6455_response.http")
	if got := AppendAccept(nil, h.Key, "Sec-WebSocket-Protocol: chat\r\n"); !bytes.Equal(got, resp) {
		t.Errorf("AppendAccept =\n%q\nwant\n%q", got, resp)
	}
	n, status, err := ParseHandshakeResponse(resp, h.Key)
	if err != nil || status != 101 || n != len(resp) {
		t.Errorf("ParseHandshakeResponse = %d, %d, %v", n, status, err)
	}
}
