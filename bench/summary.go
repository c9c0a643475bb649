package bench

import (
	"bytes"
	"hash/maphash"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// A gateway encodes a room's batch once (and compresses it once) and
// writes the same bytes to every viewer of the room, so an event loop
// standing in for thousands of viewers reads the same few frames over and
// over. It decodes each once into a frameSum, kept in a small cache keyed
// by the frame's exact bytes, and applies the summary to each viewer's
// session: the per-message JSON scan (and inflate) is paid once per loop,
// not once per viewer.

// A loop keeps sumSets×sumWays frame summaries, a frame's in the set its
// key picks (any of its ways, the oldest replaced): its viewers get the
// same recent frames, up to a hundred or so apart while their sockets'
// backlogs differ (seconds of a room's batches).
const (
	sumSets = 128
	sumWays = 4
)

// maxSumFrame bounds the payload a loop keeps a summary of (and a copy
// of); a larger frame is decoded for each viewer. A loop's summaries hold
// a few MiB in a ladder run (batches of tens of KiB), at most 512 times
// this.
const maxSumFrame = 256 << 10

// seqRun is first, first+1, ..., first+n-1 of a batch, in its order.
type seqRun struct {
	first uint64
	n     uint32
}

// frameSum is the decoded content of one batch frame.
type frameSum struct {
	key  uint64
	z    bool   // data is compressed (permessage-deflate)
	data []byte // the payload as received: what a frame is compared with
	// runs are the batch's seqs in order, consecutive ones as one run;
	// sent holds the send time (unix ns, 0: not a harness text) of each
	// message in the same order.
	runs []seqRun
	sent []int64
	// from and to are the batch's thinning marks when marked.
	from, to uint64
	marked   bool
}

// sumKeySeed seeds the frame keys of every loop.
var sumKeySeed = maphash.MakeSeed()

// sumKey is the cache key of a payload: its length, whether it is
// compressed and a hash of its first and last 64 bytes (where a batch's
// first seq and its last text are). Frames with equal keys are compared
// byte for byte before a summary is used.
func sumKey(z bool, p []byte) uint64 {
	h := maphash.Bytes(sumKeySeed, p[:min(len(p), 64)])
	if len(p) > 64 {
		h = h*0x9e3779b97f4a7c15 ^ maphash.Bytes(sumKeySeed, p[max(len(p)-64, 64):])
	}
	h ^= uint64(len(p)) << 1
	if z {
		h ^= 1
	}
	return h
}

// summaries is an event loop's cache of frame summaries (no lock: one
// loop's). The zero value keeps none: every frame is decoded for each
// viewer, as the goroutine viewers do.
type summaries struct {
	sums []frameSum // sumSets sets of sumWays
	next []uint8    // per set, the way replaced next (round robin)
	// key computes the cache key; sumKey, or a test's.
	key func(z bool, p []byte) uint64
	// decoded counts the frames decoded into a summary (misses).
	decoded int64
}

func newSummaries() summaries {
	return summaries{sums: make([]frameSum, sumSets*sumWays), next: make([]uint8, sumSets), key: sumKey}
}

// set returns the set of key k.
func (c *summaries) set(k uint64) int { return int((k ^ k>>32) % uint64(len(c.next))) }

// lookup returns the summary of the frame whose payload is exactly p
// (compressed when z) and its key; nil when none is kept.
func (c *summaries) lookup(z bool, p []byte) (*frameSum, uint64) {
	k := c.key(z, p)
	set := c.set(k) * sumWays
	for i := set; i < set+sumWays; i++ {
		if sm := &c.sums[i]; sm.key == k && sm.z == z && sm.data != nil && bytes.Equal(sm.data, p) {
			return sm, k
		}
	}
	return nil, k
}

// store decodes the batch payload p (raw is what was received: p
// compressed when z) into the oldest entry of its key's set and returns
// it.
func (c *summaries) store(k uint64, z bool, raw, p []byte) *frameSum {
	set := c.set(k)
	sm := &c.sums[set*sumWays+int(c.next[set])]
	c.next[set] = (c.next[set] + 1) % sumWays
	c.decoded++
	sm.key, sm.z = k, z
	sm.data = append(sm.data[:0], raw...)
	sm.runs, sm.sent = sm.runs[:0], sm.sent[:0]
	sm.from, sm.to, sm.marked = batchMarks(p)
	eachMessage(p, func(seq uint64, sent int64) {
		if i := len(sm.runs) - 1; i >= 0 && sm.runs[i].n < 1<<31 && sm.runs[i].first+uint64(sm.runs[i].n) == seq {
			sm.runs[i].n++
		} else {
			sm.runs = append(sm.runs, seqRun{first: seq, n: 1})
		}
		sm.sent = append(sm.sent, sent)
	})
	return sm
}

// frame accounts one data frame (payload p, compressed when z) of c. It
// returns after_ms of a reconnect frame (-1: none), and false when a
// compressed frame does not inflate. now is the receive time (unix ns) of
// the read that brought the frame, 0 until someone asks for it.
func (l *eloop) frame(c *econn, z bool, p []byte, now *int64) (int64, bool) {
	var k uint64
	if len(l.sums.sums) > 0 && len(p) <= maxSumFrame {
		var sm *frameSum
		if sm, k = l.sums.lookup(z, p); sm != nil {
			c.s.applyBatch(sm, c.resuming, now, &l.st, &l.lat)
			return -1, true
		}
	}
	raw := p
	if z {
		q, err := l.infl.Inflate(p, maxFrameSize, true)
		if err != nil {
			return -1, false
		}
		p = q
	}
	if len(l.sums.sums) > 0 && len(raw) <= maxSumFrame && string(frameOp(p)) == protocol.OpBatch {
		c.s.applyBatch(l.sums.store(k, z, raw, p), c.resuming, now, &l.st, &l.lat)
		return -1, true
	}
	return c.s.handle(p, &c.resuming, time.Unix(0, c.start), &l.st, l), true
}

// applyBatch accounts a batch frame decoded into sm for s, exactly as
// handleMessages does for the frame itself (resuming: the session awaits
// its history, so marks do not apply yet): deliveries, duplicates, marked
// seqs and, when s.latency is set, the latency of each new message
// against the receive time *now (read once, on first use).
func (s *session) applyBatch(sm *frameSum, resuming bool, now *int64, st *stats, lat *Hist) {
	marked := sm.marked && !resuming
	if marked {
		s.tr.BeginMark(sm.from)
	}
	markedBefore := s.tr.Marked
	var fresh, dups int64
	k := 0
	for _, r := range sm.runs {
		n := int(r.n)
		if r.first > s.tr.Last() {
			s.tr.AddRun(r.first, uint64(n))
			fresh += int64(n)
			if s.latency {
				recordSince(lat, now, sm.sent[k:k+n])
			}
		} else {
			for j := range n {
				if !s.tr.Add(r.first + uint64(j)) {
					dups++
					continue
				}
				fresh++
				if s.latency {
					recordSince(lat, now, sm.sent[k+j:k+j+1])
				}
			}
		}
		k += n
	}
	if marked {
		s.tr.EndMark(sm.from, sm.to)
		if d := s.tr.Marked - markedBefore; d > 0 {
			st.marked.Add(int64(d))
		}
	}
	if fresh > 0 {
		st.deliveries.Add(fresh)
	}
	if dups > 0 {
		st.dups.Add(dups)
	}
}

// recordSince records the latency in microseconds of each message sent at
// sent (0: not a harness text, not recorded) received at *now, which it
// reads from the clock on first use.
func recordSince(h *Hist, now *int64, sent []int64) {
	for _, ns := range sent {
		if ns <= 0 {
			continue
		}
		if *now == 0 {
			*now = time.Now().UnixNano()
		}
		var us uint64
		if d := *now - ns; d > 0 {
			us = uint64(d / 1e3)
		}
		h.Record(us)
	}
}
