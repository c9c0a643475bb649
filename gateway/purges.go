// The gateway's memory of recent retractions (purges and deletes): the dispatch goroutine and history fills mark the retracted messages that arrive after their event; written by the control goroutine.

package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// A retraction reaches the gateway on the control stream, and the
// messages it retracts on the dispatch stream: either may come first. A
// purge (a ban's retraction of a user's messages) may cover messages
// accepted just before the ban; a delete may name a message still on its
// way to the gateways (the history writer reads the accepted stream
// directly, gateways one hop later). And a gateway with no viewer of a
// room (--affinity) has no ring to mark, but rewinds the room's dispatch
// partition into a new ring at the first join. retractMemory remembers
// each retraction for purgeKeep (a purge: after its until), also for
// rooms the gateway does not serve, so a message it covers that arrives
// afterwards goes into the ring deleted and is never shown live nor to
// joiners.
const (
	// purgeKeep is how long a retraction is remembered (a purge: after
	// its until): far longer than a message takes from logic to the
	// gateways (tens of ms when healthy, seconds when the bus lags).
	purgeKeep = 5 * time.Minute
	// maxPurgeMarks bounds the memory (about 100 bytes a mark: a purge,
	// or one deleted seq); past it the oldest mark is forgotten first.
	maxPurgeMarks = 10000
)

// purgeMark is one remembered purge of a room.
type purgeMark struct {
	uid     string
	untilMs int64
}

// roomRetracts is what is remembered of one room.
type roomRetracts struct {
	purges  []purgeMark    // oldest first
	deleted map[uint64]int // deleted seq: how many marks name it
}

// retractKey names a mark in the eviction order: a deleted seq, or (seq
// 0) the room's oldest purge.
type retractKey struct {
	room    string
	seq     uint64
	expires time.Time
}

// retractMemory holds the recent purges and deletes per room. Its methods
// are safe for concurrent use; mu is a leaf lock (taken under room.mu by
// dispatch and by history fills). The control goroutine adds a
// retraction before it marks the ring under room.mu, so each message is
// caught by one or the other. The zero value is not usable: see
// newRetractMemory.
type retractMemory struct {
	n     atomic.Int64 // marks held: 0 lets dispatch skip the lock
	mu    sync.Mutex
	rooms map[string]*roomRetracts
	order []retractKey // every mark, oldest first
}

func newRetractMemory() *retractMemory {
	return &retractMemory{rooms: make(map[string]*roomRetracts)}
}

// addPurge remembers that uid's messages in room with ts < untilMs are
// purged.
func (p *retractMemory) addPurge(room, uid string, untilMs int64, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.makeRoomLocked(1, now)
	rr := p.roomLocked(room)
	rr.purges = append(rr.purges, purgeMark{uid: uid, untilMs: untilMs})
	expires := time.UnixMilli(max(untilMs, now.UnixMilli())).Add(purgeKeep)
	p.order = append(p.order, retractKey{room: room, expires: expires})
	p.n.Store(int64(len(p.order)))
}

// addDelete remembers that seqs of room are deleted. Seq 0 (no message)
// is ignored; past maxPurgeMarks seqs only the last are kept.
func (p *retractMemory) addDelete(room string, seqs []uint64, now time.Time) {
	if len(seqs) > maxPurgeMarks {
		seqs = seqs[len(seqs)-maxPurgeMarks:]
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.makeRoomLocked(len(seqs), now)
	rr := p.roomLocked(room)
	expires := now.Add(purgeKeep)
	for _, seq := range seqs {
		if seq == 0 {
			continue
		}
		rr.deleted[seq]++
		p.order = append(p.order, retractKey{room: room, seq: seq, expires: expires})
	}
	if len(rr.purges) == 0 && len(rr.deleted) == 0 {
		delete(p.rooms, room)
	}
	p.n.Store(int64(len(p.order)))
}

// makeRoomLocked forgets the expired marks, then the oldest until k more
// fit. mu must be held.
func (p *retractMemory) makeRoomLocked(k int, now time.Time) {
	p.expireLocked(now)
	for len(p.order) > 0 && len(p.order)+k > maxPurgeMarks {
		p.dropOldestLocked()
	}
}

// roomLocked returns room's entry, made when missing. mu must be held.
func (p *retractMemory) roomLocked(room string) *roomRetracts {
	rr := p.rooms[room]
	if rr == nil {
		rr = &roomRetracts{deleted: make(map[uint64]int)}
		p.rooms[room] = rr
	}
	return rr
}

// endPurges cuts the remembered purges of uid in room to end at atMs:
// the ban they came with was lifted then, and the user's messages
// accepted since are shown. A purge added later is untouched.
func (p *retractMemory) endPurges(room, uid string, atMs int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	rr := p.rooms[room]
	if rr == nil {
		return
	}
	for i, k := range rr.purges {
		if k.uid == uid && k.untilMs > atMs {
			rr.purges[i].untilMs = atMs
		}
	}
}

// expireLocked forgets the marks past their time. Marks are added in
// order of arrival and expire purgeKeep after their until (a delete's:
// after its arrival), so the front of order is nearly always the first
// to expire; a later one that expires sooner waits for it, which only
// keeps it longer. mu must be held.
func (p *retractMemory) expireLocked(now time.Time) {
	for len(p.order) > 0 && now.After(p.order[0].expires) {
		p.dropOldestLocked()
	}
}

// dropOldestLocked forgets the oldest mark. mu must be held.
func (p *retractMemory) dropOldestLocked() {
	k := p.order[0]
	p.order = p.order[1:]
	if rr := p.rooms[k.room]; rr != nil {
		if k.seq != 0 {
			if rr.deleted[k.seq] <= 1 {
				delete(rr.deleted, k.seq)
			} else {
				rr.deleted[k.seq]--
			}
		} else if len(rr.purges) > 0 {
			rr.purges = rr.purges[1:]
		}
		if len(rr.purges) == 0 && len(rr.deleted) == 0 {
			delete(p.rooms, k.room)
		}
	}
	p.n.Store(int64(len(p.order)))
}

// mark sets Deleted on the messages of room that a remembered purge or
// delete covers and reports how many it set.
func (p *retractMemory) mark(room string, msgs []protocol.Message) int {
	if p.n.Load() == 0 {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	rr := p.rooms[room]
	if rr == nil {
		return 0
	}
	n := 0
	for i := range msgs {
		m := &msgs[i]
		if m.Deleted {
			continue
		}
		if rr.deleted[m.Seq] > 0 {
			m.Deleted = true
			n++
			continue
		}
		for _, k := range rr.purges {
			if m.UID == k.uid && m.TS < k.untilMs {
				m.Deleted = true
				n++
				break
			}
		}
	}
	return n
}

// live returns msgs without the deleted ones, in a new slice.
func live(msgs []protocol.Message) []protocol.Message {
	out := make([]protocol.Message, 0, len(msgs))
	for _, m := range msgs {
		if !m.Deleted {
			out = append(out, m)
		}
	}
	return out
}
