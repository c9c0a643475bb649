package presence

import (
	"context"
	"slices"
	"strings"
	"time"
)

// Ban is a ban or timeout of a user, in one room or everywhere.
type Ban struct {
	// Room is the room the ban applies to; "" is a global ban.
	Room string `json:"room"`
	// UID is the banned user.
	UID string `json:"uid"`
	// Until is when the ban ends; the zero time is a permanent ban.
	Until time.Time `json:"until,omitzero"`
	// Reason is free text shown to moderators and to the user.
	Reason string `json:"reason,omitempty"`
	// By is the moderator (or "system") who issued the ban.
	By string `json:"by,omitempty"`
	// At is when the ban was issued.
	At time.Time `json:"at"`
}

// Active reports whether b is in force at now.
func (b Ban) Active(now time.Time) bool {
	return b.Until.IsZero() || now.Before(b.Until)
}

// Outlasts reports whether b ends no earlier than o; a permanent ban
// outlasts every other.
func (b Ban) Outlasts(o Ban) bool {
	switch {
	case b.Until.IsZero():
		return true
	case o.Until.IsZero():
		return false
	}
	return !b.Until.Before(o.Until)
}

// Bans stores bans and timeouts per room, with "" as the global room.
// A ban whose Until has passed is gone: it is neither reported by Banned
// nor listed. Implementations are safe for concurrent use.
type Bans interface {
	// Ban bans uid in room ("" for everywhere) until the given time (the
	// zero time for ever), replacing any earlier ban of uid in that room.
	Ban(ctx context.Context, room, uid string, until time.Time, reason, by string) error
	// Unban lifts uid's ban in room ("" for the global ban only). Lifting
	// a ban that does not exist is not an error.
	Unban(ctx context.Context, room, uid string) error
	// Banned reports whether uid is banned in room, by a ban of that room
	// or a global one. When both exist it returns the one that ends later.
	Banned(ctx context.Context, room, uid string) (Ban, bool, error)
	// List returns the bans in force in room ("" for the global bans),
	// most recent first. It does not include global bans in a room's list.
	List(ctx context.Context, room string) ([]Ban, error)
}

// SortBans orders bans most recent first, then by UID; List
// implementations use it so every backend lists in the same order.
func SortBans(bs []Ban) {
	slices.SortFunc(bs, func(a, b Ban) int {
		if c := b.At.Compare(a.At); c != 0 {
			return c
		}
		return strings.Compare(a.UID, b.UID)
	})
}
