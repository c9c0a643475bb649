package model

import "math"

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
	msgsPerFrame             float64
	readFraction, rooms      float64
	pipeUtil                 float64
	harnessUtil              float64 // the bench viewers' CPU need / what they get (box)
	share                    float64 // of a core, per event loop
}

// loopMix is the members of one event loop, by bucket (summed over the
// bucket's rooms), and how much of the hottest room it holds.
type loopMix struct {
	members []float64
}

// gateway computes the figures of an average gateway among n, and of the
// loop that holds the hottest room.
func (s *state) gateway(n int) gw {
	in, c := s.in, s.c
	var g gw
	loops := float64(in.GatewayCores)
	perGW := in.Viewers / float64(n)
	avg := loopMix{members: make([]float64, len(s.bs))}
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
	share := func(cycle float64, mix loopMix) float64 { return s.share(n, cycle, mix, &g) }
	g.cycle = s.cycle(avg, share)
	cpu, writes, msgs := s.work(avg, g.cycle)
	g.cpu.Write = loops * cpu / g.cycle
	if writes > 0 {
		g.msgsPerFrame = msgs / writes
	}
	g.share = share(g.cycle, avg)
	if g.harnessUtil > 1 {
		// Viewers that cannot keep up get only what they read: the
		// gateway drops the rest for them instead of writing it.
		g.cpu.Write /= g.harnessUtil
	}
	s.hot(&g, avg, n, perGW, share)
	return g
}

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
		return -math.Expm1(rooms * math.Log1p(-1/p))
	case "partition":
		return math.Min(1, math.Max(1/p, 1/float64(n)))
	}
	return 1
}

// pool is how many gateways hold a room of v viewers under affinity: the
// fewest that fit it at the average fill, at least AffinitySlots.
func (s *state) pool(v float64, n int, perGW float64) float64 {
	return min(float64(n), max(s.in.AffinitySlots, math.Ceil(v/perGW)))
}

// work is one loop's cost of a flush cycle of length cycle: CPU seconds,
// frames written and messages in them.
func (s *state) work(mix loopMix, cycle float64) (cpu, writes, msgs float64) {
	c := s.c
	for i, b := range s.bs {
		m := mix.members[i]
		if m == 0 || s.wrecs[i] == 0 {
			continue
		}
		p := -math.Expm1(-s.wrecs[i] * cycle) // a batch of the room came in the cycle
		// A viewer's backlog stops at the gateway's soft cap (256 KiB):
		// what a loop cannot write in time is dropped, not merged.
		perFrame := min(b.shown*cycle/p, softCap/(c.v("delivery_bytes")*s.wire))
		bytes := perFrame*c.v("delivery_bytes")*s.wire + 10
		cpu += m * p * (c.v("write_frame_us")*1e-6 + bytes*c.v("write_byte_ns")*1e-9)
		writes += m * p
		msgs += m * p * perFrame
	}
	return cpu, writes, msgs
}

// softCap is the gateway's per-viewer outbound soft cap
// (gateway.Config.SoftOutbound default): the largest frame merge.
const softCap = 256 << 10

// pace is the flush pacing after writing to n members.
func (s *state) pace(n float64) float64 {
	return min(n/s.in.FlushRate, s.in.MaxFlushMs/1e3)
}

// cycle finds the loop's flush cycle: the time to write what arrived in
// the last cycle, at the CPU share the loop gets, plus the pacing.
func (s *state) cycle(mix loopMix, share func(float64, loopMix) float64) float64 {
	cyc := 1e-3
	for range 500 {
		cpu, writes, _ := s.work(mix, cyc)
		next := max(1e-5, cpu/share(cyc, mix)+s.pace(writes))
		if math.Abs(next-cyc) < 1e-7 {
			return next
		}
		cyc = 0.5*cyc + 0.5*next
	}
	return cyc
}
