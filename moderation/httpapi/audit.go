package httpapi

import (
	"context"
	"sync"
	"time"
)

// Audit actions, the Action of an AuditEntry.
const (
	AuditSettings = "settings" // room settings replaced
	AuditKeywords = "keywords" // keyword list replaced
	AuditBan      = "ban"      // user banned or timed out
	AuditUnban    = "unban"    // ban lifted
	AuditDelete   = "delete"   // message deleted
	AuditApprove  = "approve"  // held message approved
	AuditReject   = "reject"   // held message rejected
)

// AuditEntry is one moderator action.
type AuditEntry struct {
	// At is when the action was taken.
	At time.Time `json:"at"`
	// Room is where.
	Room string `json:"room"`
	// By is the moderator's uid, ByName their display name.
	By     string `json:"by"`
	ByName string `json:"by_name,omitempty"`
	// Action is one of the Audit* constants.
	Action string `json:"action"`
	// UID is the user acted upon, Seq the message, when there is one.
	UID string `json:"uid,omitempty"`
	Seq uint64 `json:"seq,omitempty"`
	// Details describes the action for humans ("timeout 600 s: spam").
	Details string `json:"details,omitempty"`
}

// AuditLog records moderator actions per room. Implementations are safe for
// concurrent use.
type AuditLog interface {
	// Record appends e to its room's log.
	Record(ctx context.Context, e AuditEntry) error
	// List returns up to limit entries of room, newest first.
	List(ctx context.Context, room string, limit int) ([]AuditEntry, error)
}

var _ AuditLog = (*MemoryAudit)(nil)

// MemoryAudit is an AuditLog in memory: a bounded ring per room, in a
// bounded number of rooms (the room written least recently is forgotten
// first). It is safe for concurrent use; use NewMemoryAudit.
type MemoryAudit struct {
	mu       sync.Mutex
	perRoom  int
	maxRooms int
	rooms    map[string]*auditRing
	tick     uint64 // bumps on every write, orders rooms by recency
}

type auditRing struct {
	buf  []AuditEntry // ring; next is the slot written next
	next int
	full bool
	used uint64 // MemoryAudit.tick of the last write
}

// NewMemoryAudit returns a log keeping perRoom entries per room (zero means
// 1,000) in at most maxRooms rooms (zero means 10,000).
func NewMemoryAudit(perRoom, maxRooms int) *MemoryAudit {
	if perRoom <= 0 {
		perRoom = 1000
	}
	if maxRooms <= 0 {
		maxRooms = 10_000
	}
	return &MemoryAudit{perRoom: perRoom, maxRooms: maxRooms, rooms: make(map[string]*auditRing)}
}

// Record appends e; it never fails.
func (m *MemoryAudit) Record(_ context.Context, e AuditEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rooms[e.Room]
	if r == nil {
		if len(m.rooms) >= m.maxRooms {
			m.evictOldest()
		}
		r = &auditRing{buf: make([]AuditEntry, m.perRoom)}
		m.rooms[e.Room] = r
	}
	m.tick++
	r.used = m.tick
	r.buf[r.next] = e
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	return nil
}

// List returns up to limit entries of room, newest first; limit ≤ 0 means
// all of them.
func (m *MemoryAudit) List(_ context.Context, room string, limit int) ([]AuditEntry, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rooms[room]
	if r == nil {
		return []AuditEntry{}, nil
	}
	n := r.next
	if r.full {
		n = len(r.buf)
	}
	if limit > 0 && limit < n {
		n = limit
	}
	out := make([]AuditEntry, 0, n)
	for i, j := 0, r.next-1; i < n; i, j = i+1, j-1 {
		if j < 0 {
			j = len(r.buf) - 1
		}
		out = append(out, r.buf[j])
	}
	return out, nil
}

// evictOldest forgets the room written least recently. m.mu must be held.
func (m *MemoryAudit) evictOldest() {
	var oldest string
	var used uint64
	first := true
	for room, r := range m.rooms {
		if first || r.used < used {
			oldest, used, first = room, r.used, false
		}
	}
	delete(m.rooms, oldest)
}
