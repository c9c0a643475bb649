package model

import (
	"math"

	"github.com/danmaku-live/danmaku/pkg/route"
)

// state is what every gateway count shares: the rooms, their dispatch
// records, the costs.
type state struct {
	in       Input
	c        Costs
	bs       []bucket
	recs     []float64 // each room's dispatch records/s, by bucket
	wrecs    []float64 // those with a message to show (each a write per viewer)
	recBytes []float64 // bytes of each such record, raw
	// totalRecs and totalBytes are the dispatch stream: records/s and raw
	// bytes/s.
	totalRecs, totalBytes float64
	wire                  float64 // bytes on the wire per delivery byte (deflate mix)
}

func newState(in Input, c Costs, bs []bucket, t float64) *state {
	s := &state{in: in, c: c, bs: bs, recs: make([]float64, len(bs)), wrecs: make([]float64, len(bs)),
		recBytes: make([]float64, len(bs))}
	s.wire = 1 - in.Deflate + in.Deflate*c.v("deflate_ratio")
	for i, b := range bs {
		r := recordsPerS(b.rate, t)
		s.recs[i], s.wrecs[i] = r, recordsPerS(b.shown, t)
		if r > 0 {
			s.recBytes[i] = batchEnvelope + b.shown/r*c.v("delivery_bytes")
		}
		s.totalRecs += b.n * r
		s.totalBytes += b.n * r * s.recBytes[i]
	}
	return s
}

// gw is one gateway count's figures.
type gw struct {
	cpu                      GatewayCPU
	cycle, hotPass, hotCycle float64 // seconds
	p50, p99                 float64 // seconds
	loopDelay                float64 // seconds: a batch queued as a pass starts, written at the end of the next
	msgsPerWrite             float64
	readFraction, rooms      float64
	pipeUtil                 float64
	harnessUtil              float64 // the bench viewers' CPU need / what they get (box)
	loopUtil                 float64 // the hottest room's messages per cycle / what a write holds (box)
	share                    float64 // of a core, per event loop
	wide                     bool    // the hottest room's loops write wide (overload)
	// paced: an average loop waits n/FlushRate after writing to n
	// viewers, under MaxFlushMs, and that is a tenth of its cycle or
	// more: its share of the time writing is the pacing's, whatever its
	// load.
	paced bool
	shed  float64 // share of the hottest room's messages shedding leaves out
}

// loopMix is the members of one event loop, by bucket (summed over the
// bucket's rooms), and how the gateway paces the loop.
type loopMix struct {
	members []float64
	// wide: the loop writes at most every ShedFlushMs (or every pass, if
	// longer, up to ShedDelayMs) instead of every MaxFlushMs: the
	// hottest room is under pressure (gateway/shed.go).
	wide bool
	// shown is the share of the hottest room's messages its viewers are
	// shown: below 1 when the gateway sheds.
	shown float64
	// avg: the gateway's average loop (its pipeline and harness shares
	// are the box's), not the hottest room's.
	avg bool
}

func (s *state) newMix() loopMix {
	return loopMix{members: make([]float64, len(s.bs)), shown: 1}
}

