package gateway

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestRegisterPages(t *testing.T) {
	mux := http.NewServeMux()
	RegisterPages(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()

	const csp = "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; img-src 'self' data:"
	tests := []struct {
		path, typ string
		contains  []string
	}{
		{"/", "text/html", []string{`<script type="module" src="app.js">`, `id="stage"`, `id="send-input"`}},
		{"/index.html", "", nil}, // http.FileServer redirects to /
		{"/danmaku.js", "javascript", []string{"export class DanmakuClient"}},
		{"/app.js", "javascript", []string{`from "./danmaku.js"`, `from "./stage.js"`}},
		{"/style.css", "text/css", []string{".stage"}},
		{"/stage.css", "text/css", []string{".dm", ".dm.top", ".dm.large"}},
		{"/stage.js", "javascript", []string{"export class Stage", "export function danmakuElement"}},
		{"/overlay.js", "javascript", []string{`from "./stage.js"`}},
		{"/favicon.svg", "image/svg+xml", []string{"<svg"}},
	}
	for _, tt := range tests {
		t.Run(tt.path, func(t *testing.T) {
			res, err := http.Get(srv.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				t.Fatalf("status %d", res.StatusCode)
			}
			if got := res.Header.Get("Content-Security-Policy"); got != csp {
				t.Errorf("CSP = %q, want %q", got, csp)
			}
			if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
				t.Errorf("X-Content-Type-Options = %q", got)
			}
			if ct := res.Header.Get("Content-Type"); !strings.Contains(ct, tt.typ) {
				t.Errorf("Content-Type = %q, want it to contain %q", ct, tt.typ)
			}
			for _, s := range tt.contains {
				if !strings.Contains(string(body), s) {
					t.Errorf("body lacks %q", s)
				}
			}
		})
	}

	t.Run("no inline scripts", func(t *testing.T) {
		// The CSP forbids inline scripts and handlers: the page must not
		// rely on them.
		b, err := webFS.ReadFile("web/index.html")
		if err != nil {
			t.Fatal(err)
		}
		page := strings.ToLower(string(b))
		for _, bad := range []string{"<script>", "onclick=", "onload=", "onsubmit=", "javascript:"} {
			if strings.Contains(page, bad) {
				t.Errorf("index.html contains %q", bad)
			}
		}
		for i := 0; ; {
			j := strings.Index(page[i:], "<script")
			if j < 0 {
				break
			}
			i += j
			end := strings.Index(page[i:], ">")
			if !strings.Contains(page[i:i+end], "src=") {
				t.Errorf("inline script at byte %d", i)
			}
			i += end
		}
	})

	t.Run("unknown path", func(t *testing.T) {
		res, err := http.Get(srv.URL + "/nope.js")
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != http.StatusNotFound {
			t.Errorf("status %d, want 404", res.StatusCode)
		}
	})
}

func TestWebTextIsNeverParsedAsHTML(t *testing.T) {
	// Message text and names reach the DOM only through textContent.
	for _, f := range []string{"web/app.js", "web/danmaku.js"} {
		b, err := webFS.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
			if strings.Contains(string(b), bad) {
				t.Errorf("%s uses %s", f, bad)
			}
		}
	}
}

// TestPagesCORS checks that danmaku.js and danmaku.d.ts may be loaded by
// pages of the allowed origins only, and that the types are served as
// TypeScript and announced on the script.
func TestPagesCORS(t *testing.T) {
	mux := http.NewServeMux()
	RegisterPages(mux, "https://fan.example")
	srv := httptest.NewServer(mux)
	defer srv.Close()
	get := func(path, origin string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+path, nil)
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		return res, string(body)
	}
	for _, path := range []string{"/danmaku.js", "/danmaku.d.ts"} {
		res, _ := get(path, "https://fan.example")
		if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "https://fan.example" {
			t.Errorf("%s from an allowed origin: %d, ACAO %q", path, res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
		}
		if res, _ := get(path, "https://evil.example"); res.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s from another origin: ACAO %q", path, res.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	if res, _ := get("/app.js", "https://fan.example"); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("the page's own app.js answers CORS")
	}
	res, body := get("/danmaku.d.ts", "")
	if ct := res.Header.Get("Content-Type"); ct != "application/typescript; charset=utf-8" || !strings.Contains(body, "export declare class DanmakuClient") {
		t.Errorf("danmaku.d.ts: %q %.60q", ct, body)
	}
	if res, _ := get("/danmaku.js", ""); res.Header.Get("X-TypeScript-Types") != "./danmaku.d.ts" {
		t.Errorf("danmaku.js does not point at its types: %v", res.Header)
	}
}

// TestReplayPageServed: /replay serves the replay page with a policy that
// lets it play a video file from another origin and nothing else.
func TestReplayPageServed(t *testing.T) {
	mux := http.NewServeMux()
	RegisterPages(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	res, err := http.Get(srv.URL + "/replay?room=r&from=1&to=2")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `src="replay.js"`) || !strings.Contains(string(body), `id="density"`) {
		t.Fatalf("GET /replay = %d %.200s", res.StatusCode, body)
	}
	csp := res.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "media-src 'self' http: https: blob:") || !strings.Contains(csp, "connect-src 'self';") {
		t.Errorf("replay CSP = %q", csp)
	}
	js, err := webFS.ReadFile("web/replay.js")
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
		if strings.Contains(string(js), bad) {
			t.Errorf("replay.js uses %s", bad)
		}
	}
}

// TestOverlayPageServed: /overlay serves the overlay page (with the shared
// stage), and its scripts render user text only as text.
func TestOverlayPageServed(t *testing.T) {
	mux := http.NewServeMux()
	RegisterPages(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	res, err := http.Get(srv.URL + "/overlay?room=r&lanes=4")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != http.StatusOK || !strings.Contains(string(body), `src="overlay.js"`) || !strings.Contains(string(body), `href="stage.css"`) {
		t.Fatalf("GET /overlay = %d %.200s", res.StatusCode, body)
	}
	for _, name := range []string{"web/overlay.js", "web/stage.js"} {
		js, err := webFS.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, bad := range []string{"innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("} {
			if strings.Contains(string(js), bad) {
				t.Errorf("%s uses %s", name, bad)
			}
		}
	}
}
