package webtest

import (
	"context"
	"fmt"
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
// batch, the sender an ack with its seq) and checks the audit log. It runs
// at 1024 and 1440 px and measures the layout: an 80-rune held message on
// at most two lines with approve and reject on screen, ban reasons that read
// as sentences, the feed following its newest line, the toast clear of the
// Save button.
func TestDashboardInBrowser(t *testing.T) {
	node := testenv.Need(t, "node", "node")
	chromium := testenv.Chromium(t)
	testenv.NPMInstall(t, ".", "playwright-core", "ws")
	s := testenv.StartAll(t, "dashboard-webtest-secret-0123456789")

	signer, err := auth.NewSigner(s.Secret)
	if err != nil {
		t.Fatal(err)
	}
	widths := []int{1024, 1440}
	var rooms []string
	for _, w := range widths {
		rooms = append(rooms, fmt.Sprintf("modroom%d", w))
	}
	mod, err := signer.Sign("mod-e2e", "Mod E2E", auth.RoleMod, rooms, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	service, err := signer.Sign("dashboard-bot", "bot", auth.RoleService, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := signer.Sign("viewer-e2e", "Viewer E2E", auth.RoleViewer, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out := testenv.Artifacts(t)

	for i, width := range widths {
		t.Run(fmt.Sprintf("%dpx", width), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			err := testenv.Run(t, ctx, ".", []string{
				"DANMAKU_HTTP=http://" + s.HTTP,
				"DANMAKU_WS=ws://" + s.WS + "/ws",
				"DANMAKU_CHROMIUM=" + chromium,
				"DANMAKU_OUT=" + out,
				"DANMAKU_ROOM=" + rooms[i],
				"DANMAKU_MOD_TOKEN=" + mod,
				"DANMAKU_VIEWER_TOKEN=" + viewer,
				"DANMAKU_SERVICE_TOKEN=" + service,
				fmt.Sprintf("DANMAKU_WIDTH=%d", width),
			}, node, "dashboard.mjs")
			if err != nil {
				t.Fatalf("dashboard.mjs: %v", err)
			}
			for _, name := range []string{"dashboard", "dashboard-held"} {
				shot := filepath.Join(out, fmt.Sprintf("%s-%d.png", name, width))
				if _, err := os.Stat(shot); err != nil {
					t.Fatalf("no screenshot: %v", err)
				}
				t.Logf("screenshot: %s", shot)
			}
		})
	}
}
