package redispresence

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"
)

// Get returns the value under key.
func (c *Client) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := c.rdb.Get(ctx, c.kvKey+key).Bytes()
	switch {
	case errors.Is(err, redis.Nil):
		return nil, false, nil
	case err != nil:
		return nil, false, wrap("get", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

// Put stores val under key, with no expiry.
func (c *Client) Put(ctx context.Context, key string, val []byte) error {
	if val == nil {
		val = []byte{}
	}
	return wrap("put", c.rdb.Set(ctx, c.kvKey+key, val, 0).Err())
}
