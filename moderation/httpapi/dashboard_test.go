package httpapi

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestDashboardRoutes checks the dashboard is served at /dashboard and at
// /dashboard/ (a trailing slash is what people type), with its CSP, and
// that its assets and a missing file answer as they should.
func TestDashboardRoutes(t *testing.T) {
	mux := http.NewServeMux()
	RegisterDashboard(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	noRedirect := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	for _, tc := range []struct {
		path   string
		status int
		want   string // in the body
	}{
		{"/dashboard", 200, `<main id="main"`},
		{"/dashboard/", 200, `<main id="main"`},
		{"/dashboard/dashboard.js", 200, "use strict"},
		{"/dashboard/dashboard.css", 200, "--panel"},
		{"/dashboard/dashboard.html", 301, ""},
		{"/dashboard/nope.js", 404, ""},
	} {
		res, err := noRedirect.Get(srv.URL + tc.path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if res.StatusCode != tc.status {
			t.Errorf("GET %s: status %d, want %d", tc.path, res.StatusCode, tc.status)
			continue
		}
		if tc.want != "" && !strings.Contains(string(body), tc.want) {
			t.Errorf("GET %s: body lacks %q", tc.path, tc.want)
		}
		if tc.status == 200 && !strings.Contains(res.Header.Get("Content-Security-Policy"), "script-src 'self'") {
			t.Errorf("GET %s: no CSP", tc.path)
		}
	}
}
