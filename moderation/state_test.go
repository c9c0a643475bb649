package moderation

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/presence"
)

// failingKV is a KV whose reads fail.
type failingKV struct{ presence.KV }

func (failingKV) Get(context.Context, string) ([]byte, bool, error) {
	return nil, false, errors.New("kv down")
}

// TestLoadRoom: the stored settings, keyword list and active bans of a
// room reach the engine; an undecodable value is skipped; a store that
// fails is reported and the rest still loads.
func TestLoadRoom(t *testing.T) {
	ctx := context.Background()
	kv, bans := presence.NewMemoryKV(), presence.NewMemoryBans()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(kv.Put(ctx, SettingsKey("r"), []byte(`{"max_length": 42}`)))
	must(kv.Put(ctx, KeywordsKey("r"), []byte(`{"keywords": ["spoiler"], "action": "hold"}`)))
	must(kv.Put(ctx, SettingsKey("bad"), []byte(`not json`)))
	until := time.Now().Add(time.Hour)
	must(bans.Ban(ctx, "r", "troll", until, "spam", "mod"))

	e, err := New(Config{Logger: slog.New(slog.DiscardHandler)})
	must(err)
	must(StateStore{KV: kv, Bans: bans}.LoadRoom(ctx, "r", e))
	if got := e.Settings("r").MaxLength; got != 42 {
		t.Errorf("MaxLength = %d, want 42 (stored)", got)
	}
	if kl := e.RoomKeywords("r"); !slices.Equal(kl.Words, []string{"spoiler"}) || kl.Action != "hold" {
		t.Errorf("keywords = %+v, want the stored list", kl)
	}
	if _, ok := e.Banned("r", "troll", time.Now()); !ok {
		t.Error("the stored ban was not applied")
	}
	must(StateStore{KV: kv}.LoadRoom(ctx, "bad", e))
	if got, def := e.Settings("bad").MaxLength, e.Settings("other").MaxLength; got != def {
		t.Errorf("undecodable settings: MaxLength = %d, want the default %d", got, def)
	}

	e2, err := New(Config{Logger: slog.New(slog.DiscardHandler)})
	must(err)
	err = StateStore{KV: failingKV{kv}, Bans: bans}.LoadRoom(ctx, "r", e2)
	if err == nil || err.Error() != "kv down\nkv down" {
		t.Errorf("LoadRoom over a failing KV = %v, want both reads' errors", err)
	}
	if _, ok := e2.Banned("r", "troll", time.Now()); !ok {
		t.Error("bans did not load when the KV failed")
	}
}
