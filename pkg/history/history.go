// Package history stores accepted messages per room, so viewers who join see
// what was just said, viewers who reconnect get exactly the gap after their
// last seq, and recorded streams can replay their danmaku by time.
//
// Memory is the embedded default; pkg/history/chstore keeps history in
// ClickHouse. Both pass the shared suite in pkg/history/historytest.
package history

import (
	"context"
	"errors"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// Errors.
var (
	ErrClosed = errors.New("history: closed")
)

// Filter selects messages of one room. Results are always ascending by seq.
type Filter struct {
	// AfterSeq returns messages with seq > AfterSeq.
	AfterSeq uint64
	// FromMs and ToMs, when non-zero, bound the message time (TS, Unix ms):
	// FromMs <= ts < ToMs.
	FromMs, ToMs int64
	// Limit caps the number of messages. Zero means no limit.
	Limit int
	// Tail returns the newest Limit messages matching the filter instead of
	// the oldest (still in ascending order).
	Tail bool
	// IncludeDeleted also returns deleted messages, marked Deleted.
	IncludeDeleted bool
}

// Store appends and reads messages. Implementations are safe for concurrent
// use. Append is idempotent per (room, seq): writing a message again (a
// redelivery after a crash) leaves one copy.
type Store interface {
	// Append stores messages; each carries its Room and Seq.
	Append(ctx context.Context, msgs []protocol.Message) error
	// Range returns messages of room matching f, ascending by seq.
	Range(ctx context.Context, room string, f Filter) ([]protocol.Message, error)
}

// Deleter is implemented by stores that honour deletions: deleted messages
// are left out of Range unless Filter.IncludeDeleted is set.
type Deleter interface {
	// Delete marks messages of room deleted; it reports how many existed.
	Delete(ctx context.Context, room string, seqs []uint64) (int, error)
	// Purge marks every stored message of uid in room with TS >= sinceMs
	// deleted and returns their seqs: stored now, they were accepted
	// before the purge, also one whose TS is past untilMs because the
	// accepting clock runs ahead. The store remembers the purge, so a
	// message with sinceMs <= TS < untilMs appended later (one
	// accepted before the purge but still on its way to the history
	// writer, or redelivered) is stored deleted too, whichever process
	// appends it (Memory remembers the newest MaxPurgesPerRoom purges of
	// a room, chstore keeps them as long as the messages).
	Purge(ctx context.Context, room, uid string, sinceMs, untilMs int64) ([]uint64, error)
	// EndPurges ends at atMs the reach of the purges of uid in room
	// recorded so far (an unban lifts the ban they came with): a message
	// of uid appended later with TS >= atMs is stored live. Purges
	// recorded after the call are untouched, and so are the messages
	// already stored.
	EndPurges(ctx context.Context, room, uid string, atMs int64) error
}

// MaxPurgesPerRoom is how many purges of a room Memory remembers for the
// messages appended after them; an older one is forgotten first.
const MaxPurgesPerRoom = 256

// purged reports whether m falls in a purge of its room.
func purged(ps []PurgeRange, m *protocol.Message) bool {
	for i := range ps {
		if ps[i].Covers(m) {
			return true
		}
	}
	return false
}

// PurgeRange is one remembered purge: the messages of UID with SinceMs <=
// TS < UntilMs.
type PurgeRange struct {
	UID              string
	SinceMs, UntilMs int64
}

// EndAt returns p cut to end at atMs at the latest.
func (p PurgeRange) EndAt(atMs int64) PurgeRange {
	p.UntilMs = min(p.UntilMs, atMs)
	return p
}

// Covers reports whether the purge covers m (of the purge's room).
func (p PurgeRange) Covers(m *protocol.Message) bool {
	return m.UID == p.UID && m.TS >= p.SinceMs && m.TS < p.UntilMs
}

// LastSeqer is implemented by stores that can tell a room's highest stored
// seq (used to continue seq numbering after a restart).
type LastSeqer interface {
	LastSeq(ctx context.Context, room string) (uint64, error)
}

// ErrNoShared is returned by Unavailable.
var ErrNoShared = errors.New("history: no shared store configured")

// Unavailable is the Store of a process that has no shared history (a
// separate gateway on the in-memory default, which nothing writes to):
// Range fails, so joins and resumes that need more than the gateway's ring
// say complete:false instead of pretending nothing was missed.
type Unavailable struct{}

var _ Store = Unavailable{}

// Append refuses.
func (Unavailable) Append(context.Context, []protocol.Message) error { return ErrNoShared }

// Range fails.
func (Unavailable) Range(context.Context, string, Filter) ([]protocol.Message, error) {
	return nil, ErrNoShared
}
