package webtest

import (
	"strconv"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestOverlayPage runs overlay.mjs: the OBS overlay renders danmaku on a
// transparent page without any control, honours its options (font size,
// opacity, kinds) and display modes, takes a deleted message off the
// screen when the delete arrives (also one still queued) and a banned
// user's messages when the purge arrives, and shows what was sent while its
// connection was down once it reconnected by itself.
func TestOverlayPage(t *testing.T) {
	p := testenv.StartPage(t)
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	room, paidRoom := "overlay-"+suffix, "overlaypaid-"+suffix
	p.Script(t, 120*time.Second, "overlay.mjs",
		"DANMAKU_ROOM="+room,
		"DANMAKU_PAID_ROOM="+paidRoom,
		"DANMAKU_MOD_TOKEN="+p.Token(t, "overlay-mod", "Mod", auth.RoleMod, room, paidRoom),
		"DANMAKU_SERVICE_TOKEN="+p.Token(t, "overlay-bot", "bot", auth.RoleService),
		"DANMAKU_VIEWER_TOKEN="+p.Token(t, "overlay-viewer-"+suffix, "viewer", auth.RoleViewer),
		"DANMAKU_VIEWER_UID=overlay-viewer-"+suffix,
	)
	p.Screenshots(t, "overlay", "overlay-deleted", "overlay-paid-only")
}
