package httpapi

import (
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"golang.org/x/time/rate"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// Audit actions of the pushes beyond one room. Each kind is recorded
// under its own key, one no room id can have, so each has its own bounded
// log: a flood of notices to users (20 a second per account) never pushes
// the rare notices to every room out. GET /api/notices/audit lists them
// under AuditPushRoom.
const (
	AuditNoticeAll  = "notice_all"  // a system notice to every room
	AuditUserNotice = "user_notice" // a notice to one user wherever connected
	AuditPushRoom   = "*"
)

// pushAuditKey is the audit log key of a push action.
func pushAuditKey(action string) string { return AuditPushRoom + action }

// PushLimit is a token bucket for one kind of push, per service account
// and API instance.
type PushLimit struct {
	// Every is the time one token takes to come back.
	Every time.Duration
	// Burst is the bucket size.
	Burst int
}

// Default push limits (APIConfig.NoticeAllLimit, UserNoticeLimit). A
// notice to every room reaches every viewer of the deployment, so it is
// kept rare; notices to users are per person, like a bot's whispers.
var (
	DefaultNoticeAllLimit  = PushLimit{Every: 10 * time.Second, Burst: 3}
	DefaultUserNoticeLimit = PushLimit{Every: 50 * time.Millisecond, Burst: 50}
)

// maxPushLimiters bounds the limiters kept per kind; past it they are all
// forgotten (service accounts are few).
const maxPushLimiters = 10_000

// pushLimiters holds a token bucket per service account. Safe for
// concurrent use.
type pushLimiters struct {
	lim PushLimit
	mu  sync.Mutex
	m   map[string]*rate.Limiter
}

func newPushLimiters(l PushLimit) *pushLimiters {
	return &pushLimiters{lim: l, m: make(map[string]*rate.Limiter)}
}

// allow takes a token for uid, or reports how long until one is there.
func (p *pushLimiters) allow(uid string, now time.Time) (bool, time.Duration) {
	p.mu.Lock()
	defer p.mu.Unlock()
	l := p.m[uid]
	if l == nil {
		if len(p.m) >= maxPushLimiters {
			clear(p.m)
		}
		l = rate.NewLimiter(rate.Every(p.lim.Every), p.lim.Burst)
		p.m[uid] = l
	}
	r := l.ReserveN(now, 1)
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// NoticeRequest is the body of POST /api/notices and
// POST /api/users/{uid}/notice.
type NoticeRequest struct {
	Text string `json:"text"`
}

// NoticeResponse answers a push: when it went out, to whom.
type NoticeResponse struct {
	// Rooms is "all" for a notice to every room.
	Rooms string `json:"rooms,omitempty"`
	// UID is the user of a notice to one user.
	UID string `json:"uid,omitempty"`
	// TS is when it was published, Unix ms.
	TS int64 `json:"ts"`
}

func (a *API) registerPush(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/notices", a.postNoticeAll)
	mux.HandleFunc("POST /api/users/{uid}/notice", a.postUserNotice)
	mux.HandleFunc("GET /api/notices/audit", a.getPushAudit)
}

// service returns the claims of a service token, or writes 401/403 and
// returns nil.
func (a *API) service(w http.ResponseWriter, r *http.Request) *auth.Claims {
	c := a.claims(w, r)
	if c == nil {
		return nil
	}
	if c.Role != auth.RoleService {
		writeError(w, http.StatusForbidden, protocol.CodeForbidden, "pushes beyond one room need a service token")
		return nil
	}
	return c
}

// push checks the body and the rate limit, publishes ev with the cleaned
// text, records it in the audit log and answers.
func (a *API) push(w http.ResponseWriter, r *http.Request, c *auth.Claims, lim *pushLimiters, ev bus.Control, action string) {
	var req NoticeRequest
	if !a.readJSON(w, r, &req) {
		return
	}
	text, perr := protocol.CleanText(req.Text)
	if perr != nil {
		writeError(w, http.StatusBadRequest, perr.Code, perr.Message)
		return
	}
	now := time.Now()
	if ok, wait := lim.allow(c.UID(), now); !ok {
		w.Header().Set("Retry-After", strconv.FormatInt(int64((wait+time.Second-1)/time.Second), 10))
		writeError(w, http.StatusTooManyRequests, protocol.CodeRateLimited, "too many notices; retry after "+wait.Round(time.Millisecond).String())
		return
	}
	ev.Text, ev.By, ev.TS = text, c.UID(), now.UnixMilli()
	if err := a.PublishControl(r.Context(), ev); err != nil {
		writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "control stream unavailable")
		return
	}
	a.record(r.Context(), c, AuditEntry{Room: pushAuditKey(action), Action: action, UID: ev.UID, Details: clip(text, 200)})
	resp := NoticeResponse{UID: ev.UID, TS: ev.TS}
	if ev.Op == bus.ControlNoticeAll {
		resp.Rooms = "all"
	}
	writeJSON(w, http.StatusAccepted, resp)
}

// postNoticeAll sends a system notice to every room.
func (a *API) postNoticeAll(w http.ResponseWriter, r *http.Request) {
	c := a.service(w, r)
	if c == nil {
		return
	}
	a.push(w, r, c, a.noticeAll, bus.Control{Op: bus.ControlNoticeAll}, AuditNoticeAll)
}

// postUserNotice sends a notice to one user wherever they are connected.
func (a *API) postUserNotice(w http.ResponseWriter, r *http.Request) {
	c := a.service(w, r)
	if c == nil {
		return
	}
	uid := r.PathValue("uid")
	if !validUID(uid) {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "uid must be 1-256 bytes of UTF-8 without spaces or control characters")
		return
	}
	a.push(w, r, c, a.userNotice, bus.Control{Op: bus.ControlUserNotice, UID: uid}, AuditUserNotice)
}

// validUID reports whether uid can be a token subject the API addresses.
func validUID(uid string) bool {
	if uid == "" || len(uid) > 256 || !utf8.ValidString(uid) {
		return false
	}
	for _, r := range uid {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// getPushAudit lists the pushes beyond one room, newest first: those of
// ?action=, or both kinds' logs merged.
func (a *API) getPushAudit(w http.ResponseWriter, r *http.Request) {
	if a.service(w, r) == nil {
		return
	}
	limit, ok := queryLimit(w, r, 100)
	if !ok {
		return
	}
	actions := []string{AuditNoticeAll, AuditUserNotice}
	switch v := r.URL.Query().Get("action"); v {
	case "":
	case AuditNoticeAll, AuditUserNotice:
		actions = []string{v}
	default:
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "action must be notice_all or user_notice")
		return
	}
	var entries []AuditEntry
	for _, action := range actions {
		es, err := a.audit.List(r.Context(), pushAuditKey(action), limit)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "audit log unavailable")
			return
		}
		entries = append(entries, es...)
	}
	// Each list is newest first; a stable sort keeps that among equal times.
	slices.SortStableFunc(entries, func(x, y AuditEntry) int { return y.At.Compare(x.At) })
	entries = entries[:min(limit, len(entries))]
	for i := range entries {
		entries[i].Room = AuditPushRoom
	}
	if entries == nil {
		entries = []AuditEntry{}
	}
	writeJSON(w, http.StatusOK, AuditResponse{Room: AuditPushRoom, Entries: entries})
}
