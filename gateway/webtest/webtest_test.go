package webtest

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
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
