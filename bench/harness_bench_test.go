package bench

import (
	"fmt"
	"math/rand/v2"
	"net"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// benchFrames makes batch frames of per messages each as a gateway writes
// them to the ladder's viewers: chat-corpus texts behind the latency
// prefix, sent at sentNs; compressed on their own (permessage-deflate, no
// context takeover) when deflate is set.
type benchFrames struct {
	rng     *rand.Rand
	d       ws.Deflater
	per     int
	deflate bool
	sentNs  int64
	next    int // the frame made next
}

func newBenchFrames(per int, deflate bool) *benchFrames {
	return &benchFrames{rng: rand.New(rand.NewPCG(15, uint64(per))), per: per, deflate: deflate, sentNs: time.Now().UnixNano()}
}

// make returns the next frame: frame g (from 0) carries seqs g·per+1 to
// (g+1)·per.
func (bf *benchFrames) make() []byte {
	msgs := make([]protocol.Message, bf.per)
	for i := range msgs {
		seq := uint64(bf.next*bf.per + i + 1)
		uid := "bench-v-" + strconv.Itoa(bf.rng.IntN(19000))
		msgs[i] = protocol.Message{Seq: seq, UID: uid, Name: uid, Text: benchText(bf.sentNs, seq) + " " + chatText(bf.rng),
			TS: bf.sentNs / 1e6}
	}
	bf.next++
	p := protocol.EncodeBatch("ladder", msgs)
	if bf.deflate {
		return bf.d.AppendFrame(nil, ws.OpText, p)
	}
	return ws.AppendFrame(nil, ws.OpText, p)
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

// cpuTime is the process's CPU time so far (user and system, all threads).
func cpuTime(b *testing.B) time.Duration {
	var ru unix.Rusage
	if err := unix.Getrusage(unix.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkHarness is the epoll harness's CPU per frame and per delivery
// on issue 15's ladder: 19,000 viewers of one room on one loop, every
// viewer getting the same batch frames (the gateway encodes, and
// compresses, a batch once), viewers up to 8 frames apart as their
// sockets' backlogs differ. One iteration is one frame to one viewer; the
// read(2) itself is not in it (a copy into the loop's buffer stands for
// it). uncached is the loop without frame summaries, as before them.
// cpu-ns/frame is the process's CPU time (getrusage), which a busy machine
// does not inflate as it does the wall-clock ns/frame.
func BenchmarkHarness(b *testing.B) {
	benchHarness(b, 19000, 0)
}

// BenchmarkHarnessRead is BenchmarkHarness with the read(2): 1,000 viewers
// on loopback TCP connections; one iteration writes (not timed) 1 or 4
// frames to a viewer's socket — a harness that keeps up, or one whose
// viewers' sockets have backlogs — then reads and handles them through
// eloop.read as the loop does when a socket is ready. epoll_wait, shared
// by up to 256 ready sockets, is not in it.
func BenchmarkHarnessRead(b *testing.B) {
	for _, depth := range []int{1, 4} {
		b.Run(fmt.Sprintf("frames-per-read=%d", depth), func(b *testing.B) { benchHarness(b, 1000, depth) })
	}
}

// benchHarness runs the harness benchmarks: frames fed to a loop's
// viewers, or written to their sockets depth at a time when depth > 0.
func benchHarness(b *testing.B, viewers, depth int) {
	const lag, pool = 8, 64
	for _, deflate := range []bool{false, true} {
		for _, per := range []int{4, 35, 250} {
			for _, cached := range []bool{false, true} {
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
					if depth > 0 {
						benchRead(b, viewers, depth, lag, per, deflate, cached)
					} else {
						benchFeed(b, viewers, lag, pool, per, deflate, cached)
					}
				})
			}
		}
	}
}

// benchFeed feeds a pool of frames to the viewers, viewer v v%lag frames
// behind; a viewer's seqs start again at 1 with the pool's first frame.
func benchFeed(b *testing.B, viewers, lag, pool, per int, deflate, cached bool) {
	bf := newBenchFrames(per, deflate)
	frames := make([][]byte, pool)
	size := 0
	for i := range frames {
		frames[i] = bf.make()
		size += len(frames[i])
	}
	l, conns := benchLoop(viewers, cached)
	frameOf := func(i, v int) int { return (i/viewers + pool - v%lag) % pool }
	for v, c := range conns {
		c.s.tr.Start(uint64(frameOf(0, v)) * uint64(per))
	}
	b.ReportAllocs()
	i, cpu0 := 0, cpuTime(b)
	for b.Loop() {
		v := i % viewers
		f := frameOf(i, v)
		i++
		c := conns[v]
		if f == 0 {
			c.s.tr = Tracker{}
		}
		feedFrame(l, c, frames[f])
	}
	cpu := cpuTime(b) - cpu0
	if got, want := l.st.deliveries.Load(), int64(b.N)*int64(per); got != want {
		b.Fatalf("%d deliveries for %d frames of %d messages; want %d", got, b.N, per, want)
	}
	reportHarness(b, float64(b.N), cpu, per, float64(size)/float64(pool))
}

// benchRead writes frames to the viewers' sockets, depth to each per
// round, viewer v v%lag rounds behind, and reads each socket once per
// round: the writes are not timed.
func benchRead(b *testing.B, viewers, depth, lag, per int, deflate, cached bool) {
	bf := newBenchFrames(per, deflate)
	made := map[int][]byte{}
	size := 0
	frame := func(g int) []byte { // frames are made in order, dropped when all viewers have them
		for bf.next <= g {
			n := bf.next
			made[n] = bf.make()
			size += len(made[n])
		}
		return made[g]
	}
	l, conns := benchLoop(viewers, cached)
	servers := loopbackPairs(b, conns)
	first := func(round, v int) int { return (round + lag - v%lag) * depth }
	for v, c := range conns {
		c.s.tr.Start(uint64(first(0, v)) * uint64(per))
	}
	var cpu time.Duration
	b.ReportAllocs()
	i, round, cpu0 := 0, -1, cpuTime(b)
	for b.Loop() {
		v := i % viewers
		i++
		if v == 0 {
			round++
			b.StopTimer()
			cpu += cpuTime(b) - cpu0
			for w, s := range servers {
				for k := range depth {
					if _, err := s.Write(frame(first(round, w) + k)); err != nil {
						b.Fatal(err)
					}
				}
			}
			for g := range made {
				if g < round*depth {
					delete(made, g)
				}
			}
			cpu0 = cpuTime(b)
			b.StartTimer()
		}
		l.read(conns[v])
	}
	cpu += cpuTime(b) - cpu0
	// What was written and not read yet: the last round's rest, and the
	// ends of frames a read took part of (loopback delivers a large
	// write in parts, maybe not all there when read).
	want := int64((round+1)*viewers*depth) * int64(per)
	for pass := 0; pass < 100 && l.st.deliveries.Load() < want; pass++ {
		for _, c := range conns {
			l.read(c)
		}
	}
	if got := l.st.deliveries.Load(); got != want {
		var dups, gaps uint64
		for _, c := range conns {
			dups += c.s.tr.Dups
			gaps += c.s.tr.Gaps()
		}
		b.Fatalf("%d deliveries for %d rounds of %d frames to %d viewers of %d messages; want %d (dups %d, gaps %d)", got, round+1, depth, viewers, per, want, dups, gaps)
	}
	reportHarness(b, float64(b.N*depth), cpu, per, float64(size)/float64(bf.next))
}

// reportHarness reports the cost per frame and per delivery of frames
// handled in the timed part, which took cpu, and the frames' bytes per
// delivery (frameSize: their mean size).
func reportHarness(b *testing.B, frames float64, cpu time.Duration, per int, frameSize float64) {
	ns := float64(b.Elapsed().Nanoseconds()) / frames
	b.ReportMetric(ns, "ns/frame")
	b.ReportMetric(ns/float64(per), "ns/delivery")
	b.ReportMetric(float64(cpu.Nanoseconds())/frames, "cpu-ns/frame")
	b.ReportMetric(float64(cpu.Nanoseconds())/frames/float64(per), "cpu-ns/delivery")
	b.ReportMetric(frameSize/float64(per), "B/delivery")
	b.ReportMetric(0, "ns/op")
}

// loopbackPairs connects each of conns to a loopback listener and gives
// it the socket (non-blocking, registered with its loop, not with epoll);
// it returns the server ends, to write frames to.
func loopbackPairs(b *testing.B, conns []*econn) []net.Conn {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	servers := make([]net.Conn, len(conns))
	for i, c := range conns {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		if servers[i], err = ln.Accept(); err != nil {
			b.Fatal(err)
		}
		fd, err := detach(nc)
		if err != nil {
			b.Fatal(err)
		}
		c.fd = int32(fd)
		c.loop.conns[c.fd] = c
	}
	b.Cleanup(func() {
		for i, c := range conns {
			servers[i].Close()
			if c.fd >= 0 {
				_ = unix.Close(int(c.fd))
			}
		}
	})
	return servers
}