// gateway computes the figures of an average gateway among n, and of the
// loop that holds the hottest room.
func (s *state) gateway(n int) gw {
	in, c := s.in, s.c
	var g gw
	loops := float64(in.GatewayCores)
	perGW := in.Viewers / float64(n)
	avg := s.newMix()
	avg.avg = true
	var decodeBytes float64
	for i, b := range s.bs {
		q, on := s.placement(b, n, perGW)
		g.rooms += b.n * q
		avg.members[i] = b.n * b.viewers / float64(n) / loops
		decodeBytes += b.n * q * s.recs[i] * s.recBytes[i] * on
	}
	g.readFraction = s.readFraction(n, g.rooms)
	perByte := c.v("decode_byte_ns")
	if in.Deflate > 0 {
		perByte += c.v("deflate_byte_ns")
	}
	g.cpu.Read = g.readFraction*(s.totalRecs*c.v("read_record_us")*1e-6+s.totalBytes*c.v("read_byte_ns")*1e-9) +
		decodeBytes*perByte*1e-9
	if in.SessionMin > 0 {
		g.cpu.Handshake = perGW / (60 * in.SessionMin) * c.v("handshake_us") * 1e-6
	}
	if in.HeartbeatS > 0 {
		g.cpu.Ping = perGW / in.HeartbeatS * c.v("ping_us") * 1e-6
	}
	g.cpu.Base = c.v("gateway_base_cores")
	share := func(cycle float64, mix loopMix) float64 { return s.share(n, cycle, mix, &g) }
	hot, everyLoop := s.hotMix(avg, n, perGW)
	hot = s.pressure(&g, hot, share)
	if everyLoop {
		// The hottest room has viewers on every loop: they all pace
		// and shed as its loop does.
		avg.wide, avg.shown = hot.wide, hot.shown
	}
	g.cycle = s.cycle(avg, share)
	cpu, writes, msgs, _ := s.work(avg, g.cycle)
	g.cpu.Write = loops * cpu / g.cycle
	if w := writes / in.FlushRate; !avg.wide && writes > 0 && w < in.MaxFlushMs/1e3 && w >= 0.1*g.cycle {
		g.paced = true
	}
	if writes > 0 {
		g.msgsPerWrite = msgs / writes
	}
	g.share = share(g.cycle, avg)
	if g.harnessUtil > 1 {
		// Viewers that cannot keep up get only what they read: the
		// gateway drops the rest for them instead of writing it.
		g.cpu.Write /= g.harnessUtil
	}
	s.hot(&g, hot, share)
	return g
}

// pressure returns mix (the loop that holds the hottest room) paced and
// shed as the gateway would (gateway/shed.go): a loop whose batches wait
// longer than ShedDelayMs from being queued to being written to every
// member (lag) goes wide. One late pass is
// enough, and a wide room stays wide for seconds: what counts is the
// slowest passes, loop_spread times the typical one; if it is still
// late on what it queues after that (the wide wait does not count) with
// frames of shedFrameBytes or more on the wire, the room's messages are left
// out: the largest share shown that is not, at least the protected
// messages and the shed budget's floor. (Bench viewers that read too slowly are not seen: their socket
// buffers hold the backlog, which hot() charges to the latency.)
func (s *state) pressure(g *gw, mix loopMix, share func(float64, loopMix) float64) loopMix {
	delay := s.in.ShedDelayMs / 1e3
	if cycle, pass, _ := s.loop(mix, share); s.lag(mix, pass, cycle-pass)*s.spread() <= delay {
		return mix
	}
	mix.wide, g.wide = true, true
	if !s.lateWide(mix, share) {
		return mix
	}
	// Shedding keeps the protected messages and at least its floor.
	lo := math.Min(1, s.in.Protected+shedMin/math.Max(s.bs[0].shown, 1e-9))
	hi := 1.0
	for range 40 {
		mid := (lo + hi) / 2
		m := mix
		m.shown = mid
		if s.lateWide(m, share) {
			hi = mid
		} else {
			lo = mid
		}
	}
	mix.shown = lo
	g.shed = 1 - lo
	return mix
}

// lateWide is whether a wide loop mix is late on what it queues (the wide
// wait does not count: its lag with the pacing alone, slowest passes, past
// ShedDelayMs) with writes of the hottest room of shedFrameBytes or more
// at full delivery: what makes the gateway leave messages out.
func (s *state) lateWide(mix loopMix, share func(float64, loopMix) float64) bool {
	cycle, pass, writes := s.loop(mix, share)
	full := mix // the gateway judges the write's size at full delivery
	full.shown = 1
	return s.lag(mix, pass, s.pace(writes))*s.spread() > s.in.ShedDelayMs/1e3 && s.hotWrite(full, cycle)*s.c.v("delivery_bytes")*s.wire >= shedFrameBytes
}

