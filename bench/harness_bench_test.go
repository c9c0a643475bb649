package bench

import (
	"fmt"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// benchFrames returns n batch frames of per messages each, seqs 1..n*per in
// order, as a gateway writes them to the ladder's viewers: chat-corpus
// texts behind the latency prefix, sent at sentNs; compressed on their own
// (permessage-deflate, no context takeover) when deflate is set.
func benchFrames(n, per int, deflate bool, sentNs int64) [][]byte {
	rng := rand.New(rand.NewPCG(15, uint64(per)))
	var d ws.Deflater
	frames := make([][]byte, n)
	seq := uint64(0)
	for f := range frames {
		msgs := make([]protocol.Message, per)
		for i := range msgs {
			seq++
			uid := "bench-v-" + strconv.Itoa(rng.IntN(19000))
			msgs[i] = protocol.Message{Seq: seq, UID: uid, Name: uid, Text: benchText(sentNs, seq) + " " + chatText(rng),
				TS: sentNs / 1e6}
		}
		p := protocol.EncodeBatch("ladder", msgs)
		if deflate {
			frames[f] = d.AppendFrame(nil, ws.OpText, p)
		} else {
			frames[f] = ws.AppendFrame(nil, ws.OpText, p)
		}
	}
	return frames
}

// benchLoop returns an event loop with viewers open sessions of one room
// (joined at seq 0, latency recorded on all, as the ladder does), not
// connected to anything: frames are fed to it with feedFrame. cached gives
// the loop its frame summaries; without, it decodes every frame for every
// viewer.
func benchLoop(viewers int, cached bool) (*eloop, []*econn) {
	g := &epollGroup{st: &stats{}}
	l := &eloop{g: g, epfd: -1, conns: map[int32]*econn{}, pending: map[int32]*econn{},
		buf: make([]byte, loopBuf), wbuf: make([]byte, 0, 256)}
	if cached {
		l.sums = newSummaries()
	}
	g.loops = []*eloop{l}
	conns := make([]*econn, viewers)
	for i := range conns {
		conns[i] = &econn{s: session{room: "ladder", latency: true, joined: true}, idx: int32(i), fd: -1, after: -1,
			loop: l, state: stOpen, connected: true}
	}
	return l, conns
}

// feedFrame hands frame to c as its loop's read would: copied into the
// loop's read buffer, then processed.
func feedFrame(l *eloop, c *econn, frame []byte) {
	n := copy(l.buf, frame)
	l.process(c, l.buf[:n])
}

// BenchmarkHarness is the epoll harness's CPU per frame and per delivery
// on issue 15's ladder: 19,000 viewers of one room on one loop, every
// viewer getting the same batch frames (the gateway encodes, and
// compresses, a batch once), viewers a few frames apart as their sockets'
// backlogs differ. One iteration is one frame to one viewer; the read(2)
// itself is not in it (one copy into the loop's buffer stands for it).
// uncached is the loop without frame summaries, as before them.
func BenchmarkHarness(b *testing.B) {
	const viewers, lag, pool = 19000, 8, 64
	for _, deflate := range []bool{false, true} {
		for _, per := range []int{4, 35, 250} {
			for _, cached := range []bool{false, true} {
				benchHarness(b, deflate, cached, per, viewers, lag, pool)
			}
		}
	}
}

func benchHarness(b *testing.B, deflate, cached bool, per, viewers, lag, pool int) {
	name := fmt.Sprintf("plain/msgs=%d", per)
	if deflate {
		name = fmt.Sprintf("deflate/msgs=%d", per)
	}
	if cached {
		name += "/cached"
	} else {
		name += "/uncached"
	}
	b.Run(name, func(b *testing.B) {
		frames := benchFrames(pool, per, deflate, time.Now().UnixNano())
		size := 0
		for _, f := range frames {
			size += len(f)
		}
		l, conns := benchLoop(viewers, cached)
		for v, c := range conns { // viewer v is v%lag frames behind
			c.s.tr.Start(uint64((pool-v%lag)%pool) * uint64(per))
		}
		b.ReportAllocs()
		i := 0
		for b.Loop() {
			v := i % viewers
			f := (i/viewers + pool - v%lag) % pool
			i++
			c := conns[v]
			if f == 0 {
				c.s.tr = Tracker{} // seqs start again at 1
			}
			feedFrame(l, c, frames[f])
		}
		if got, want := l.st.deliveries.Load(), int64(b.N)*int64(per); got != want {
			b.Fatalf("%d deliveries for %d frames of %d messages; want %d", got, b.N, per, want)
		}
		ns := float64(b.Elapsed().Nanoseconds()) / float64(b.N)
		b.ReportMetric(ns, "ns/frame")
		b.ReportMetric(ns/float64(per), "ns/delivery")
		b.ReportMetric(float64(size)/float64(pool)/float64(per), "B/delivery")
		b.ReportMetric(0, "ns/op")
	})
}
