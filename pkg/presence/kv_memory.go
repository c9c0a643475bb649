package presence

import (
	"bytes"
	"context"
	"sync"
)

var _ KV = (*MemoryKV)(nil)

// MemoryKV is the embedded key-value store. It is safe for concurrent use;
// the zero value is not usable, call NewMemoryKV. Values are copied on the
// way in and out, so callers may reuse their slices.
type MemoryKV struct {
	mu sync.RWMutex // guards m
	m  map[string][]byte
}

// NewMemoryKV returns an empty in-memory key-value store.
func NewMemoryKV() *MemoryKV {
	return &MemoryKV{m: make(map[string][]byte)}
}

// Get returns a copy of the value under key.
func (s *MemoryKV) Get(ctx context.Context, key string) ([]byte, bool, error) {
	s.mu.RLock()
	v, ok := s.m[key]
	s.mu.RUnlock()
	if !ok {
		return nil, false, nil
	}
	return bytes.Clone(v), true, nil
}

// Put stores a copy of val under key.
func (s *MemoryKV) Put(ctx context.Context, key string, val []byte) error {
	cp := append([]byte{}, val...)
	s.mu.Lock()
	s.m[key] = cp
	s.mu.Unlock()
	return nil
}