// lag is how late the loop of mix is on its hottest room (what the
// gateway measures, gateway/lag.go) with a write pass of pass and a wait
// of wait after it: the oldest batch comes as a pass starts, waits it out
// and the wait, and is written to every member by the end of the next
// pass, or, where the room has more than takeEvery members on the loop,
// once the next pass has written the members before the point the running
// pass took it at (its first look, takeEvery members in).
func (s *state) lag(mix loopMix, pass, wait float64) float64 {
	next := pass
	if m := mix.members[0]; m > takeEvery {
		t := s.takes(mix)
		next = pass * (t*takeEvery/m + 1 - t)
	}
	return pass + wait + next
}

// takes is how often a pass over the loop of mix takes its hottest room's
// newer batches early: never with takeEvery members or fewer; else as
// often as the next batch queued on the loop is the room's (takeMore
// takes only the room's batches at the head of the queue, nothing else
// between): its share of the dispatch records of the loop's rooms.
func (s *state) takes(mix loopMix) float64 {
	if mix.members[0] <= takeEvery {
		return 0
	}
	var all float64
	for i, m := range mix.members {
		if m > 0 {
			// The rooms of bucket i with members on the loop.
			all += math.Min(s.bs[i].n, m) * s.wrecs[i]
		}
	}
	if all <= 0 {
		return 1
	}
	return math.Min(1, s.wrecs[0]/all)
}

// takeEvery is the gateway's members written between looks at the loop's
// queue for a room's newer batches (gateway/flush.go).
const takeEvery = 512

// spread is how much longer the slowest write passes are than the
// typical one: loop_spread on a box, where the harness, the pipeline and
// the other gateways contend for the cores; 1 in a deployment, where each
// loop has a core (not measured here).
func (s *state) spread() float64 {
	if s.in.Box == nil {
		return 1
	}
	return s.c.v("loop_spread")
}

// The gateway's shedding constants (gateway/shed.go): a wide loop late
// with frames below shedFrameBytes on the wire stays wide without leaving
// messages out; the shed budget's floor is shedMin messages/s.
const (
	shedFrameBytes = 32768
	shedMin        = 5
)

// placement is the chance a gateway among n holds any viewer of a room of
// b (its rooms decode the room's batches: on is 1 then).
func (s *state) placement(b bucket, n int, perGW float64) (q, on float64) {
	if s.in.Affinity != "off" {
		return s.pool(b.viewers, n, perGW) / float64(n), 1
	}
	return -math.Expm1(-b.viewers / float64(n)), 1
}

// readFraction is the share of the dispatch stream a gateway among n
// reads when it holds rooms rooms: all of it without affinity; the
// partitions its rooms hash to when the load balancer routes by room
// (1 - (1 - 1/P)^rooms); about its 1/n share, at least one partition,
// when it routes by partition.
func (s *state) readFraction(n int, rooms float64) float64 {
	p := float64(s.in.Partitions)
	switch s.in.Affinity {
	case "room":
		return hitShare(p, rooms)
	case "partition":
		return math.Min(1, math.Max(1/p, 1/float64(n)))
	}
	return 1
}

// pool is how many gateways hold a room of v viewers under affinity: the
// fewest that fit it at the average fill, at least AffinitySlots, or the
// distinct gateways of its own slots when the router takes it for hot.
func (s *state) pool(v float64, n int, perGW float64) float64 {
	pool := max(s.in.AffinitySlots, math.Ceil(v/perGW))
	if hot := route.HotSlots(int(v), int(s.in.AffinityHot)); hot > 0 {
		pool = max(pool, float64(n)*hitShare(float64(n), float64(hot)))
	}
	return min(float64(n), pool)
}

// hitShare is the share of n bins that k draws, uniform and independent,
// hit at least once: 1 − (1 − 1/n)^k.
func hitShare(n, k float64) float64 {
	return -math.Expm1(k * math.Log1p(-1/n))
}

