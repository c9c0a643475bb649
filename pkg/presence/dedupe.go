package presence

import (
	"context"
	"time"
)

// Dedupe remembers message ids for a while so that a sender's retry of a
// message is recognised: the first Remember of a key stores a value (the
// reply given to that send) and every later one within ttl gets that value
// back instead. Implementations are safe for concurrent use, and of any
// number of concurrent Remember calls for one key exactly one stores.
type Dedupe interface {
	// Remember stores val under key for ttl unless key is already stored.
	// When it is, Remember stores nothing and returns the stored value
	// with dup true.
	Remember(ctx context.Context, key string, val []byte, ttl time.Duration) (prev []byte, dup bool, err error)
	// Lookup returns the stored values of keys, in order; nil for a key
	// with no live value.
	Lookup(ctx context.Context, keys ...string) ([][]byte, error)
}
