package webtest

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestDashboardInBrowser opens the moderation dashboard in headless
// Chromium with a mod token, watches a viewer's message arrive, deletes it
// (the viewer receives the delete), turns on the hold queue through the
// keyword editor, approves a held message (the viewer receives it in a
// batch, the sender an ack with its seq) and checks the audit log.
func TestDashboardInBrowser(t *testing.T) {
	node := testenv.Need(t, "node", "node")
	chromium := testenv.Chromium(t)
	testenv.NPMInstall(t, ".", "playwright-core", "ws")
	s := testenv.StartAll(t, "dashboard-webtest-secret-0123456789")

	signer, err := auth.NewSigner(s.Secret)
	if err != nil {
		t.Fatal(err)
	}
	const room = "modroom"
	mod, err := signer.Sign("mod-e2e", "Mod E2E", auth.RoleMod, []string{room}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := signer.Sign("viewer-e2e", "Viewer E2E", auth.RoleViewer, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out := testenv.Artifacts(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = testenv.Run(t, ctx, ".", []string{
		"DANMAKU_HTTP=http://" + s.HTTP,
		"DANMAKU_WS=ws://" + s.WS + "/ws",
		"DANMAKU_CHROMIUM=" + chromium,
		"DANMAKU_OUT=" + out,
		"DANMAKU_ROOM=" + room,
		"DANMAKU_MOD_TOKEN=" + mod,
		"DANMAKU_VIEWER_TOKEN=" + viewer,
	}, node, "dashboard.mjs")
	if err != nil {
		t.Fatalf("dashboard.mjs: %v", err)
	}
	shot := filepath.Join(out, "dashboard.png")
	if _, err := os.Stat(shot); err != nil {
		t.Fatalf("no screenshot: %v", err)
	}
	t.Logf("screenshot: %s", shot)
}
