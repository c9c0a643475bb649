// The gateway's memory of recent purges: the dispatch goroutine drops the purged messages that arrive after their purge; written by the control goroutine.

package gateway

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// A purge (a ban's retraction of a user's messages) reaches the gateway on
// the control stream, and the user's messages accepted just before the ban
// on the dispatch stream: either may come first. purgeMemory remembers each
// purge for purgeKeep after its end, so a message of the user with a ts
// before the purge's until that arrives afterwards goes into the ring
// deleted and is never shown live nor to joiners.
const (
	// purgeKeep is how long after its until a purge is remembered: far
	// longer than a message takes from logic to the gateways (tens of ms
	// when healthy, seconds when the bus lags).
	purgeKeep = 5 * time.Minute
	// maxPurgeMarks bounds the memory (about 100 bytes a purge); past it
	// the oldest purge is forgotten first.
	maxPurgeMarks = 10000
)

// purgeMark is one remembered purge of a room.
type purgeMark struct {
	uid     string
	untilMs int64
}

// purgeKey names a mark in the eviction order.
type purgeKey struct {
	room    string
	expires time.Time
}

// purgeMemory holds the recent purges per room. Its methods are safe for
// concurrent use; mu is a leaf lock (taken under room.mu by dispatch).
// The zero value is not usable: see newPurgeMemory.
type purgeMemory struct {
	n     atomic.Int64 // marks held: 0 lets dispatch skip the lock
	mu    sync.Mutex
	rooms map[string][]purgeMark // per room, oldest first
	order []purgeKey             // every mark, oldest first
}

func newPurgeMemory() *purgeMemory {
	return &purgeMemory{rooms: make(map[string][]purgeMark)}
}

// add remembers that uid's messages in room with ts < untilMs are purged.
func (p *purgeMemory) add(room, uid string, untilMs int64, now time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.expireLocked(now)
	if len(p.order) >= maxPurgeMarks {
		p.dropOldestLocked()
	}
	expires := time.UnixMilli(max(untilMs, now.UnixMilli())).Add(purgeKeep)
	p.rooms[room] = append(p.rooms[room], purgeMark{uid: uid, untilMs: untilMs})
	p.order = append(p.order, purgeKey{room: room, expires: expires})
	p.n.Store(int64(len(p.order)))
}

// expireLocked forgets the marks past their time. Marks are added in
// order of arrival and expire purgeKeep after their until, so the front
// of order is nearly always the first to expire; a later one that expires
// sooner waits for it, which only keeps it longer. mu must be held.
func (p *purgeMemory) expireLocked(now time.Time) {
	for len(p.order) > 0 && now.After(p.order[0].expires) {
		p.dropOldestLocked()
	}
}

// dropOldestLocked forgets the oldest mark. mu must be held.
func (p *purgeMemory) dropOldestLocked() {
	k := p.order[0]
	p.order = p.order[1:]
	if ms := p.rooms[k.room]; len(ms) <= 1 {
		delete(p.rooms, k.room)
	} else {
		p.rooms[k.room] = ms[1:]
	}
	p.n.Store(int64(len(p.order)))
}

// mark sets Deleted on the messages of room that a remembered purge
// covers and reports how many it set.
func (p *purgeMemory) mark(room string, msgs []protocol.Message) int {
	if p.n.Load() == 0 {
		return 0
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	marks := p.rooms[room]
	if len(marks) == 0 {
		return 0
	}
	n := 0
	for i := range msgs {
		m := &msgs[i]
		for _, k := range marks {
			if !m.Deleted && m.UID == k.uid && m.TS < k.untilMs {
				m.Deleted = true
				n++
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
