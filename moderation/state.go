package moderation

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/danmaku-live/danmaku/pkg/presence"
)

// StateStore is where moderators' decisions outlive a process: room
// settings and keyword lists in a KV store (written by the API), bans in a
// Bans store. Either may be nil.
type StateStore struct {
	KV   presence.KV
	Bans presence.Bans
}

// RoomLoader loads a room's persisted moderation state into an engine.
// Logic workers and API instances call it the first time they see a room,
// so a restarted or new process applies what moderators decided before it
// started; later changes arrive on the control stream.
type RoomLoader interface {
	LoadRoom(ctx context.Context, room string, e *Engine) error
}

var _ RoomLoader = StateStore{}

// LoadRoom applies the stored settings, keyword list and active bans of
// room (and, for room "", the global bans) to e.
func (s StateStore) LoadRoom(ctx context.Context, room string, e *Engine) error {
	var errs []error
	if s.KV != nil {
		errs = append(errs,
			loadJSON(ctx, s.KV, SettingsKey(room), func(st Settings) error { return e.SetSettings(room, st) }),
			loadJSON(ctx, s.KV, KeywordsKey(room), func(kl KeywordList) error { return e.SetRoomKeywords(room, kl) }))
	}
	if s.Bans != nil {
		bans, err := s.Bans.List(ctx, room)
		if err != nil {
			errs = append(errs, err)
		}
		now := time.Now()
		for _, b := range bans {
			if b.Active(now) {
				e.Ban(room, b.UID, b.Until)
			}
		}
	}
	return errors.Join(errs...)
}

// loadJSON reads key from kv and, when it is there and decodes as a T,
// applies it. A value that does not decode is skipped; the error returned
// is the store's or apply's.
func loadJSON[T any](ctx context.Context, kv presence.KV, key string, apply func(T) error) error {
	b, ok, err := kv.Get(ctx, key)
	if err != nil || !ok {
		return err
	}
	var v T
	if json.Unmarshal(b, &v) != nil {
		return nil
	}
	return apply(v)
}

// roomsLoaded remembers which rooms a RoomLoader has filled, retrying a
// failed load after a while. It is safe for concurrent use.
type roomsLoaded struct {
	mu   sync.Mutex
	done map[string]time.Time // room → zero when loaded, else when to retry
}

// need reports whether room should be loaded now.
func (r *roomsLoaded) need(room string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.done == nil {
		r.done = make(map[string]time.Time)
	}
	retry, seen := r.done[room]
	return !seen || (!retry.IsZero() && now.After(retry))
}

// mark records the outcome of a load.
func (r *roomsLoaded) mark(room string, err error, now time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		r.done[room] = now.Add(5 * time.Second)
		return
	}
	r.done[room] = time.Time{}
}

// EnsureLoaded loads room with l into e once (retrying after a failure at
// most every 5 s). It is for callers that see rooms one at a time.
func (r *roomsLoaded) ensure(ctx context.Context, l RoomLoader, room string, e *Engine) {
	now := time.Now()
	if l == nil || e == nil || !r.need(room, now) {
		return
	}
	r.mark(room, l.LoadRoom(ctx, room, e), now)
}

// Loaded returns a RoomLoader that loads each room at most once (retrying
// failures after 5 s); its LoadRoom never returns an error.
func Loaded(l RoomLoader) RoomLoader { return &onceLoader{inner: l} }

type onceLoader struct {
	inner RoomLoader
	seen  roomsLoaded
}

func (o *onceLoader) LoadRoom(ctx context.Context, room string, e *Engine) error {
	o.seen.ensure(ctx, o.inner, room, e)
	return nil
}

// SettingsKey and KeywordsKey are the KV keys under which a room's
// settings and keyword list are persisted.
func SettingsKey(room string) string { return "settings/" + room }

// KeywordsKey: see SettingsKey.
func KeywordsKey(room string) string { return "keywords/" + room }
