package logic

import (
	"context"
	"encoding/json"
	"time"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/bus"
)

// runControl applies moderation events to the engine: bans, settings and
// keyword lists. Runs on its own goroutine until ctx is done.
func (l *Logic) runControl(ctx context.Context) {
	bus.FollowControl(ctx, l.cfg.Bus, func(ev bus.Control) { ApplyControl(l.engine, ev) }, nil)
}

// ApplyControl applies one moderation event to an engine. Events that do
// not concern the engine are ignored.
func ApplyControl(e *moderation.Engine, ev bus.Control) {
	switch ev.Op {
	case bus.ControlBan:
		var until time.Time
		if ev.Until > 0 {
			until = time.UnixMilli(ev.Until)
		}
		e.Ban(ev.Room, ev.UID, until)
	case bus.ControlUnban:
		e.Unban(ev.Room, ev.UID)
	case bus.ControlSettings:
		var s moderation.Settings
		if json.Unmarshal(ev.Data, &s) == nil {
			_ = e.SetSettings(ev.Room, s)
		}
	case bus.ControlKeywords:
		var kl moderation.KeywordList
		if json.Unmarshal(ev.Data, &kl) == nil {
			_ = e.SetRoomKeywords(ev.Room, kl)
		}
	}
}
