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
		{"/app.js", "javascript", []string{`from "./danmaku.js"`}},
		{"/style.css", "text/css", []string{".dm"}},
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