// work is one loop's cost of a flush cycle of length cycle: CPU seconds,
// writes, the messages in them and their frames.
func (s *state) work(mix loopMix, cycle float64) (cpu, writes, msgs, frames float64) {
	c := s.c
	for i := range s.bs {
		m := mix.members[i]
		if m == 0 || s.wrecs[i] == 0 {
			continue
		}
		p := -math.Expm1(-s.wrecs[i] * cycle) // a batch of the room came in the cycle
		perWrite := s.write(mix, i, cycle)
		bytes := perWrite*c.v("delivery_bytes")*s.wire + 10
		cpu += m * p * (c.v("write_us")*1e-6 + bytes*c.v("write_byte_ns")*1e-9)
		writes += m * p
		msgs += m * p * perWrite
		frames += m * p * math.Max(1, math.Ceil(perWrite/maxMerge))
	}
	return cpu, writes, msgs, frames
}

// maxMerge is the most messages the gateway merges into one frame
// (gateway/flush.go): a write holds ceil(messages/maxMerge) frames.
const maxMerge = 256

// write is the messages in one write of bucket i's rooms on loop mix
// with flush cycle cycle.
func (s *state) write(mix loopMix, i int, cycle float64) float64 {
	shown := s.bs[i].shown
	if i == 0 {
		shown *= mix.shown
	}
	p := -math.Expm1(-s.wrecs[i] * cycle)
	if p == 0 {
		return 0
	}
	// A viewer's backlog stops at the gateway's soft cap (256 KiB):
	// what a loop cannot write in time is dropped, not merged.
	return min(shown*cycle/p, s.writeCap())
}

// writeCap is the most messages a write holds in the model: the
// gateway's soft cap's worth.
func (s *state) writeCap() float64 { return softCap / (s.c.v("delivery_bytes") * s.wire) }

// hotWrite is the messages in a write of the hottest room.
func (s *state) hotWrite(mix loopMix, cycle float64) float64 { return s.write(mix, 0, cycle) }

// softCap is the gateway's per-viewer outbound soft cap
// (gateway.Config.SoftOutbound default): the largest frame merge.
const softCap = 256 << 10

// pace is the flush pacing after writing to n members.
func (s *state) pace(n float64) float64 {
	return min(n/s.in.FlushRate, s.in.MaxFlushMs/1e3)
}

// afterPass is the loop's wait after a write pass of length pass that
// wrote writes frames, its cycle being cycle: the pacing, or on a wide
// loop ShedFlushMs, or while the hottest room's writes are below
// shedFrameBytes on the wire, the pass's own length if longer, up to
// ShedDelayMs (gateway/flush.go).
func (s *state) afterPass(mix loopMix, pass, writes, cycle float64) float64 {
	w := s.pace(writes)
	if mix.wide {
		w = max(w, s.in.ShedFlushMs/1e3)
		if s.hotWrite(mix, cycle)*s.c.v("delivery_bytes")*s.wire < shedFrameBytes {
			w = max(w, min(pass, s.in.ShedDelayMs/1e3))
		}
	}
	return w
}

// loop is the loop's flush cycle, its write pass and the frames a pass
// writes.
func (s *state) loop(mix loopMix, share func(float64, loopMix) float64) (cycle, pass, writes float64) {
	cycle = s.cycle(mix, share)
	cpu, writes, _, _ := s.work(mix, cycle)
	return cycle, cpu / share(cycle, mix), writes
}

// cycle finds the loop's flush cycle: the time to write what arrived in
// the last cycle, at the CPU share the loop gets, plus the wait after it.
func (s *state) cycle(mix loopMix, share func(float64, loopMix) float64) float64 {
	cyc := 1e-3
	for range 500 {
		cpu, writes, _, _ := s.work(mix, cyc)
		pass := cpu / share(cyc, mix)
		next := max(1e-5, pass+s.afterPass(mix, pass, writes, cyc))
		if math.Abs(next-cyc) < 1e-7 {
			return next
		}
		cyc = 0.5*cyc + 0.5*next
	}
	return cyc
}
