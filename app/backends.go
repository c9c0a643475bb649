package app

import (
	"context"
	"time"

	"github.com/danmaku-live/danmaku/logic"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/bus/kafkabus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/history/chstore"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/presence/redispresence"
)

// openBackends connects the bus, history and presence backends of
// cfg.Backends (which Validate has checked).
func (a *App) openBackends() error {
	cfg := a.cfg
	b := cfg.Backends
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch {
	case b.Given != nil:
		a.bus = b.Given
	case b.Bus == "kafka":
		kc := b.Kafka
		kc.CreateTopics, kc.Logger = true, a.log
		kb, err := kafkabus.New(ctx, kc)
		if err != nil {
			return err
		}
		a.bus, a.ownBus = kb, true
	default:
		a.bus, a.ownBus = bus.NewMemory(bus.MemoryConfig{}), true
	}
	switch {
	case b.GivenHistory != nil:
		a.history = b.GivenHistory
	case b.History == "clickhouse":
		cc := b.ClickHouse
		cc.Logger = a.log
		st, err := chstore.New(ctx, cc)
		if err != nil {
			return err
		}
		a.history = st
	default:
		a.history = history.NewMemory(history.MemoryConfig{})
		switch {
		case cfg.Role == RoleGateway:
			// Nothing writes a separate gateway's memory store: answer
			// incomplete rather than empty.
			a.history = history.Unavailable{}
			a.log.Warn("gateway without a shared history store: joins and resumes beyond the gateway's memory are answered complete:false; a shared store (Backends.History \"clickhouse\") answers them")
		case (cfg.Role == RoleAll || cfg.Role == RoleLogic) && b.Bus == "kafka":
			a.log.Warn("kafka bus with the memory history store: a quiet room's seq starts again at 1 after a restart; use the clickhouse history (Backends.History) for anything but tests and benchmarks")
		}
	}
	switch b.Presence {
	case "redis":
		rp, err := redispresence.New(ctx, b.Redis)
		if err != nil {
			return err
		}
		// Counts go stale rather than failing while Redis is down; the
		// wrapper's Close closes rp.
		a.presence = presence.NewCachedPresence(rp, presence.CacheConfig{})
		a.sessions = rp
		// Bans and settings are read from a local copy while Redis is down.
		a.bans = presence.NewCachedBans(rp, presence.CacheConfig{})
		a.kv = presence.NewCachedKV(rp, presence.CacheConfig{})
		a.dedupe = rp
	default:
		a.presence = presence.NewMemory()
		a.sessions = presence.NewMemorySessions()
		a.bans = presence.NewMemoryBans()
		a.kv = presence.NewMemoryKV()
		// Rejects apart from accepted ids (a flood of rejects cannot push
		// those out).
		a.dedupe = logic.NewMemoryDedupe()
		if cfg.Role == RoleLogic && b.Bus == "kafka" {
			a.log.Warn("logic with memory presence: a retry that comes after its room moved to another worker, beyond the takeover scan, is not recognised; use redis presence (Backends.Presence)")
		}
	}
	return nil
}

// closeBackends closes the backends that hold connections (not a Given
// bus or GivenHistory store: their owner closes them).
func (a *App) closeBackends() {
	bs := []any{a.presence}
	if a.cfg.Backends.GivenHistory == nil {
		bs = append(bs, a.history)
	}
	if a.ownBus {
		bs = append(bs, a.bus)
	}
	for _, b := range bs {
		if c, ok := b.(interface{ Close() error }); ok {
			_ = c.Close()
		}
	}
}
