package presence

import "context"

// KV is a small shared key-value store for room settings and keyword
// lists: values of a few kilobytes, read often, written rarely.
// Implementations are safe for concurrent use.
type KV interface {
	// Get returns the value stored under key and whether there is one.
	Get(ctx context.Context, key string) (val []byte, ok bool, err error)
	// Put stores val under key, replacing any previous value. A nil val
	// stores an empty value; it does not delete the key.
	Put(ctx context.Context, key string, val []byte) error
}
