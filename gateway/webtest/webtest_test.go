package webtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
)

// need returns the path of a required tool. A missing tool skips the test,
// or fails it under CI=true.
func need(t *testing.T, what, path string) string {
	t.Helper()
	if p, err := exec.LookPath(path); err == nil {
		return p
	}
	msg := fmt.Sprintf("%s not found (%s): install it (deploy/dev/env.sh does)", what, path)
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; under CI a missing tool is a failure")
	}
	t.Skip(msg)
	return ""
}

// run runs a command with output captured; the output is logged.
func run(t *testing.T, ctx context.Context, dir string, env []string, name string, args ...string) error {
	t.Helper()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	cmd.WaitDelay = 2 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	t.Logf("$ %s %s\n%s", name, strings.Join(args, " "), out.String())
	if ctx.Err() != nil {
		return fmt.Errorf("%s: %w", name, ctx.Err())
	}
	return err
}

var npmOnce struct {
	sync.Once
	err error
}

// npmInstall installs the node packages once per test binary when
// node_modules is missing.
func npmInstall(t *testing.T) {
	t.Helper()
	need(t, "npm", "npm")
	npmOnce.Do(func() {
		if _, err := os.Stat("node_modules/playwright-core/package.json"); err == nil {
			if _, err := os.Stat("node_modules/ws/package.json"); err == nil {
				return
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		npmOnce.err = run(t, ctx, ".", nil, "npm", "ci", "--no-audit", "--no-fund")
	})
	if npmOnce.err != nil {
		t.Fatalf("npm ci in gateway/webtest: %v", npmOnce.err)
	}
}

// artifacts returns the directory screenshots go to.
func artifacts(t *testing.T) string {
	dir := os.Getenv("DANMAKU_TEST_ARTIFACTS")
	if dir == "" {
		dir = "out"
	}
	dir, _ = filepath.Abs(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// server is a running `danmaku all`.
type server struct {
	http, ws string // addresses
	secret   string
	log      *bytes.Buffer
}

// startServer builds the binary from the module root and runs it with the
// demo bot off. It is stopped (SIGTERM, then killed) when the test ends.
func startServer(t *testing.T) *server {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "danmaku")
	bctx, bcancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer bcancel()
	if err := run(t, bctx, "../..", nil, "go", "build", "-o", bin, "."); err != nil {
		t.Fatalf("building danmaku: %v", err)
	}
	s := &server{http: freePort(t), ws: freePort(t), secret: "webtest-secret-0123456789", log: new(bytes.Buffer)}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "all", "--http", s.http, "--ws", s.ws, "--jwt-secret", s.secret,
		"--demo=false", "--guests=true", "--drain-timeout", "1s", "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = s.log, s.log
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 5 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cancel() // SIGTERM; killed after WaitDelay
		<-done
		if t.Failed() {
			t.Logf("server log:\n%s", s.log.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get("http://" + s.http + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return s
			}
		}
		select {
		case err := <-done:
			t.Fatalf("danmaku exited before it was ready: %v\n%s", err, s.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("danmaku not ready within 15s\n%s", s.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestViewerInBrowser opens the viewer page in headless Chromium, signs in
// as a guest, sends a message and checks it flies across the stage, that a
// third-party WebSocket client in the same room receives it in a batch,
// that highlighted and paid lines are styled, markup is shown as text, and
// rejects are explained.
func TestViewerInBrowser(t *testing.T) {
	node := need(t, "node", "node")
	chromium := os.Getenv("DANMAKU_TEST_CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	chromium = need(t, "Chromium", chromium)
	npmInstall(t)
	s := startServer(t)

	signer, err := auth.NewSigner(s.secret)
	if err != nil {
		t.Fatal(err)
	}
	service, err := signer.Sign("webtest-bot", "webtest", auth.RoleService, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out := artifacts(t)
	t.Logf("screenshots go to %s", out)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = run(t, ctx, ".", []string{
		"DANMAKU_HTTP=http://" + s.http,
		"DANMAKU_WS=ws://" + s.ws + "/ws",
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
	node := need(t, "node", "node")
	npmInstall(t)
	s := startServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := run(t, ctx, ".", []string{"DANMAKU_HTTP=http://" + s.http, "DANMAKU_WS=ws://" + s.ws + "/ws"}, node, "protocol.mjs")
	if err != nil {
		t.Fatalf("protocol.mjs: %v", err)
	}
}

// TestJSClient runs the unit tests of gateway/web/danmaku.js (node's test
// runner with a scripted WebSocket): exactly-once delivery, gap resume,
// send retries with the same id, kicks and drains.
func TestJSClient(t *testing.T) {
	node := need(t, "node", "node")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := run(t, ctx, ".", nil, node, "--test", "client.test.mjs"); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("danmaku.js tests failed (exit %d)", ee.ExitCode())
		}
		t.Fatal(err)
	}
}
