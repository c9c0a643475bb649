package webtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
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
			for _, name := range []string{"viewer-empty", "viewer-approved", "viewer-rejected", "viewer-modes", "viewer-burst"} {
				if _, err := os.Stat(filepath.Join(out, fmt.Sprintf("%s-%d.png", name, width))); err != nil {
					t.Errorf("no screenshot: %v", err)
				}
			}
			t.Logf("screenshots in %s", out)
		})
	}
}

// TestCrossOrigin serves embed/index.html from two other origins, starts
// danmaku with --origins listing one of them, and runs crossorigin.mjs: the
// listed origin's page imports danmaku.js from the danmaku server, reads
// history and online, gets a guest token and chats over the WebSocket; the
// other origin's page is refused by the browser.
func TestCrossOrigin(t *testing.T) {
	node := testenv.Need(t, "node", "node")
	chromium := testenv.Chromium(t)
	testenv.NPMInstall(t, ".", "playwright-core", "ws")
	pages := http.FileServer(http.Dir("embed"))
	var origins []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := &http.Server{Handler: pages, ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = srv.Serve(ln) }()
		t.Cleanup(func() { _ = srv.Close() })
		origins = append(origins, "http://"+ln.Addr().String())
	}
	allowed, refused := origins[0], origins[1]
	s := testenv.StartAll(t, "webtest-secret-0123456789", "--origins", "https://elsewhere.example, "+allowed)
	signer, err := auth.NewSigner(s.Secret)
	if err != nil {
		t.Fatal(err)
	}
	service, err := signer.Sign("embed-bot", "bot", auth.RoleService, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	room := "embed-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	seen := "already here " + room
	req, _ := http.NewRequest("POST", "http://"+s.HTTP+"/api/rooms/"+room+"/publish", strings.NewReader(`{"text":"`+seen+`"}`))
	req.Header.Set("Authorization", "Bearer "+service)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("publish: %s", res.Status)
	}
	out := testenv.Artifacts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = testenv.Run(t, ctx, ".", []string{
		"DANMAKU_HTTP=http://" + s.HTTP,
		"DANMAKU_CHROMIUM=" + chromium,
		"DANMAKU_OUT=" + out,
		"DANMAKU_ALLOWED=" + allowed,
		"DANMAKU_REFUSED=" + refused,
		"DANMAKU_ROOM=" + room,
		"DANMAKU_SEEN=" + seen,
	}, node, "crossorigin.mjs")
	if err != nil {
		t.Fatalf("crossorigin.mjs: %v", err)
	}
	if _, err := os.Stat(filepath.Join(out, "crossorigin.png")); err != nil {
		t.Errorf("no screenshot: %v", err)
	}
}
