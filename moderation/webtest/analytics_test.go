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

// TestDashboardAnalytics runs analytics.mjs: a room gets known traffic (12
// published messages of three texts, 3 viewer sends refused by a keyword),
// and the dashboard's analytics panel must chart exactly it: the per-minute
// line adds up to 12, the top phrases are the texts' n-grams, words and
// emoji with their counts, the verdict chart shows the 3 keyword rejects;
// the panel's buttons start and end a stream session.
func TestDashboardAnalytics(t *testing.T) {
	node := testenv.Need(t, "node", "node")
	chromium := testenv.Chromium(t)
	testenv.NPMInstall(t, ".", "playwright-core", "ws")
	s := testenv.StartAll(t, "dashboard-webtest-secret-0123456789")
	signer, err := auth.NewSigner(s.Secret)
	if err != nil {
		t.Fatal(err)
	}
	room := "analytics" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	mod, err := signer.Sign("mod-an", "Mod An", auth.RoleMod, []string{room}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	service, err := signer.Sign("analytics-bot", "bot", auth.RoleService, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := signer.Sign("viewer-an", "Viewer An", auth.RoleViewer, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out := testenv.Artifacts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	err = testenv.Run(t, ctx, ".", []string{
		"DANMAKU_HTTP=http://" + s.HTTP,
		"DANMAKU_WS=ws://" + s.WS + "/ws",
		"DANMAKU_CHROMIUM=" + chromium,
		"DANMAKU_OUT=" + out,
		"DANMAKU_ROOM=" + room,
		"DANMAKU_MOD_TOKEN=" + mod,
		"DANMAKU_VIEWER_TOKEN=" + viewer,
		"DANMAKU_SERVICE_TOKEN=" + service,
	}, node, "analytics.mjs")
	if err != nil {
		t.Fatalf("analytics.mjs: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "dashboard-analytics.png")); err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	t.Logf("screenshot: %s", filepath.Join(out, "dashboard-analytics.png"))
}
