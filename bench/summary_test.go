package bench

import (
	"bytes"
	"math/rand/v2"
	"reflect"
	"slices"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// roomFrames returns a recorded sequence of a room's data frames as a
// gateway sends them: batches of 1-40 messages, some thinned (from/to
// marks, messages left out), some repeating an earlier batch's seqs, one
// with its seqs out of order; about half compressed (permessage-deflate).
func roomFrames(rng *rand.Rand) [][]byte {
	var d ws.Deflater
	now := time.Now().UnixNano()
	msg := func(seq uint64) protocol.Message {
		text := benchText(now-int64(rng.IntN(1e9)), seq)
		if rng.IntN(5) == 0 {
			text = "not a bench text" // no latency sample
		}
		return protocol.Message{Seq: seq, UID: "u", Name: "n", Text: text, TS: now / 1e6}
	}
	var frames [][]byte
	var batches [][]protocol.Message
	seq := uint64(0)
	for i := range 80 {
		var msgs []protocol.Message
		var p []byte
		switch {
		case i > 3 && rng.IntN(8) == 0: // an earlier batch again
			msgs = batches[rng.IntN(len(batches))]
			p = protocol.EncodeBatch("r", msgs)
		case rng.IntN(4) == 0: // thinned: covers from..to, carries some
			from := seq + 1
			for range 1 + rng.IntN(40) {
				seq++
				if rng.IntN(3) > 0 {
					msgs = append(msgs, msg(seq))
				}
			}
			p = protocol.EncodeThinned("r", from, seq, msgs)
		default:
			for range 1 + rng.IntN(40) {
				seq++
				msgs = append(msgs, msg(seq))
			}
			if i == 10 { // seqs out of order
				msgs[0], msgs[len(msgs)-1] = msgs[len(msgs)-1], msgs[0]
			}
			p = protocol.EncodeBatch("r", msgs)
		}
		batches = append(batches, msgs)
		if rng.IntN(2) == 0 {
			frames = append(frames, d.AppendFrame(nil, ws.OpText, p))
		} else {
			frames = append(frames, ws.AppendFrame(nil, ws.OpText, p))
		}
	}
	return frames
}

// TestFrameSummariesMatchDecoding replays one recorded sequence of frames
// to many viewers through a loop decoding every frame for every viewer,
// a loop with frame summaries and one whose summary keys all collide (only
// the byte comparison tells frames apart). Viewers join fresh (a history
// frame with recent messages at or below their joined seq) or resume (a
// history frame after some batches), miss frames, get some twice. Every
// viewer's tracker and the loops' counters and latency sample counts must
// be the same in the three.
func TestFrameSummariesMatchDecoding(t *testing.T) {
	rng := rand.New(rand.NewPCG(15, 2))
	frames := roomFrames(rng)
	distinct := len(slices.CompactFunc(slices.SortedFunc(slices.Values(frames), bytes.Compare), bytes.Equal))
	const viewers = 300
	type step struct {
		frame    []byte
		resuming bool // set before the frame: a re-join awaiting history
	}
	scripts := make([][]step, viewers)
	for v := range scripts {
		s0 := uint64(rng.IntN(30))
		plain := func(p []byte) []byte { return ws.AppendFrame(nil, ws.OpText, p) }
		var hist []protocol.Message
		for q := max(s0, 5) - 4; q <= s0+3; q++ {
			hist = append(hist, protocol.Message{Seq: q, UID: "u", Name: "n", Text: benchText(time.Now().UnixNano(), q)})
		}
		sc := []step{
			{frame: plain(protocol.Encode(protocol.Joined{Op: protocol.OpJoined, Room: "r", Seq: s0, Online: 1}))},
			{frame: plain(protocol.EncodeHistory("r", hist, true))},
		}
		resumeAt := -1
		if v%3 == 0 {
			resumeAt = rng.IntN(len(frames))
		}
		for i, f := range frames {
			if i == resumeAt {
				sc = append(sc, step{resuming: true})
			}
			if i == resumeAt+5 && resumeAt >= 0 { // its history: what it missed, incomplete
				sc = append(sc, step{frame: plain(protocol.EncodeHistory("r", hist[len(hist)-2:], false))})
			}
			switch r := rng.IntN(20); {
			case r == 0: // missed
			case r == 1:
				sc = append(sc, step{frame: f}, step{frame: f})
			default:
				sc = append(sc, step{frame: f})
			}
		}
		scripts[v] = sc
	}
	fed := 0 // frames fed to one loop
	run := func(sums summaries) (*eloop, []*econn) {
		fed = 0
		l, conns := benchLoop(viewers, false)
		l.sums = sums
		// Round robin over the viewers, a few steps each, so that the
		// loop sees frames of different ages in turn.
		pos := make([]int, viewers)
		for left := viewers; left > 0; {
			left = 0
			for v, c := range conns {
				for k := 0; k < 3 && pos[v] < len(scripts[v]); k++ {
					st := scripts[v][pos[v]]
					pos[v]++
					if st.resuming {
						c.resuming = true
						continue
					}
					feedFrame(l, c, st.frame)
					fed++
					if c.state != stOpen {
						t.Fatalf("viewer %d closed", v)
					}
				}
				if pos[v] < len(scripts[v]) {
					left++
				}
			}
		}
		return l, conns
	}
	plainLoop, plainConns := run(summaries{})
	cachedLoop, cachedConns := run(newSummaries())
	collide := newSummaries()
	collide.key = func(bool, []byte) uint64 { return 42 }
	collideLoop, collideConns := run(collide)

	var sum stats
	plainLoop.st.addTo(&sum)
	if sum.deliveries.Load() == 0 || sum.dups.Load() == 0 || sum.marked.Load() == 0 || sum.resumed.Load() == 0 ||
		sum.incomplete.Load() == 0 || plainLoop.lat.Count() == 0 {
		t.Fatalf("the recorded frames do not exercise everything: deliveries %d dups %d marked %d resumed %d incomplete %d latency samples %d",
			sum.deliveries.Load(), sum.dups.Load(), sum.marked.Load(), sum.resumed.Load(), sum.incomplete.Load(), plainLoop.lat.Count())
	}
	gaps := uint64(0)
	for _, c := range plainConns {
		gaps += c.s.tr.Gaps()
	}
	if gaps == 0 {
		t.Fatal("no viewer has a gap")
	}
	for _, tc := range []struct {
		name  string
		l     *eloop
		conns []*econn
	}{{"cached", cachedLoop, cachedConns}, {"colliding keys", collideLoop, collideConns}} {
		// With all keys alike, the frames share one set: decoded again
		// and again, but never taken for one another.
		if d := tc.l.sums.decoded; d < int64(distinct) || tc.name == "cached" && d > 2*int64(distinct) {
			t.Errorf("%s: %d frames decoded into summaries for %d distinct frames, %d fed", tc.name, d, distinct, fed)
		}
		for v := range viewers {
			if a, b := norm(plainConns[v].s.tr), norm(tc.conns[v].s.tr); !reflect.DeepEqual(a, b) {
				t.Fatalf("%s: viewer %d tracker %+v; decoding each frame: %+v", tc.name, v, b, a)
			}
		}
		for _, f := range []struct {
			name string
			a, b int64
		}{
			{"deliveries", plainLoop.st.deliveries.Load(), tc.l.st.deliveries.Load()},
			{"dups", plainLoop.st.dups.Load(), tc.l.st.dups.Load()},
			{"marked", plainLoop.st.marked.Load(), tc.l.st.marked.Load()},
			{"frames", plainLoop.st.frames.Load(), tc.l.st.frames.Load()},
			{"bytes", plainLoop.st.bytes.Load(), tc.l.st.bytes.Load()},
			{"resumed", plainLoop.st.resumed.Load(), tc.l.st.resumed.Load()},
			{"incomplete", plainLoop.st.incomplete.Load(), tc.l.st.incomplete.Load()},
			{"established", plainLoop.st.established.Load(), tc.l.st.established.Load()},
			{"latency samples", int64(plainLoop.lat.Count()), int64(tc.l.lat.Count())},
		} {
			if f.a != f.b {
				t.Errorf("%s: %s %d; decoding each frame: %d", tc.name, f.name, f.b, f.a)
			}
		}
	}
}

// TestSummaryKeyCollision puts two different frames of the same length
// under one key: each viewer must get its own frame's seqs, never the
// other's.
func TestSummaryKeyCollision(t *testing.T) {
	l, conns := benchLoop(2, true)
	l.sums.key = func(bool, []byte) uint64 { return 1 }
	sent := time.Now().UnixNano()
	frame := func(seqs ...uint64) []byte {
		var m []protocol.Message
		for _, s := range seqs {
			m = append(m, protocol.Message{Seq: s, UID: "u", Name: "n", Text: benchText(sent, s)})
		}
		return ws.AppendFrame(nil, ws.OpText, protocol.EncodeBatch("r", m))
	}
	a, b := frame(1, 2, 3), frame(4, 5, 6)
	if len(a) != len(b) {
		t.Fatalf("frames of %d and %d bytes", len(a), len(b))
	}
	for range 2 {
		feedFrame(l, conns[0], a)
		feedFrame(l, conns[1], b)
	}
	if got := conns[0].s.tr; got.Last() != 3 || got.Delivered != 3 || got.Dups != 3 || got.Gaps() != 0 {
		t.Errorf("viewer of seqs 1-3 twice: last %d delivered %d dups %d gaps %d", got.Last(), got.Delivered, got.Dups, got.Gaps())
	}
	if got := conns[1].s.tr; got.Last() != 6 || got.Delivered != 3 || got.Dups != 3 || got.Gaps() != 3 {
		t.Errorf("viewer of seqs 4-6 twice: last %d delivered %d dups %d gaps %d", got.Last(), got.Delivered, got.Dups, got.Gaps())
	}
	if l.sums.decoded != 2 {
		t.Errorf("%d frames decoded; want 2 (each once)", l.sums.decoded)
	}
	set := l.sums.sums[l.sums.set(1)*sumWays:]
	if !slices.Equal(set[0].runs, []seqRun{{1, 3}}) || !slices.Equal(set[1].runs, []seqRun{{4, 3}}) {
		t.Errorf("summaries %+v, %+v", set[0].runs, set[1].runs)
	}
}
