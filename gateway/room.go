// A room's gateway-wide state and its ring: shared by the event loops, the dispatch, control, shed and presence goroutines, under room.mu.

package gateway

import (
	"hash/maphash"
	"sync"
	"sync/atomic"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// room is the gateway-wide state of one room that has (or recently had)
// viewers on this gateway: the ring of recent messages for joins and
// resumes, and how many viewers each event loop holds, so a batch is handed
// only to the loops that need it.
//
// mu guards ring, last, viewers, idleSince, dead, fills, emptyUntil and
// epoch. It is taken by the dispatch goroutine (append a batch), by event
// loops (join and leave), by fill goroutines (extend the ring) and by the
// control goroutine (deletions); never held while writing to a connection.
type room struct {
	name string

	mu        sync.Mutex
	ring      []protocol.Message // ascending; Room fields empty
	ringFrom  uint64             // the ring covers every seq from ringFrom to last (thinned ones left out); 0 = none
	last      uint64             // highest seq seen from dispatch or in the store's answer; never from a client (see extendLocked); 0 = none yet
	viewers   []int32            // per loop index: members on that loop
	idleSince time.Time          // when the last local viewer left
	dead      bool               // removed from the registry; joiners must look again
	fills     []*roomFill        // store loads in flight for joins the ring does not serve (fill.go)
	// emptyUntil: with last 0 and ringFrom 1, a fill found nothing of the
	// room in the store; joins take the room as empty until then
	// (emptyFor), and ask the store again after.
	emptyUntil time.Time
	// epoch is the reading period of the room's dispatch partition that
	// the ring holds (Config.Affinity, affinity.go; always 0 without).
	epoch uint64

	online atomic.Int64 // local members over all loops, observers included
	// observers counts the local members that are moderators watching with
	// observe=1 (the dashboard): members, but not viewers in online counts.
	observers atomic.Int64
	global    atomic.Int64 // last count from presence (all gateways); -1 unknown
	sent      atomic.Int64 // count last broadcast in an online frame
	// sentAt is when that frame went out; owned by the presence goroutine.
	sentAt time.Time

	// shed is the room's overload shedding (see shed.go); guarded by mu.
	shed shed
	// shedding is set while the room is under overload handling
	// (shed.wide; its budget may be 0): the loops then write its viewers
	// every Config.ShedFlushDelay and exempt them from the outbound
	// budget's drops.
	shedding atomic.Bool
	// writeBytes is the largest, over the loops that wrote the room's
	// stream since the shed goroutine last took it, of a pass's mean bytes
	// on the wire per write to a viewer (what each got: compressed,
	// compact; flush.go); the shed goroutine takes it (shed.go).
	writeBytes atomic.Int64
	// backedAt is set by a loop whose pass over the room found most of its
	// members backed up: when the oldest delivery of that pass was queued
	// (Unix ns). The shed goroutine reads and clears it.
	backedAt atomic.Int64
	// offered counts messages × local members posted since the last shed
	// step: the writes the room asks of the gateway.
	offered atomic.Int64
	// written counts messages × members the loops wrote since the shed
	// goroutine last looked: what the gateway manages to deliver.
	written atomic.Int64
	// shedMsgs counts the room's messages shedding left out.
	shedMsgs atomic.Int64
}

// appendLocked adds a batch covering seqs from..to (see protocol.Batch)
// to the ring. It drops messages already seen and restarts the ring when
// the batch does not continue it (a gap upstream). It returns the new
// messages and the part of the batch's range that was new (ok false when
// none was: a redelivery). mu must be held.
func (r *room) appendLocked(from, to uint64, msgs []protocol.Message, ringSize int) (fresh []protocol.Message, first, last uint64, ok bool) {
	if to <= r.last {
		return nil, 0, 0, false
	}
	i := 0
	for i < len(msgs) && msgs[i].Seq <= r.last {
		i++
	}
	msgs = msgs[i:]
	first = max(from, r.last+1)
	if r.last == 0 || first != r.last+1 {
		r.ring = r.ring[:0:0]
		r.ringFrom = first
	}
	r.ring = append(r.ring, msgs...)
	if len(r.ring) > ringSize+ringSize/4 {
		r.ring = append(r.ring[:0:0], r.ring[len(r.ring)-ringSize:]...)
		r.ringFrom = r.ring[0].Seq
	}
	r.last = to
	return msgs, first, to, true
}

// adoptEpochLocked reports whether what was read in reading period epoch
// of the room's partition belongs to the ring: not when the ring holds a
// later period. A later epoch starts the ring again: the batches
// dispatched between the periods were not read, and a ring that went on
// across them would skip their seqs. mu must be held.
func (r *room) adoptEpochLocked(epoch uint64) bool {
	switch {
	case epoch < r.epoch:
		return false
	case epoch > r.epoch:
		r.ring, r.ringFrom, r.last, r.emptyUntil, r.epoch = r.ring[:0:0], 0, 0, time.Time{}, epoch
	}
	return true
}

// ringFirstLocked returns the lowest seq the ring covers, or 0. mu must
// be held.
func (r *room) ringFirstLocked() uint64 {
	if r.last == 0 {
		return 0
	}
	return r.ringFrom
}

// ringAfterLocked copies the ring's messages with seq > after that are not
// deleted. mu must be held.
func (r *room) ringAfterLocked(after uint64) []protocol.Message {
	var out []protocol.Message
	for i := range r.ring {
		if r.ring[i].Seq > after && !r.ring[i].Deleted {
			out = append(out, r.ring[i])
		}
	}
	return out
}

// loopsLocked returns the loop indexes with viewers. mu must be held.
func (r *room) loopsLocked(dst []int) []int {
	for i, n := range r.viewers {
		if n > 0 {
			dst = append(dst, i)
		}
	}
	return dst
}

const roomShards = 64

// rooms is the sharded registry of rooms, name → *room. Safe for
// concurrent use.
type rooms struct {
	seed   maphash.Seed
	loops  int
	shards [roomShards]struct {
		mu sync.RWMutex
		m  map[string]*room
	}
}

func newRooms(loops int) *rooms {
	rs := &rooms{seed: maphash.MakeSeed(), loops: loops}
	for i := range rs.shards {
		rs.shards[i].m = make(map[string]*room)
	}
	return rs
}

func (rs *rooms) shard(name string) int {
	return int(maphash.String(rs.seed, name) % roomShards)
}

// get returns the room or nil.
func (rs *rooms) get(name string) *room {
	sh := &rs.shards[rs.shard(name)]
	sh.mu.RLock()
	r := sh.m[name]
	sh.mu.RUnlock()
	return r
}

// getOrCreate returns the room, creating it.
func (rs *rooms) getOrCreate(name string) *room {
	if r := rs.get(name); r != nil {
		return r
	}
	sh := &rs.shards[rs.shard(name)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	r := sh.m[name]
	if r == nil {
		r = &room{name: name, viewers: make([]int32, rs.loops), idleSince: time.Now()}
		r.global.Store(-1)
		r.sent.Store(-1)
		sh.m[name] = r
	}
	return r
}

// each calls f for every room (under the shard read lock: f must not call
// back into rs).
func (rs *rooms) each(f func(*room)) {
	for i := range rs.shards {
		sh := &rs.shards[i]
		sh.mu.RLock()
		for _, r := range sh.m {
			f(r)
		}
		sh.mu.RUnlock()
	}
}

// sweep forgets rooms that have had no viewers on this gateway for grace,
// and returns how many rooms remain.
func (rs *rooms) sweep(now time.Time, grace time.Duration) int {
	n := 0
	for i := range rs.shards {
		sh := &rs.shards[i]
		sh.mu.Lock()
		for name, r := range sh.m {
			r.mu.Lock()
			idle := r.online.Load() == 0 && now.Sub(r.idleSince) > grace
			if idle {
				r.dead = true
			}
			r.mu.Unlock()
			if idle {
				delete(sh.m, name)
			} else {
				n++
			}
		}
		sh.mu.Unlock()
	}
	return n
}

// joinAfterLocked returns the seq a join's history starts after: the
// resume point, or want messages below the room's newest. mu must be held.
func (r *room) joinAfterLocked(resume *uint64, want int) uint64 {
	switch {
	case resume != nil:
		return *resume
	case r.last > uint64(want):
		return r.last - uint64(want)
	}
	return 0
}

// ringHistoryLocked returns a join's history from the ring, the messages
// after seq after (at most the newest want without resume), when the ring
// covers them. mu must be held.
func (r *room) ringHistoryLocked(after uint64, resume *uint64, want int) ([]protocol.Message, bool) {
	if !r.coversLocked(after) {
		return nil, false
	}
	msgs := r.ringAfterLocked(after)
	if resume == nil && len(msgs) > want {
		msgs = msgs[len(msgs)-want:]
	}
	return msgs, true
}

// coversLocked reports whether the ring holds every message after seq
// after: it starts right after it, or at seq 1 (the room began while this
// gateway watched), or nothing is missing, or a fill found the room
// empty less than emptyFor ago (ringFrom 1 before any message). mu must
// be held.
func (r *room) coversLocked(after uint64) bool {
	if r.last == 0 {
		return r.ringFrom == 1 && time.Now().Before(r.emptyUntil)
	}
	first := r.ringFirstLocked()
	return after >= r.last || (first != 0 && (first <= after+1 || first == 1))
}

// onlineCount is the count a joined frame reports: the global count from
// presence when known, else this gateway's.
func (r *room) onlineCount() int {
	if g := r.global.Load(); g >= 0 {
		return int(max(g, r.viewerCount()))
	}
	return int(r.viewerCount())
}

// viewerCount is this gateway's members of the room that count as online:
// every member but the observing moderators.
func (r *room) viewerCount() int64 {
	return max(0, r.online.Load()-r.observers.Load())
}
