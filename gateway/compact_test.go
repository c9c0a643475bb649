package gateway

import (
	"bytes"
	"context"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// compactView reads c's batches until seq last is covered and returns the
// messages shown, the seqs covered by marks and how many batch frames
// came in the compact form.
func compactView(t *testing.T, c *wstest.Conn, last uint64) (shown []protocol.Message, covered uint64, compact int) {
	t.Helper()
	var infl ws.Inflater
	for covered < last {
		m, err := c.Next(3 * time.Second)
		if err != nil {
			t.Fatalf("covered %d of %d: %v", covered, last, err)
		}
		if m.Op != ws.OpText {
			continue
		}
		p := m.Payload
		if m.Compressed {
			if p, err = infl.Inflate(p, 1<<20, true); err != nil {
				t.Fatal(err)
			}
		}
		f, err := protocol.DecodeServer(p)
		if err != nil {
			t.Fatalf("%s: %v", p, err)
		}
		if f.Op != protocol.OpBatch {
			continue
		}
		if bytes.Contains(p, []byte(`"m":[`)) {
			compact++
		}
		from, to := covers(f)
		if from != covered+1 {
			t.Fatalf("batch %d..%d after %d", from, to, covered)
		}
		covered = to
		shown = append(shown, f.Msgs...)
	}
	return shown, covered, compact
}

// TestCompactViewers: viewers that chose danmaku.v1.compact (with and
// without permessage-deflate) get the same messages and marks as plain
// viewers of the room, in compact batches, and the plain viewers (no
// subprotocol, or danmaku.v1) never see one — also for merged batches and
// a shed room's thinned ones.
func TestCompactViewers(t *testing.T) {
	gw := startGW(t, func(c *Config) { c.manualShed = true })
	const deflate = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
	const offer = "Sec-WebSocket-Protocol: danmaku.v1.compact, danmaku.v1\r\n"
	viewers := []struct {
		name, extra string
		compact     bool
	}{
		{"plain", "", false},
		{"v1", "Sec-WebSocket-Protocol: danmaku.v1\r\n", false},
		{"v1 deflate", "Sec-WebSocket-Protocol: danmaku.v1\r\n" + deflate, false},
		{"compact", offer, true},
		{"compact deflate", offer + deflate, true},
	}
	var cs []*wstest.Conn
	for _, v := range viewers {
		c := dialRaw(t, gw.addr)
		c.AcceptCompressed()
		if st := c.Upgrade("/ws?room=hot", v.extra); st != 101 {
			t.Fatal(st)
		}
		if got := strings.Contains(c.Response(), "Sec-WebSocket-Protocol: danmaku.v1.compact\r\n"); got != v.compact {
			t.Fatalf("%s: compact answered %v:\n%s", v.name, got, c.Response())
		}
		c.NextOp(protocol.OpHistory, 2*time.Second)
		cs = append(cs, c)
	}
	pub := gw.bus.Publisher(bus.StreamDispatch)
	ctx := context.Background()
	var seq uint64
	publish := func(batches, per int) {
		var recs []bus.Record
		for range batches {
			ms := mixed(seq+1, seq+uint64(per), "弹幕 233333 \"quoted\" 😀")
			for i := range ms {
				ms[i].TS = time.Now().UnixMilli() - int64(i)
				if ms[i].Seq%3 == 0 {
					ms[i].Name = "Name " + ms[i].UID
				} else {
					ms[i].Name = ms[i].UID
				}
			}
			seq += uint64(per)
			recs = append(recs, bus.Record{Key: "hot", Value: protocol.EncodeBatch("hot", ms)})
		}
		if err := pub.Publish(ctx, recs...); err != nil {
			t.Fatal(err)
		}
	}
	for range 5 {
		publish(1, 10)
	}
	publish(20, 5) // at once: merged in the loop
	forceShed(gw.s, "hot", 400)
	for range 10 {
		publish(1, 30)
		time.Sleep(2 * time.Millisecond)
	}
	waitLast(t, gw, "hot", seq)
	gw.s.shedStep(time.Now()) // covers what no batch followed
	var want []protocol.Message
	for i, c := range cs {
		shown, covered, compact := compactView(t, c, seq)
		v := viewers[i]
		t.Logf("%s: %d of %d shown, %d compact batches", v.name, len(shown), covered, compact)
		if v.compact && compact == 0 {
			t.Fatalf("%s: no compact batch", v.name)
		}
		if !v.compact && compact > 0 {
			t.Fatalf("%s: %d compact batches to a viewer that did not choose them", v.name, compact)
		}
		if i == 0 {
			want = shown
			if len(want) == int(seq) {
				t.Fatal("nothing shed: the test does not cover thinned batches")
			}
			continue
		}
		if !reflect.DeepEqual(shown, want) {
			t.Fatalf("%s saw other messages than the plain viewer (%d vs %d)", v.name, len(shown), len(want))
		}
	}
}
