// The demo web pages: served by the caller's HTTP server goroutines.

package gateway

import (
	"embed"
	"io/fs"
	"net/http"
	"slices"
)

//go:embed web
var webFS embed.FS

// RegisterPages serves the viewer page at /, the recorded-stream replay
// page at /replay, the OBS overlay at /overlay (see docs/api.md) and their assets (the JavaScript
// client, its TypeScript types, styles) from the embedded web folder.
// Pages of allowedOrigins (exact origins, "*" for any: the --origins list)
// may load danmaku.js and danmaku.d.ts across origins (CORS).
func RegisterPages(mux *http.ServeMux, allowedOrigins ...string) {
	sub, _ := fs.Sub(webFS, "web")
	files := http.FileServer(http.FS(sub))
	mux.Handle("/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self' ws: wss:; style-src 'self' 'unsafe-inline'; img-src 'self' data:")
		switch r.URL.Path {
		case "/replay":
			// The replay page may play a video file from anywhere beside
			// the danmaku (its video= parameter).
			h.Set("Content-Security-Policy", "default-src 'self'; connect-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; media-src 'self' http: https: blob:")
			http.ServeFileFS(w, r, sub, "replay.html")
			return
		case "/overlay":
			// The OBS overlay, for a browser source.
			http.ServeFileFS(w, r, sub, "overlay.html")
			return
		case "/danmaku.js", "/danmaku.d.ts":
			h.Add("Vary", "Origin")
			if o := r.Header.Get("Origin"); o != "" && slices.ContainsFunc(allowedOrigins, func(a string) bool { return a == "*" || a == o }) {
				h.Set("Access-Control-Allow-Origin", o)
			}
			if r.URL.Path == "/danmaku.d.ts" {
				h.Set("Content-Type", "application/typescript; charset=utf-8")
			} else {
				// Deno and some bundlers find the types through this header.
				h.Set("X-TypeScript-Types", "./danmaku.d.ts")
			}
		}
		files.ServeHTTP(w, r)
	}))
}
