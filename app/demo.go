package app

import (
	"context"
	"math/rand/v2"
	"strconv"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
)

// runDemo posts lines to the demo room so a fresh `make run` shows
// danmaku flying. Runs until ctx is done.
func (a *App) runDemo(ctx context.Context) error {
	lines := []string{
		"666", "前方高能!", "hello from the demo room 👋", "GG", "what a play!", "awsl", "哈哈哈哈哈",
		"弹幕护体", "lol", "first time here, love it", "こんにちは", "nice!", "🔥🔥🔥", "up up up", "打卡",
		"that was close", "clip it!", "where is everyone from?", "wow", "草",
	}
	names := []string{"mika", "lee", "ana", "kenji", "ola", "ravi", "zoe", "tomas"}
	pub := a.bus.Publisher(bus.StreamIngest)
	n := 0
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Duration(400+rand.IntN(800)) * time.Millisecond):
		}
		n++
		name := names[rand.IntN(len(names))]
		in := bus.Ingest{Room: "demo", ID: "demo-" + strconv.Itoa(n) + "-" + strconv.FormatInt(time.Now().UnixNano(), 36),
			UID: "demo-" + name, Name: name, Role: auth.RoleService, Text: lines[rand.IntN(len(lines))],
			TS: time.Now().UnixMilli(), Trusted: true}
		if n%15 == 0 {
			in.Kind, in.Color, in.Text = "highlight", "#ffcc00", "★ thanks for watching the demo ★"
		}
		v, _ := bus.Marshal(in)
		if err := pub.Publish(ctx, bus.Record{Key: in.Room, Value: v}); err != nil && ctx.Err() == nil {
			a.log.Warn("demo publish failed", "err", err)
		}
	}
}
