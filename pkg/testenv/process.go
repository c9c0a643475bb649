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
	missing(t, fmt.Sprintf("%s not found (%s): install it (deploy/dev/env.sh does)", what, path))
	return ""
}

// missing skips the test for what msg says is missing, or fails it under
// CI=true.
func missing(t testing.TB, msg string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; under CI a missing tool is a failure")
	}
	t.Skip(msg)
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

// Process is a process started by Spawn or Start. Its methods are safe
// for concurrent use.
type Process struct {
	name string
	http string // HTTP address whose /readyz says ready; "" for none
	cmd  *exec.Cmd
	done chan struct{} // closed when the process exited
	err  error         // exit status; read after done
	log  *SyncBuffer
}

// Spawn starts bin with args and extra environment, without waiting for it.
// httpAddr is where WaitReady polls /readyz ("" if the program has none).
// When the test ends a process still running gets SIGTERM, then SIGKILL
// after 5 s; its output is logged if the test failed.
func Spawn(t testing.TB, bin, name, httpAddr string, env []string, args ...string) *Process {
	t.Helper()
	p := &Process{name: name, http: httpAddr, done: make(chan struct{}), log: &SyncBuffer{}}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				_ = p.cmd.Process.Kill()
				<-p.done
			}
		}
		if t.Failed() {
			t.Logf("---- log of %s (pid %d) ----\n%s", p.name, p.Pid(), p.log.String())
		}
	})
	return p
}

// Start runs the danmaku binary (see Binary) with args, which must include
// --http, and waits up to 15 s until its /readyz answers 200.
func Start(t testing.TB, args ...string) *Process {
	t.Helper()
	httpAddr := ""
	for i, a := range args {
		if a == "--http" && i+1 < len(args) {
			httpAddr = args[i+1]
		}
	}
	if httpAddr == "" {
		t.Fatal("testenv.Start: args need --http")
	}
	name := "danmaku"
	if len(args) > 0 {
		name += " " + args[0]
	}
	p := Spawn(t, Binary(t), name, httpAddr, nil, args...)
	p.WaitReady(t, 15*time.Second)
	return p
}

// WaitReady polls the process's /readyz until it answers 200, failing the
// test if the process exits first or d passes.
func (p *Process) WaitReady(t testing.TB, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		res, err := http.Get("http://" + p.http + "/readyz")
		if err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was ready: %v\n%s", p.name, p.err, p.log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready within %v: %v\n%s", p.name, d, err, p.log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Stop sends SIGTERM and expects a clean exit (status 0) within d.
func (p *Process) Stop(t testing.TB, d time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s: exit after SIGTERM: %v", p.name, p.err)
		}
	case <-time.After(d):
		t.Errorf("%s did not stop within %v of SIGTERM", p.name, d)
	}
}

// Signal sends sig to the process.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Done is closed when the process has exited.
func (p *Process) Done() <-chan struct{} { return p.done }

// Err is the exit status, valid once Done is closed.
func (p *Process) Err() error {
	<-p.done
	return p.err
}

// Log returns what the process printed so far.
func (p *Process) Log() string { return p.log.String() }

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads: a
// process's or a logger's output that a test reads while it is written.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *SyncBuffer) String() string {
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

// Nginx returns nginx for router tests, $DANMAKU_TEST_NGINX or Debian's
// /usr/sbin/nginx, and the directory of its dynamic modules (its
// --modules-path, else PREFIX/modules), which must hold the njs module
// ngx_http_js_module.so (Debian: libnginx-mod-http-js). Either missing
// skips the test, or fails it under CI=true (see Need).
func Nginx(t testing.TB) (bin, modules string) {
	t.Helper()
	path := os.Getenv("DANMAKU_TEST_NGINX")
	if path == "" {
		path = "/usr/sbin/nginx"
	}
	bin = Need(t, "nginx", path)
	out, err := exec.Command(bin, "-V").CombinedOutput()
	if err != nil {
		t.Fatalf("%s -V: %v\n%s", bin, err, out)
	}
	prefix := "/usr/local/nginx" // nginx's default
	for _, f := range strings.Fields(string(out)) {
		if p, ok := strings.CutPrefix(f, "--prefix="); ok {
			prefix = p
		}
		if p, ok := strings.CutPrefix(f, "--modules-path="); ok {
			modules = p
		}
	}
	if modules == "" {
		modules = filepath.Join(prefix, "modules")
	}
	if _, err := os.Stat(filepath.Join(modules, "ngx_http_js_module.so")); err != nil {
		missing(t, fmt.Sprintf("the njs module of %s not found (%v): install it (Debian: libnginx-mod-http-js; deploy/dev/env.sh does)", bin, err))
	}
	return bin, modules
}
