package httpapi

import (
	"embed"
	"io/fs"
	"net/http"
)

//go:embed web
var dashboardFS embed.FS

// dashboardCSP allows the dashboard's own scripts and styles only (no
// inline script), and WebSocket connections to the gateway on another port.
const dashboardCSP = "default-src 'self'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; " +
	"img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// RegisterDashboard serves the moderation dashboard at GET /dashboard (and
// /dashboard/) and its assets under /dashboard/ from the embedded web
// folder. The page talks
// to the API with the moderator's token in the Authorization header (kept
// in sessionStorage; no cookies) and watches the room over the gateway's
// WebSocket.
func RegisterDashboard(mux *http.ServeMux) {
	sub, _ := fs.Sub(dashboardFS, "web")
	files := http.StripPrefix("/dashboard/", http.FileServer(http.FS(sub)))
	headers := func(w http.ResponseWriter) {
		h := w.Header()
		h.Set("Content-Security-Policy", dashboardCSP)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Cache-Control", "no-cache")
	}
	page := func(w http.ResponseWriter, r *http.Request) {
		headers(w)
		http.ServeFileFS(w, r, sub, "dashboard.html")
	}
	mux.HandleFunc("GET /dashboard", page)
	mux.HandleFunc("GET /dashboard/{$}", page)
	mux.HandleFunc("GET /dashboard/{file}", func(w http.ResponseWriter, r *http.Request) {
		headers(w)
		if r.PathValue("file") == "dashboard.html" {
			http.Redirect(w, r, "/dashboard", http.StatusMovedPermanently)
			return
		}
		files.ServeHTTP(w, r)
	})
}
