package bench

import (
	"bytes"
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// choppyGateway upgrades one connection, then writes joined, history, a
// ping, seqs 1..n (seq 3 with a text longer than an event loop's read
// buffer) in chunks of chunk bytes, and reports whether the client
// answered the ping with a pong carrying its payload.
func choppyGateway(t *testing.T, n uint64, chunk int) (string, <-chan bool) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	pong := make(chan bool, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		buf := make([]byte, 4096)
		m := 0
		var h ws.Handshake
		for {
			r, err := c.Read(buf[m:])
			if err != nil {
				return
			}
			m += r
			h, _, err = ws.ParseUpgrade(buf[:m], 4096)
			if errors.Is(err, ws.ErrNeedMore) {
				continue
			}
			if err != nil {
				return
			}
			break
		}
		out := ws.AppendAccept(nil, h.Key, "")
		out = ws.AppendFrame(out, ws.OpText, protocol.Encode(protocol.Joined{Op: protocol.OpJoined, Room: "r", Seq: 0, Online: 1}))
		out = ws.AppendFrame(out, ws.OpText, protocol.EncodeHistory("r", nil, true))
		out = ws.AppendFrame(out, ws.OpPing, []byte("hb"))
		var bigFrom, bigTo int
		for s := uint64(1); s <= n; s++ {
			if s == 3 {
				bigFrom = len(out)
			}
			text := benchText(time.Now().UnixNano(), s)
			if s == 3 {
				text += strings.Repeat("x", loopBuf+1000)
			}
			msg := protocol.Message{Seq: s, UID: "u", Name: "n", Text: text}
			out = ws.AppendFrame(out, ws.OpText, protocol.EncodeBatch("r", []protocol.Message{msg}))
			if s == 3 {
				bigTo = len(out)
			}
		}
		for pos := 0; pos < len(out); {
			k := chunk
			if pos >= bigFrom && pos < bigTo-chunk {
				k = min(bigTo-chunk-pos, loopBuf/2+7) // the long frame in a few reads
			}
			k = min(k, len(out)-pos)
			if _, err := c.Write(out[pos : pos+k]); err != nil {
				return
			}
			pos += k
			time.Sleep(100 * time.Microsecond)
		}
		// The client's pong: a masked frame with "hb".
		_ = c.SetReadDeadline(time.Now().Add(3 * time.Second))
		got := make([]byte, 0, 64)
		for len(got) < 8 {
			r, err := c.Read(buf)
			if err != nil {
				break
			}
			got = append(got, buf[:r]...)
		}
		ok := len(got) >= 8 && ws.OpCode(got[0]&0x0f) == ws.OpPong && got[1] == 0x80|2
		if ok {
			p := []byte{got[6] ^ got[2], got[7] ^ got[3]}
			ok = bytes.Equal(p, []byte("hb"))
		}
		pong <- ok
		_ = c.SetReadDeadline(time.Time{})
		for {
			if _, err := c.Read(buf); err != nil {
				return
			}
		}
	}()
	return ln.Addr().String(), pong
}

// TestViewerSplitFramesAndPing feeds frames split over many reads (and one
// longer than an event loop's buffer) and a ping to both implementations.
func TestViewerSplitFramesAndPing(t *testing.T) {
	for _, impl := range []string{ImplEpoll, ImplGoroutine} {
		t.Run(impl, func(t *testing.T) {
			const n = 8
			addr, pong := choppyGateway(t, n, 3)
			cmds := make(chan Command, 1)
			var final Report
			done := make(chan error, 1)
			go func() {
				done <- RunWorker(context.Background(), WorkerSpec{Gateways: []string{addr}, Viewers: []RoomCount{{Room: "r", Count: 1}},
					Tick: 50 * time.Millisecond, ViewerImpl: impl}, cmds, func(r Report) {
					if r.Type == "final" {
						final = r
					}
				})
			}()
			select {
			case ok := <-pong:
				if !ok {
					t.Fatal("no pong with the ping's payload")
				}
			case <-time.After(5 * time.Second):
				t.Fatal("server did not finish")
			}
			cmds <- Command{Cmd: "finish", Final: map[string]uint64{"r": n}, Grace: 3 * time.Second}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
			if final.Deliveries != n || final.Lost != 0 || final.Dups != 0 || final.Frames != n+3 {
				t.Fatalf("deliveries %d lost %d dups %d frames %d, want %d 0 0 %d", final.Deliveries, final.Lost, final.Dups, final.Frames, n, n+3)
			}
		})
	}
}
