// Package presence tracks who is watching: online counts per room across
// every gateway, and the top rooms by viewers.
//
// Each gateway reports its own per-room counts with an expiry and refreshes
// them on a heartbeat; the online count of a room is the sum over the
// gateways whose report has not expired. A gateway that dies stops
// refreshing and its viewers drop out of the count within one expiry,
// without a counter that drifts.
//
// Memory is the embedded default; pkg/presence/redispresence keeps the same
// state in Redis. Both pass the shared suite in pkg/presence/presencetest.
package presence

import (
	"context"
	"errors"
	"time"
)

// Errors.
var (
	ErrClosed = errors.New("presence: closed")
)

// RoomCount is a room and its viewer count.
type RoomCount struct {
	Room   string `json:"room"`
	Online int    `json:"online"`
}

// Presence aggregates per-gateway viewer counts. Implementations are safe
// for concurrent use.
type Presence interface {
	// Report replaces gateway's counts (rooms missing from counts drop to
	// zero for this gateway). They expire after ttl unless reported again.
	Report(ctx context.Context, gateway string, counts map[string]int, ttl time.Duration) error
	// Online returns the number of viewers of room over all live gateways.
	Online(ctx context.Context, room string) (int, error)
	// Top returns up to n rooms with the most viewers, most first.
	Top(ctx context.Context, n int) ([]RoomCount, error)
}

// OnlineManyer is implemented by stores that read the counts of many rooms
// in one call. Gateways refresh the global count of every room they serve
// on each heartbeat, so a store with many rooms should offer it.
type OnlineManyer interface {
	// OnlineMany returns the viewers of each room over all live gateways,
	// in the order of rooms.
	OnlineMany(ctx context.Context, rooms []string) ([]int, error)
}

// OnlineMany returns the counts of rooms from p, in one call when p is an
// OnlineManyer and one Online call per room otherwise.
func OnlineMany(ctx context.Context, p Presence, rooms []string) ([]int, error) {
	if m, ok := p.(OnlineManyer); ok {
		return m.OnlineMany(ctx, rooms)
	}
	out := make([]int, len(rooms))
	for i, r := range rooms {
		n, err := p.Online(ctx, r)
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}
