package httpapi_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/danmaku-live/danmaku/moderation/httpapi"
	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// TestPushEndpoints checks POST /api/notices and POST
// /api/users/{uid}/notice: service tokens only, cleaned text, the control
// events they publish, the audit log, and the per-account rate limit
// (429 with Retry-After past the burst).
func TestPushEndpoints(t *testing.T) {
	h := newHarness(t)
	svc := h.token(auth.RoleService, nil, time.Hour)
	mod := h.token(auth.RoleMod, []string{"*"}, time.Hour)
	viewer := h.token(auth.RoleViewer, nil, time.Hour)
	cs := h.controls()

	for _, tc := range []struct {
		name, path, token, body string
		status                  int
		code                    protocol.Code
	}{
		{"no token", "/api/notices", "", `{"text":"x"}`, http.StatusUnauthorized, protocol.CodeUnauthorized},
		{"viewer", "/api/notices", viewer, `{"text":"x"}`, http.StatusForbidden, protocol.CodeForbidden},
		{"mod of every room", "/api/notices", mod, `{"text":"x"}`, http.StatusForbidden, protocol.CodeForbidden},
		{"mod to a user", "/api/users/u1/notice", mod, `{"text":"x"}`, http.StatusForbidden, protocol.CodeForbidden},
		{"empty text", "/api/notices", svc, `{"text":"  "}`, http.StatusBadRequest, protocol.CodeInvalid},
		{"too long", "/api/users/u1/notice", svc, `{"text":"` + strings.Repeat("x", 501) + `"}`, http.StatusBadRequest, protocol.CodeTooLong},
		{"bad uid", "/api/users/a%20b/notice", svc, `{"text":"x"}`, http.StatusBadRequest, protocol.CodeInvalid},
		{"not JSON", "/api/notices", svc, `notice`, http.StatusBadRequest, protocol.CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := h.do("POST", tc.path, tc.token, tc.body)
			if st != tc.status || errCode(t, body) != tc.code {
				t.Fatalf("got %d %s; want %d %s", st, body, tc.status, tc.code)
			}
		})
	}

	st, body := h.do("POST", "/api/notices", svc, `{"text":"maintenance at 02:00\nUTC"}`)
	if got := decode[httpapi.NoticeResponse](t, body); st != http.StatusAccepted || got.Rooms != "all" || got.TS == 0 {
		t.Fatalf("notice to all: %d %s", st, body)
	}
	if ev := cs.next(bus.ControlNoticeAll); ev.Text != "maintenance at 02:00 UTC" || ev.Room != "" || ev.By != "mod-1" {
		t.Fatalf("notice_all event %+v", ev)
	}
	st, body = h.do("POST", "/api/users/guest-42/notice", svc, `{"text":"your gift was received"}`)
	if got := decode[httpapi.NoticeResponse](t, body); st != http.StatusAccepted || got.UID != "guest-42" {
		t.Fatalf("notice to a user: %d %s", st, body)
	}
	if ev := cs.next(bus.ControlUserNotice); ev.UID != "guest-42" || ev.Text != "your gift was received" {
		t.Fatalf("user_notice event %+v", ev)
	}

	// Audited, newest first; only service tokens read it.
	st, body = h.do("GET", "/api/notices/audit", svc, "")
	au := decode[httpapi.AuditResponse](t, body)
	if st != 200 || len(au.Entries) != 2 || au.Entries[0].Action != httpapi.AuditUserNotice || au.Entries[0].UID != "guest-42" ||
		au.Entries[1].Action != httpapi.AuditNoticeAll || au.Entries[1].Details != "maintenance at 02:00 UTC" || au.Entries[1].By != "mod-1" {
		t.Fatalf("push audit: %d %s", st, body)
	}
	if st, _ := h.do("GET", "/api/notices/audit", mod, ""); st != http.StatusForbidden {
		t.Fatalf("push audit with a mod token: %d", st)
	}

	// The burst of notices to every room is 3: two more pass, the next waits.
	for i := range 2 {
		if st, body := h.do("POST", "/api/notices", svc, `{"text":"again"}`); st != http.StatusAccepted {
			t.Fatalf("notice %d within the burst: %d %s", i+2, st, body)
		}
	}
	req, _ := http.NewRequest("POST", h.base+"/api/notices", strings.NewReader(`{"text":"one too many"}`))
	req.Header.Set("Authorization", "Bearer "+svc)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if ra := res.Header.Get("Retry-After"); res.StatusCode != http.StatusTooManyRequests || ra == "" || ra == "0" {
		t.Fatalf("past the burst: %s, Retry-After %q", res.Status, ra)
	}
	// Notices to users have their own bucket.
	if st, body := h.do("POST", "/api/users/guest-42/notice", svc, `{"text":"still fine"}`); st != http.StatusAccepted {
		t.Fatalf("user notice while notices to all are limited: %d %s", st, body)
	}
	// Refused pushes are not audited.
	_, body = h.do("GET", "/api/notices/audit", svc, "")
	if n := len(decode[httpapi.AuditResponse](t, body).Entries); n != 5 {
		t.Fatalf("%d audit entries, want 5 (the refused push left out)", n)
	}
}

// TestPushAuditKeepsNoticesToAll: notices to users, more than the log
// keeps, never push a notice to every room out of the audit log.
func TestPushAuditKeepsNoticesToAll(t *testing.T) {
	h := newHarness(t)
	svc := h.token(auth.RoleService, nil, time.Hour)
	if st, body := h.do("POST", "/api/notices", svc, `{"text":"maintenance tonight"}`); st != http.StatusAccepted {
		t.Fatalf("notice to all: %d %s", st, body)
	}
	// 1,050 notices to users (the log keeps 1,000 of a kind), from 21
	// accounts within their bursts of 50.
	for i := range 1050 {
		tok, err := h.signer.SignClaims(auth.Claims{Role: auth.RoleService, RegisteredClaims: jwt.RegisteredClaims{
			Subject: fmt.Sprintf("bot-%d", i/50), ExpiresAt: jwt.NewNumericDate(time.Now().Add(time.Hour))}})
		if err != nil {
			t.Fatal(err)
		}
		if st, body := h.do("POST", fmt.Sprintf("/api/users/u%d/notice", i), tok, `{"text":"hi"}`); st != http.StatusAccepted {
			t.Fatalf("user notice %d: %d %s", i, st, body)
		}
	}
	_, body := h.do("GET", "/api/notices/audit?action=notice_all", svc, "")
	au := decode[httpapi.AuditResponse](t, body)
	if len(au.Entries) != 1 || au.Entries[0].Details != "maintenance tonight" || au.Entries[0].Room != httpapi.AuditPushRoom {
		t.Fatalf("notices to all after 1,050 user notices: %s", body)
	}
	_, body = h.do("GET", "/api/notices/audit?limit=1000", svc, "")
	au = decode[httpapi.AuditResponse](t, body)
	if len(au.Entries) != 1000 || au.Entries[0].UID != "u1049" || au.Entries[999].UID != "u50" {
		t.Fatalf("merged audit: %d entries, newest %+v", len(au.Entries), au.Entries[0])
	}
	_, body = h.do("GET", "/api/notices/audit?action=user_notice&limit=2", svc, "")
	if au = decode[httpapi.AuditResponse](t, body); len(au.Entries) != 2 || au.Entries[1].UID != "u1048" {
		t.Fatalf("user notices: %s", body)
	}
	if st, _ := h.do("GET", "/api/notices/audit?action=ban", svc, ""); st != http.StatusBadRequest {
		t.Fatalf("unknown action: %d, want 400", st)
	}
}
