package webtest

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestViewerInBrowser opens the viewer page in headless Chromium, signs in
// as a guest, sends a message and checks it flies across the stage, that a
// third-party WebSocket client in the same room receives it in a batch,
// that highlighted and paid lines are styled, markup is shown as text, and
// rejects are explained.
func TestViewerInBrowser(t *testing.T) {
	node := testenv.Need(t, "node", "node")
	chromium := testenv.Chromium(t)
	testenv.NPMInstall(t, ".", "playwright-core", "ws")
	s := testenv.StartAll(t, "webtest-secret-0123456789")

	signer, err := auth.NewSigner(s.Secret)
	if err != nil {
		t.Fatal(err)
	}
	service, err := signer.Sign("webtest-bot", "webtest", auth.RoleService, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out := testenv.Artifacts(t)
	t.Logf("screenshots go to %s", out)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = testenv.Run(t, ctx, ".", []string{
		"DANMAKU_HTTP=http://" + s.HTTP,
		"DANMAKU_WS=ws://" + s.WS + "/ws",
		"DANMAKU_CHROMIUM=" + chromium,
		"DANMAKU_OUT=" + out,
		"DANMAKU_SERVICE_TOKEN=" + service,
	}, node, "e2e.mjs")
	if err != nil {
		t.Fatalf("e2e.mjs: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "viewer.png")); err != nil {
		t.Errorf("no screenshot: %v", err)
	}
}

// TestProtocolDoc checks statements of docs/protocol.md (handshake
// errors, frames, reject and close codes, limits) against the server with
// node's "ws" package.
func TestProtocolDoc(t *testing.T) {
	node := testenv.Need(t, "node", "node")
	testenv.NPMInstall(t, ".", "playwright-core", "ws")
	s := testenv.StartAll(t, "webtest-secret-0123456789")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := testenv.Run(t, ctx, ".", []string{"DANMAKU_HTTP=http://" + s.HTTP, "DANMAKU_WS=ws://" + s.WS + "/ws"}, node, "protocol.mjs")
	if err != nil {
		t.Fatalf("protocol.mjs: %v", err)
	}
}

// TestJSClient runs the unit tests of gateway/web/danmaku.js (node's test
// runner with a scripted WebSocket): exactly-once delivery, gap resume,
// send retries with the same id, kicks and drains.
func TestJSClient(t *testing.T) {
	node := testenv.Need(t, "node", "node")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := testenv.Run(t, ctx, ".", nil, node, "--test", "client.test.mjs"); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("danmaku.js tests failed (exit %d)", ee.ExitCode())
		}
		t.Fatal(err)
	}
}

// TestViewerPage runs viewer.mjs at 1024 and 1440 px: the empty-room hint,
// the approve/reject outcome reaching a held message's sender, and no two
// danmaku overlapping in a lane during a burst on a busy page.
func TestViewerPage(t *testing.T) {
	node := testenv.Need(t, "node", "node")
	chromium := testenv.Chromium(t)
	testenv.NPMInstall(t, ".", "playwright-core", "ws")
	s := testenv.StartAll(t, "webtest-secret-0123456789")
	signer, err := auth.NewSigner(s.Secret)
	if err != nil {
		t.Fatal(err)
	}
	widths := []int{1024, 1440}
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	var rooms []string
	for _, w := range widths {
		rooms = append(rooms, fmt.Sprintf("viewer%d-%s", w, suffix))
	}
	mod, err := signer.Sign("viewer-test-mod", "Mod", auth.RoleMod, rooms, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	service, err := signer.Sign("viewer-test-bot", "bot", auth.RoleService, nil, time.Hour)
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
				"DANMAKU_CHROMIUM=" + chromium,
				"DANMAKU_OUT=" + out,
				"DANMAKU_ROOM=" + rooms[i],
				"DANMAKU_MOD_TOKEN=" + mod,
				"DANMAKU_SERVICE_TOKEN=" + service,
				fmt.Sprintf("DANMAKU_WIDTH=%d", width),
			}, node, "viewer.mjs")
			if err != nil {
				t.Fatalf("viewer.mjs: %v", err)
			}
			for _, name := range []string{"viewer-empty", "viewer-approved", "viewer-rejected", "viewer-burst"} {
				if _, err := os.Stat(filepath.Join(out, fmt.Sprintf("%s-%d.png", name, width))); err != nil {
					t.Errorf("no screenshot: %v", err)
				}
			}
			t.Logf("screenshots in %s", out)
		})
	}
}
