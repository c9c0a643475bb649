package redispresence

import (
	"context"
	"time"

	"github.com/redis/go-redis/v9"
)

// Remember stores val under key for ttl unless key exists, in one
// SET NX PX GET (Redis 7.0 or later): the reply is the existing value when
// there is one, and nil when val was stored.
func (c *Client) Remember(ctx context.Context, key string, val []byte, ttl time.Duration) ([]byte, bool, error) {
	if val == nil {
		val = []byte{}
	}
	prev, err := c.rdb.SetArgs(ctx, c.ddKey+key, val,
		redis.SetArgs{Mode: "NX", TTL: time.Duration(ms(ttl)) * time.Millisecond, Get: true}).Bytes()
	return found(prev, err, "remember")
}

// Lookup reads the values of keys with one MGET (presence.Dedupe).
func (c *Client) Lookup(ctx context.Context, keys ...string) ([][]byte, error) {
	if len(keys) == 0 {
		return nil, nil
	}
	full := make([]string, len(keys))
	for i, k := range keys {
		full[i] = c.ddKey + k
	}
	vals, err := c.rdb.MGet(ctx, full...).Result()
	if err != nil {
		return nil, wrap("lookup", err)
	}
	out := make([][]byte, len(keys))
	for i, v := range vals {
		if s, ok := v.(string); ok {
			out[i] = []byte(s)
		}
	}
	return out, nil
}
