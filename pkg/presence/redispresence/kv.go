package redispresence

import "context"

// Get returns the value under key.
func (c *Client) Get(ctx context.Context, key string) ([]byte, bool, error) {
	v, err := c.rdb.Get(ctx, c.kvKey+key).Bytes()
	return found(v, err, "get")
}

// Put stores val under key, with no expiry.
func (c *Client) Put(ctx context.Context, key string, val []byte) error {
	if val == nil {
		val = []byte{}
	}
	return wrap("put", c.rdb.Set(ctx, c.kvKey+key, val, 0).Err())
}
