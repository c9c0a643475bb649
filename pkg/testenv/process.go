package testenv

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Need returns the path of a tool the test needs. A missing tool skips the
// test, or fails it under CI=true.
func Need(t testing.TB, what, path string) string {
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

// Run runs a command in dir with extra environment, logs its combined
// output, and returns its error (ctx's error when ctx ended it).
func Run(t testing.TB, ctx context.Context, dir string, env []string, name string, args ...string) error {
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

var npmDone sync.Map // dir → error (nil when installed)

// NPMInstall runs `npm ci` in dir once per test binary unless every named
// package is already in dir/node_modules.
func NPMInstall(t testing.TB, dir string, pkgs ...string) {
	t.Helper()
	Need(t, "npm", "npm")
	abs, _ := filepath.Abs(dir)
	if v, ok := npmDone.Load(abs); ok {
		if v != nil {
			t.Fatalf("npm ci in %s: %v", abs, v)
		}
		return
	}
	missing := false
	for _, p := range pkgs {
		if _, err := os.Stat(filepath.Join(abs, "node_modules", p, "package.json")); err != nil {
			missing = true
		}
	}
	var err error
	if missing {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		err = Run(t, ctx, abs, nil, "npm", "ci", "--no-audit", "--no-fund")
	}
	if err != nil {
		npmDone.Store(abs, err)
		t.Fatalf("npm ci in %s: %v", abs, err)
	}
	npmDone.Store(abs, nil)
}

// Artifacts returns the directory for files a reviewer should look at
// (screenshots): $DANMAKU_TEST_ARTIFACTS, else "out" under the test's
// package directory.
func Artifacts(t testing.TB) string {
	t.Helper()
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

// FreeAddr returns a loopback host:port that was free a moment ago.
func FreeAddr(t testing.TB) string {
	t.Helper()
	return fmt.Sprintf("127.0.0.1:%d", FreePort(t))
}

var build struct {
	sync.Mutex
	bin string
}

// Binary builds the danmaku binary from the module root once per test
// binary and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	build.Lock()
	defer build.Unlock()
	if build.bin != "" {
		return build.bin
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	root := filepath.Dir(strings.TrimSpace(string(out)))
	if err != nil || root == "." {
		t.Fatalf("testenv: cannot find the module root: %v", err)
	}
	dir, err := os.MkdirTemp("", "danmaku-bin-")
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "danmaku")
	if err := Run(t, ctx, root, nil, "go", "build", "-o", bin, "."); err != nil {
		t.Fatalf("testenv: building danmaku: %v", err)
	}
	build.bin = bin
	return bin
}

// Process is a danmaku process started by Start.
type Process struct {
	// HTTP is the process's --http address.
	HTTP string
	cmd  *exec.Cmd
	done chan error
	log  *syncBuffer
}

// Start runs the danmaku binary with args (which must include --http) and
// waits until its /readyz answers 200. The process gets SIGTERM (then
// SIGKILL after 5 s) when the test ends; its output is logged if the test
// failed.
func Start(t testing.TB, args ...string) *Process {
	t.Helper()
	p := &Process{done: make(chan error, 1), log: &syncBuffer{}}
	for i, a := range args {
		if a == "--http" && i+1 < len(args) {
			p.HTTP = args[i+1]
		}
	}
	if p.HTTP == "" {
		t.Fatal("testenv.Start: args need --http")
	}
	ctx, cancel := context.WithCancel(context.Background())
	p.cmd = exec.CommandContext(ctx, Binary(t), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	p.cmd.Cancel = func() error { return p.cmd.Process.Signal(syscall.SIGTERM) }
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	go func() { p.done <- p.cmd.Wait() }()
	t.Cleanup(func() {
		cancel()
		<-p.done
		if t.Failed() {
			t.Logf("danmaku %s log:\n%s", strings.Join(args, " "), p.log.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		res, err := http.Get("http://" + p.HTTP + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return p
			}
		}
		select {
		case err := <-p.done:
			p.done <- err
			t.Fatalf("danmaku exited before it was ready: %v\n%s", err, p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("danmaku not ready within 15s\n%s", p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Log returns what the process printed so far.
func (p *Process) Log() string { return p.log.String() }

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// syncBuffer is a bytes.Buffer safe for concurrent writes and reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Server is a `danmaku all` started by StartAll.
type Server struct {
	HTTP, WS string // addresses, host:port
	Secret   string // the JWT secret it verifies tokens with
}

// StartAll runs `danmaku all` on free ports with the demo bot off and guest
// tokens on; it stops when the test ends.
func StartAll(t testing.TB, secret string, args ...string) *Server {
	t.Helper()
	s := &Server{HTTP: FreeAddr(t), WS: FreeAddr(t), Secret: secret}
	Start(t, append([]string{"all", "--http", s.HTTP, "--ws", s.WS, "--jwt-secret", s.Secret,
		"--demo=false", "--guests=true", "--drain-timeout", "1s", "--log-level", "warn"}, args...)...)
	return s
}

// Chromium returns the browser for browser tests: $DANMAKU_TEST_CHROMIUM or
// Debian's /usr/bin/chromium (see Need for when it is missing).
func Chromium(t testing.TB) string {
	t.Helper()
	path := os.Getenv("DANMAKU_TEST_CHROMIUM")
	if path == "" {
		path = "/usr/bin/chromium"
	}
	return Need(t, "Chromium", path)
}
