package webtest

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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

// npmInstall installs the node packages when node_modules is missing.
func npmInstall(t *testing.T) {
	t.Helper()
	need(t, "npm", "npm")
	if _, err := os.Stat("node_modules/playwright-core/package.json"); err == nil {
		if _, err := os.Stat("node_modules/ws/package.json"); err == nil {
			return
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := run(t, ctx, ".", nil, "npm", "ci", "--no-audit", "--no-fund"); err != nil {
		t.Fatalf("npm ci in moderation/webtest: %v", err)
	}
}

// artifacts returns the directory the screenshot goes to.
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
	s := &server{http: freePort(t), ws: freePort(t), secret: "dashboard-webtest-secret-0123456789", log: new(bytes.Buffer)}
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "all", "--http", s.http, "--ws", s.ws, "--jwt-secret", s.secret,
		"--demo=false", "--drain-timeout", "1s", "--log-level", "warn")
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

// TestDashboardInBrowser opens the moderation dashboard in headless
// Chromium with a mod token, watches a viewer's message arrive, deletes it
// (the viewer receives the delete), turns on the hold queue through the
// keyword editor, approves a held message (the viewer receives it in a
// batch, the sender an ack with its seq) and checks the audit log.
func TestDashboardInBrowser(t *testing.T) {
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
	const room = "modroom"
	mod, err := signer.Sign("mod-e2e", "Mod E2E", auth.RoleMod, []string{room}, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	viewer, err := signer.Sign("viewer-e2e", "Viewer E2E", auth.RoleViewer, nil, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	out := artifacts(t)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err = run(t, ctx, ".", []string{
		"DANMAKU_HTTP=http://" + s.http,
		"DANMAKU_WS=ws://" + s.ws + "/ws",
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
