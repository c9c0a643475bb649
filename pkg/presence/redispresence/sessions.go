package redispresence

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/danmaku-live/danmaku/pkg/presence"
)

// Claim records addr as the holder of (uid, device) with one
// SET PX GET and returns the previous holder ("" if none or addr).
func (c *Client) Claim(ctx context.Context, uid, device, addr string, ttl time.Duration) (string, error) {
	prev, err := c.rdb.SetArgs(ctx, c.sessionKey(uid, device), addr,
		redis.SetArgs{TTL: time.Duration(ms(ttl)) * time.Millisecond, Get: true}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return "", nil
	case err != nil:
		return "", wrap("claim", err)
	case prev == addr:
		return "", nil
	}
	return prev, nil
}

// Refresh extends addr's hold on (uid, device), or returns
// presence.ErrNotHolder when another address holds it.
func (c *Client) Refresh(ctx context.Context, uid, device, addr string, ttl time.Duration) error {
	ok, err := c.refresh.Run(ctx, c.rdb, []string{c.sessionKey(uid, device)}, addr, ms(ttl)).Int()
	if err != nil {
		return wrap("refresh", err)
	}
	if ok == 0 {
		return presence.ErrNotHolder
	}
	return nil
}

// Release deletes (uid, device) if addr holds it (compare-and-delete).
func (c *Client) Release(ctx context.Context, uid, device, addr string) error {
	return wrap("release", c.release.Run(ctx, c.rdb, []string{c.sessionKey(uid, device)}, addr).Err())
}
