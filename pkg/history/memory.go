package history

import (
	"context"
	"sort"
	"sync"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

var (
	_ Store      = (*Memory)(nil)
	_ Deleter    = (*Memory)(nil)
	_ LastSeqer  = (*Memory)(nil)
	_ Sessions   = (*Memory)(nil)
	_ Analytics  = (*Memory)(nil)
	_ VerdictLog = (*Memory)(nil)
)

// MemoryConfig configures the in-memory store.
type MemoryConfig struct {
	// PerRoom is how many of the newest messages each room keeps.
	// Zero value means 10000.
	PerRoom int
	// MaxRooms bounds the rooms kept; the least recently written room is
	// dropped past it. Zero value means 100000.
	MaxRooms int
}

// Memory keeps the newest messages of each room in memory. It is safe for
// concurrent use.
type Memory struct {
	cfg   MemoryConfig
	mu    sync.RWMutex // guards rooms, clock, purges
	rooms map[string]*memRoom
	clock uint64 // write counter for least-recently-written eviction

	// purges are the rooms' remembered purges, applied by Append to what
	// comes later (at most MaxPurgesPerRoom a room, MaxRooms rooms).
	purges map[string][]PurgeRange

	smu      sync.Mutex // guards sessions, verdicts
	sessions map[string][]Session
	verdicts map[string]map[verdictKey]int64
}

type verdictKey struct {
	minute       int64
	action, rule string
}

type memRoom struct {
	msgs    []protocol.Message // ascending by seq
	written uint64
}

// NewMemory returns an in-memory store.
func NewMemory(cfg MemoryConfig) *Memory {
	if cfg.PerRoom <= 0 {
		cfg.PerRoom = 10000
	}
	if cfg.MaxRooms <= 0 {
		cfg.MaxRooms = 100000
	}
	return &Memory{cfg: cfg, rooms: make(map[string]*memRoom), purges: make(map[string][]PurgeRange), sessions: make(map[string][]Session),
		verdicts: make(map[string]map[verdictKey]int64)}
}

// Append stores msgs. Messages whose (room, seq) is already stored are
// ignored; messages a remembered purge covers are stored deleted.
func (m *Memory) Append(ctx context.Context, msgs []protocol.Message) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, msg := range msgs {
		msg.Deleted = msg.Deleted || purged(m.purges[msg.Room], &msg)
		r := m.rooms[msg.Room]
		if r == nil {
			if len(m.rooms) >= m.cfg.MaxRooms {
				m.evictLocked()
			}
			r = &memRoom{}
			m.rooms[msg.Room] = r
		}
		m.clock++
		r.written = m.clock
		n := len(r.msgs)
		switch {
		case n == 0 || r.msgs[n-1].Seq < msg.Seq:
			r.msgs = append(r.msgs, msg)
		default:
			i := sort.Search(n, func(i int) bool { return r.msgs[i].Seq >= msg.Seq })
			if i < n && r.msgs[i].Seq == msg.Seq {
				continue // duplicate
			}
			r.msgs = append(r.msgs, protocol.Message{})
			copy(r.msgs[i+1:], r.msgs[i:])
			r.msgs[i] = msg
		}
		if len(r.msgs) > m.cfg.PerRoom+m.cfg.PerRoom/4 {
			drop := len(r.msgs) - m.cfg.PerRoom
			r.msgs = append(r.msgs[:0:0], r.msgs[drop:]...)
		}
	}
	return nil
}

func (m *Memory) evictLocked() {
	var oldest string
	var at uint64
	for name, r := range m.rooms {
		if oldest == "" || r.written < at {
			oldest, at = name, r.written
		}
	}
	delete(m.rooms, oldest)
}

// Range returns messages of room matching f, ascending by seq.
func (m *Memory) Range(ctx context.Context, room string, f Filter) ([]protocol.Message, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[room]
	if r == nil {
		return nil, nil
	}
	start := sort.Search(len(r.msgs), func(i int) bool { return r.msgs[i].Seq > f.AfterSeq })
	var out []protocol.Message
	match := func(msg *protocol.Message) bool {
		if msg.Deleted && !f.IncludeDeleted {
			return false
		}
		if f.FromMs != 0 && msg.TS < f.FromMs {
			return false
		}
		if f.ToMs != 0 && msg.TS >= f.ToMs {
			return false
		}
		return true
	}
	if f.Tail && f.Limit > 0 {
		for i := len(r.msgs) - 1; i >= start && len(out) < f.Limit; i-- {
			if match(&r.msgs[i]) {
				out = append(out, r.msgs[i])
			}
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
		return out, nil
	}
	for i := start; i < len(r.msgs); i++ {
		if f.Limit > 0 && len(out) >= f.Limit {
			break
		}
		if match(&r.msgs[i]) {
			out = append(out, r.msgs[i])
		}
	}
	return out, nil
}

// Delete marks messages deleted.
func (m *Memory) Delete(ctx context.Context, room string, seqs []uint64) (int, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.rooms[room]
	if r == nil {
		return 0, nil
	}
	n := 0
	for _, seq := range seqs {
		i := sort.Search(len(r.msgs), func(i int) bool { return r.msgs[i].Seq >= seq })
		if i < len(r.msgs) && r.msgs[i].Seq == seq {
			r.msgs[i].Deleted = true
			n++
		}
	}
	return n, nil
}

// Purge marks uid's stored messages in room with TS >= sinceMs deleted,
// and remembers the purge (sinceMs <= TS < untilMs) for the messages
// appended later.
func (m *Memory) Purge(ctx context.Context, room, uid string, sinceMs, untilMs int64) ([]uint64, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := PurgeRange{UID: uid, SinceMs: sinceMs, UntilMs: untilMs}
	if untilMs <= sinceMs {
		return nil, nil
	}
	ps := m.purges[room]
	if ps == nil && len(m.purges) >= m.cfg.MaxRooms {
		m.forgetPurgesLocked()
	}
	if len(ps) >= MaxPurgesPerRoom {
		ps = append(ps[:0:0], ps[len(ps)-MaxPurgesPerRoom+1:]...)
	}
	m.purges[room] = append(ps, p)
	r := m.rooms[room]
	if r == nil {
		return nil, nil
	}
	var seqs []uint64
	for i := range r.msgs {
		// Stored now, the message was accepted before the purge, whatever
		// its TS: until bounds only the later writes.
		if m := &r.msgs[i]; m.UID == uid && m.TS >= sinceMs && !m.Deleted {
			r.msgs[i].Deleted = true
			seqs = append(seqs, r.msgs[i].Seq)
		}
	}
	return seqs, nil
}

// EndPurges cuts the remembered purges of uid in room to end at atMs.
func (m *Memory) EndPurges(ctx context.Context, room, uid string, atMs int64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ps := m.purges[room]
	for i := range ps {
		if ps[i].UID == uid {
			ps[i] = ps[i].EndAt(atMs)
		}
	}
	return nil
}

// forgetPurgesLocked drops the purges of the room whose newest purge ends
// first.
func (m *Memory) forgetPurgesLocked() {
	var oldest string
	var at int64
	for name, ps := range m.purges {
		if end := ps[len(ps)-1].UntilMs; oldest == "" || end < at {
			oldest, at = name, end
		}
	}
	delete(m.purges, oldest)
}

// LastSeq returns the highest stored seq of room, 0 if none.
func (m *Memory) LastSeq(ctx context.Context, room string) (uint64, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	r := m.rooms[room]
	if r == nil || len(r.msgs) == 0 {
		return 0, nil
	}
	return r.msgs[len(r.msgs)-1].Seq, nil
}
