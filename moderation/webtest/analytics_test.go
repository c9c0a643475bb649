package webtest

import (
	"strconv"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestDashboardAnalytics runs analytics.mjs: a room gets known traffic (12
// published messages of three texts, 3 viewer sends refused by a keyword),
// and the dashboard's analytics panel must chart exactly it: the per-minute
// line adds up to 12, the top phrases are the texts' n-grams, words and
// emoji with their counts, the verdict chart shows the 3 keyword rejects;
// the panel's buttons start and end a stream session.
func TestDashboardAnalytics(t *testing.T) {
	p := testenv.StartPage(t)
	room := "analytics" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	p.Script(t, 120*time.Second, "analytics.mjs",
		"DANMAKU_ROOM="+room,
		"DANMAKU_MOD_TOKEN="+p.Token(t, "mod-an", "Mod An", auth.RoleMod, room),
		"DANMAKU_VIEWER_TOKEN="+p.Token(t, "viewer-an", "Viewer An", auth.RoleViewer),
		"DANMAKU_SERVICE_TOKEN="+p.Token(t, "analytics-bot", "bot", auth.RoleService),
	)
	p.Screenshots(t, "dashboard-analytics")
}
