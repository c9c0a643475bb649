package redispresence

import (
	"context"
	"fmt"
	"time"

	"github.com/danmaku-live/danmaku/pkg/presence"
)

// Report replaces gateway's counts in one round trip; they expire after
// ttl. Rooms with no viewers are not stored.
func (c *Client) Report(ctx context.Context, gateway string, counts map[string]int, ttl time.Duration) error {
	args := make([]any, 0, 2+2*len(counts))
	args = append(args, ms(ttl), gateway)
	for room, n := range counts {
		if n > 0 {
			args = append(args, room, n)
		}
	}
	err := c.report.Run(ctx, c.rdb, []string{c.gwKey + gateway, c.gwsKey}, args...).Err()
	return wrap("report", err)
}

// Online sums room's viewers over live gateways in one round trip.
func (c *Client) Online(ctx context.Context, room string) (int, error) {
	n, err := c.online.RunRO(ctx, c.rdb, []string{c.gwsKey}, c.gwKey, room).Int()
	if err != nil {
		return 0, wrap("online", err)
	}
	return n, nil
}

// onlineManyChunk is the most rooms one OnlineMany script call reads; more
// rooms take one round trip per chunk, so no single call holds Redis long.
const onlineManyChunk = 500

// OnlineMany sums each room's viewers over live gateways: one round trip
// per 500 rooms, costing one HMGET per live gateway.
func (c *Client) OnlineMany(ctx context.Context, rooms []string) ([]int, error) {
	out := make([]int, 0, len(rooms))
	args := make([]any, 0, 1+min(len(rooms), onlineManyChunk))
	for len(rooms) > 0 {
		chunk := rooms[:min(len(rooms), onlineManyChunk)]
		rooms = rooms[len(chunk):]
		args = append(args[:0], c.gwKey)
		for _, r := range chunk {
			args = append(args, r)
		}
		res, err := c.onlineMany.RunRO(ctx, c.rdb, []string{c.gwsKey}, args...).Int64Slice()
		if err != nil {
			return nil, wrap("online many", err)
		}
		if len(res) != len(chunk) {
			return nil, fmt.Errorf("redispresence: online many: %d counts for %d rooms", len(res), len(chunk))
		}
		for _, n := range res {
			out = append(out, int(n))
		}
	}
	return out, nil
}

// Top returns up to n rooms with the most viewers (all rooms if n <= 0),
// most first, ties by room name. See the package documentation for its
// cost.
func (c *Client) Top(ctx context.Context, n int) ([]presence.RoomCount, error) {
	res, err := c.top.RunRO(ctx, c.rdb, []string{c.gwsKey}, c.gwKey, n).Slice()
	if err != nil {
		return nil, wrap("top", err)
	}
	out := make([]presence.RoomCount, 0, len(res)/2)
	for i := 0; i+1 < len(res); i += 2 {
		room, ok := res[i].(string)
		cnt, ok2 := res[i+1].(int64)
		if !ok || !ok2 {
			return nil, fmt.Errorf("redispresence: top: unexpected reply %T, %T", res[i], res[i+1])
		}
		out = append(out, presence.RoomCount{Room: room, Online: int(cnt)})
	}
	return out, nil
}
