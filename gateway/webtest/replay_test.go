package webtest

import (
	"context"
	"os"
	"path/filepath"
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
	node := testenv.Need(t, "node", "node")
	chromium := testenv.Chromium(t)
	testenv.NPMInstall(t, ".", "playwright-core", "ws")
	s := testenv.StartAll(t, "webtest-secret-0123456789")
	signer, err := auth.NewSigner(s.Secret)
	if err != nil {
		t.Fatal(err)
	}
	room := "replay-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	streamer, err := signer.Sign("replay-host", "Host", auth.RoleStreamer, []string{room}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	service, err := signer.Sign("replay-bot", "bot", auth.RoleService, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out := testenv.Artifacts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	err = testenv.Run(t, ctx, ".", []string{
		"DANMAKU_HTTP=http://" + s.HTTP,
		"DANMAKU_CHROMIUM=" + chromium,
		"DANMAKU_OUT=" + out,
		"DANMAKU_ROOM=" + room,
		"DANMAKU_STREAMER_TOKEN=" + streamer,
		"DANMAKU_SERVICE_TOKEN=" + service,
	}, node, "replay.mjs")
	if err != nil {
		t.Fatalf("replay.mjs: %v", err)
	}
	for _, name := range []string{"replay-playing", "replay-seeked"} {
		if _, err := os.Stat(filepath.Join(out, name+".png")); err != nil {
			t.Errorf("no screenshot: %v", err)
		}
	}
	t.Logf("screenshots in %s", out)
}
