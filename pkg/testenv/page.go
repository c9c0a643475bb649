package testenv

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
)

// Page is a browser page test: a `danmaku all` (StartAll) and what a node
// script in the test's folder needs to drive headless Chromium against it.
// The scripts share page.mjs (this folder): the env it passes them, the
// browser launch, a page that records its errors, polling, the room API.
type Page struct {
	Server   *Server
	Signer   *auth.Signer
	Node     string
	Chromium string
	Out      string // where the scripts write screenshots (Artifacts)
}

// pageSecret is the JWT secret of the servers StartPage starts.
const pageSecret = "webtest-secret-0123456789"

// StartPage finds node and Chromium (see Need), installs the scripts' npm
// packages (playwright-core, ws) in the test's folder and starts `danmaku
// all` with args added to StartAll's.
func StartPage(t testing.TB, args ...string) *Page {
	t.Helper()
	p := &Page{Node: Need(t, "node", "node"), Chromium: Chromium(t)}
	NPMInstall(t, ".", "playwright-core", "ws")
	p.Server = StartAll(t, pageSecret, args...)
	signer, err := auth.NewSigner(p.Server.Secret)
	if err != nil {
		t.Fatal(err)
	}
	p.Signer = signer
	p.Out = Artifacts(t)
	return p
}

// Token signs an hour's token for uid (see auth.Signer.Sign), failing the
// test if it cannot.
func (p *Page) Token(t testing.TB, uid, name, role string, rooms ...string) string {
	t.Helper()
	tok, err := p.Signer.Sign(uid, name, role, rooms, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// Script runs `node script` in the test's folder for at most timeout, with
// DANMAKU_HTTP, DANMAKU_WS, DANMAKU_CHROMIUM and DANMAKU_OUT set and env
// added, and fails the test if it fails.
func (p *Page) Script(t testing.TB, timeout time.Duration, script string, env ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	env = append([]string{
		"DANMAKU_HTTP=http://" + p.Server.HTTP,
		"DANMAKU_WS=ws://" + p.Server.WS + "/ws",
		"DANMAKU_CHROMIUM=" + p.Chromium,
		"DANMAKU_OUT=" + p.Out,
	}, env...)
	if err := Run(t, ctx, ".", env, p.Node, script); err != nil {
		t.Fatalf("%s: %v", script, err)
	}
}

// Screenshots fails the test for each of names (file names without .png)
// the script did not write to Out.
func (p *Page) Screenshots(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := os.Stat(filepath.Join(p.Out, name+".png")); err != nil {
			t.Errorf("no screenshot: %v", err)
		}
	}
	t.Logf("screenshots in %s", p.Out)
}
