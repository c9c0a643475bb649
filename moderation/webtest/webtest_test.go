package webtest

import (
	"fmt"
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
	p := testenv.StartPage(t)
	widths := []int{1024, 1440}
	var rooms []string
	for _, w := range widths {
		rooms = append(rooms, fmt.Sprintf("modroom%d", w))
	}
	mod := p.Token(t, "mod-e2e", "Mod E2E", auth.RoleMod, rooms...)
	service := p.Token(t, "dashboard-bot", "bot", auth.RoleService)
	viewer := p.Token(t, "viewer-e2e", "Viewer E2E", auth.RoleViewer)
	for i, width := range widths {
		t.Run(fmt.Sprintf("%dpx", width), func(t *testing.T) {
			p.Script(t, 90*time.Second, "dashboard.mjs",
				"DANMAKU_ROOM="+rooms[i],
				"DANMAKU_MOD_TOKEN="+mod,
				"DANMAKU_VIEWER_TOKEN="+viewer,
				"DANMAKU_SERVICE_TOKEN="+service,
				fmt.Sprintf("DANMAKU_WIDTH=%d", width),
			)
			p.Screenshots(t, fmt.Sprintf("dashboard-%d", width), fmt.Sprintf("dashboard-held-%d", width))
		})
	}
}
