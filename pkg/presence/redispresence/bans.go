package redispresence

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/danmaku-live/danmaku/pkg/presence"
)

// Bans are kept as one hash per room, uid → Ban JSON. Expiry is checked on
// read: Banned and List skip bans whose Until has passed (by the reader's
// clock) and delete them with a compare-and-delete script.

// Ban records a ban of uid in room with HSET.
func (c *Client) Ban(ctx context.Context, room, uid string, until time.Time, reason, by string) error {
	b := presence.Ban{Room: room, UID: uid, Until: until, Reason: reason, By: by, At: time.Now()}
	js, err := json.Marshal(b)
	if err != nil {
		return fmt.Errorf("redispresence: ban: %w", err)
	}
	return wrap("ban", c.rdb.HSet(ctx, c.bansKey+room, uid, js).Err())
}

// Unban lifts uid's ban in room with HDEL.
func (c *Client) Unban(ctx context.Context, room, uid string) error {
	return wrap("unban", c.rdb.HDel(ctx, c.bansKey+room, uid).Err())
}

// Banned reads uid's room and global bans in one round trip (one script,
// so a silent Redis costs one read timeout, not one per pipelined command)
// and reports the one in force that ends later.
func (c *Client) Banned(ctx context.Context, room, uid string) (presence.Ban, bool, error) {
	keys := []string{c.bansKey + room}
	rooms := []string{room}
	if room != "" {
		keys = append(keys, c.bansKey)
		rooms = append(rooms, "")
	}
	res, err := c.banned.RunRO(ctx, c.rdb, keys, uid).Slice()
	if err != nil {
		return presence.Ban{}, false, wrap("banned", err)
	}
	now := time.Now()
	var best presence.Ban
	found := false
	var stale []staleBan
	for i, v := range res {
		raw, ok := v.(string)
		if !ok || i >= len(rooms) {
			continue // nil: no ban
		}
		b, err := decodeBan(raw)
		if err != nil {
			return presence.Ban{}, false, err
		}
		if !b.Active(now) {
			stale = append(stale, staleBan{rooms[i], uid, raw})
			continue
		}
		if !found || b.Outlasts(best) {
			best, found = b, true
		}
	}
	c.prune(ctx, stale)
	return best, found, nil
}

// List returns room's bans in force, most recent first.
func (c *Client) List(ctx context.Context, room string) ([]presence.Ban, error) {
	all, err := c.rdb.HGetAll(ctx, c.bansKey+room).Result()
	if err != nil {
		return nil, wrap("list", err)
	}
	now := time.Now()
	out := make([]presence.Ban, 0, len(all))
	var stale []staleBan
	for uid, raw := range all {
		b, err := decodeBan(raw)
		if err != nil {
			return nil, err
		}
		if !b.Active(now) {
			stale = append(stale, staleBan{room, uid, raw})
			continue
		}
		out = append(out, b)
	}
	c.prune(ctx, stale)
	presence.SortBans(out)
	return out, nil
}

// staleBan is an expired ban as read, to be deleted if still unchanged.
type staleBan struct{ room, uid, raw string }

// prune deletes expired bans in one round trip. Failing to prune is
// harmless (they are skipped on read), so errors are dropped.
func (c *Client) prune(ctx context.Context, stale []staleBan) {
	if len(stale) == 0 {
		return
	}
	_, _ = c.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for _, s := range stale {
			c.unset.Eval(ctx, p, []string{c.bansKey + s.room}, s.uid, s.raw)
		}
		return nil
	})
}

func decodeBan(raw string) (presence.Ban, error) {
	var b presence.Ban
	if err := json.Unmarshal([]byte(raw), &b); err != nil {
		return b, fmt.Errorf("redispresence: decode ban: %w", err)
	}
	return b, nil
}
