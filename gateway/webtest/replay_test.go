package webtest

import (
	"strconv"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestReplayPage runs replay.mjs: a stream session is recorded through the
// API (messages published over ~12 s, one deleted), then the replay page
// opens it by id and is sampled while it plays: every danmaku on screen is
// at the x its ts gives at the sampled playhead, exactly the messages of
// the last 8 s of replay time are on screen, the deleted one never is;
// pause holds the clock, 2× runs it twice as fast, a click on the density
// bar seeks there and reads history from there in bounded pages.
func TestReplayPage(t *testing.T) {
	p := testenv.StartPage(t)
	room := "replay-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	p.Script(t, 120*time.Second, "replay.mjs",
		"DANMAKU_ROOM="+room,
		"DANMAKU_STREAMER_TOKEN="+p.Token(t, "replay-host", "Host", auth.RoleStreamer, room),
		"DANMAKU_SERVICE_TOKEN="+p.Token(t, "replay-bot", "bot", auth.RoleService),
	)
	p.Screenshots(t, "replay-playing", "replay-seeked")
}
