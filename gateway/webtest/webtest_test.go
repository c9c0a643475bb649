package webtest

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os/exec"
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
	p := testenv.StartPage(t)
	p.Script(t, 60*time.Second, "e2e.mjs",
		"DANMAKU_SERVICE_TOKEN="+p.Token(t, "webtest-bot", "webtest", auth.RoleService))
	p.Screenshots(t, "viewer")
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
	p := testenv.StartPage(t)
	widths := []int{1024, 1440}
	suffix := strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	var rooms []string
	for _, w := range widths {
		rooms = append(rooms, fmt.Sprintf("viewer%d-%s", w, suffix))
	}
	mod := p.Token(t, "viewer-test-mod", "Mod", auth.RoleMod, rooms...)
	service := p.Token(t, "viewer-test-bot", "bot", auth.RoleService)
	for i, width := range widths {
		t.Run(fmt.Sprintf("%dpx", width), func(t *testing.T) {
			p.Script(t, 90*time.Second, "viewer.mjs",
				"DANMAKU_ROOM="+rooms[i],
				"DANMAKU_MOD_TOKEN="+mod,
				"DANMAKU_SERVICE_TOKEN="+service,
				fmt.Sprintf("DANMAKU_WIDTH=%d", width),
			)
			var shots []string
			for _, name := range []string{"viewer-empty", "viewer-approved", "viewer-rejected", "viewer-modes", "viewer-burst"} {
				shots = append(shots, fmt.Sprintf("%s-%d", name, width))
			}
			p.Screenshots(t, shots...)
		})
	}
}

// TestCrossOrigin serves embed/index.html from two other origins, starts
// danmaku with --origins listing one of them, and runs crossorigin.mjs: the
// listed origin's page imports danmaku.js from the danmaku server, reads
// history and online, gets a guest token and chats over the WebSocket; the
// other origin's page is refused by the browser.
func TestCrossOrigin(t *testing.T) {
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
	p := testenv.StartPage(t, "--origins", "https://elsewhere.example, "+allowed)
	service := p.Token(t, "embed-bot", "bot", auth.RoleService)
	room := "embed-" + strconv.FormatInt(time.Now().UnixNano()%1e9, 36)
	seen := "already here " + room
	req, _ := http.NewRequest("POST", "http://"+p.Server.HTTP+"/api/rooms/"+room+"/publish", strings.NewReader(`{"text":"`+seen+`"}`))
	req.Header.Set("Authorization", "Bearer "+service)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("publish: %s", res.Status)
	}
	p.Script(t, 60*time.Second, "crossorigin.mjs",
		"DANMAKU_ALLOWED="+allowed,
		"DANMAKU_REFUSED="+refused,
		"DANMAKU_ROOM="+room,
		"DANMAKU_SEEN="+seen,
	)
	p.Screenshots(t, "crossorigin")
}
