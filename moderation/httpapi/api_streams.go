package httpapi

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// AuditSession is the audit action of a stream session started or ended.
const AuditSession = "session"

// Limits of the stream endpoints.
const (
	maxStreamRange = 31 * 24 * time.Hour // longest from..to of density and analytics
	// maxStreamTimeMs is the latest from or to: the end of ClickHouse's
	// DateTime (2106), which the stores bound their queries with.
	maxStreamTimeMs  = 4294967295000
	defaultBuckets   = 100
	defaultPhrases   = 20
	maxPhrases       = 100
	maxSessionTitle  = 100
	defaultSessions  = 20
	maxSessionsLimit = 200
)

var sessionIDRe = regexp.MustCompile(`^[a-z0-9-]{1,40}$`)

// sessionMu serialises starting sessions in this process, so two starts at
// once do not both find no live session. (Two API processes can still
// race; the later start then simply opens a second session.)
var sessionMu sync.Mutex

// registerStreams adds stream sessions, density and analytics to mux.
func (a *API) registerStreams(mux *http.ServeMux) {
	mux.HandleFunc("POST /api/rooms/{room}/sessions", a.room(a.postSession))
	mux.HandleFunc("POST /api/rooms/{room}/sessions/{id}/end", a.room(a.endSession))
	mux.HandleFunc("GET /api/rooms/{room}/analytics", a.mod(a.getAnalytics))
}

// publicStreams are the stream endpoints any page may read (CORS like
// history).
func (a *API) publicStreams() map[string]http.HandlerFunc {
	return map[string]http.HandlerFunc{
		"GET /api/rooms/{room}/sessions":      a.room(a.getSessions),
		"GET /api/rooms/{room}/sessions/{id}": a.room(a.getSession),
		"GET /api/rooms/{room}/density":       a.room(a.getDensity),
	}
}

// sharedHistory returns the history store h as an I (history.Sessions,
// history.Analytics), or writes 503 "<what> need a shared history store"
// and returns the zero I (nil).
func sharedHistory[I any](w http.ResponseWriter, h history.Store, what string) I {
	s, ok := h.(I)
	if !ok {
		writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, what+" need a shared history store (--history clickhouse)")
	}
	return s
}

// sessionStore returns the history store's sessions, or writes 503.
func (a *API) sessionStore(w http.ResponseWriter) history.Sessions {
	return sharedHistory[history.Sessions](w, a.cfg.History, "stream sessions")
}

// analytics returns the history store's analytics, or writes 503.
func (a *API) analytics(w http.ResponseWriter) history.Analytics {
	return sharedHistory[history.Analytics](w, a.cfg.History, "analytics")
}

// sessionWriter returns the claims and the sessions store when the claims
// may mark sessions of room (the room's streamer or mods, or a service);
// else it writes 401/403, or 503 without a sessions store, and returns
// nils.
func (a *API) sessionWriter(w http.ResponseWriter, r *http.Request, room string) (*auth.Claims, history.Sessions) {
	c := a.claims(w, r)
	if c == nil {
		return nil, nil
	}
	if !c.CanModerate(room) {
		writeError(w, http.StatusForbidden, protocol.CodeForbidden, "marking stream sessions needs the room's streamer or mod token, or a service token")
		return nil, nil
	}
	st := a.sessionStore(w)
	if st == nil {
		return nil, nil
	}
	return c, st
}

func newSessionID(now time.Time) string {
	var b [3]byte
	_, _ = rand.Read(b[:])
	return strconv.FormatInt(now.UnixMilli(), 36) + "-" + hex.EncodeToString(b[:])
}

// SessionRequest is the optional body of POST /api/rooms/{room}/sessions.
type SessionRequest struct {
	Title string `json:"title,omitempty"`
}

// postSession starts a session now: 201 with it, 409 when one is live.
func (a *API) postSession(w http.ResponseWriter, r *http.Request, room string) {
	c, st := a.sessionWriter(w, r, room)
	if st == nil {
		return
	}
	var req SessionRequest
	if r.ContentLength != 0 && !a.readJSON(w, r, &req) {
		return
	}
	if req.Title != "" {
		t, perr := protocol.CleanText(req.Title)
		if perr != nil || len([]rune(t)) > maxSessionTitle {
			writeError(w, http.StatusBadRequest, protocol.CodeInvalid, fmt.Sprintf("title must be 1-%d characters", maxSessionTitle))
			return
		}
		req.Title = t
	}
	sessionMu.Lock()
	defer sessionMu.Unlock()
	last, err := st.Sessions(r.Context(), room, 1)
	if err != nil {
		a.storeFailed(w, room, err)
		return
	}
	if len(last) == 1 && last[0].EndMs == 0 {
		writeJSON(w, http.StatusConflict, map[string]any{
			"error":   map[string]any{"code": protocol.CodeConflict, "message": "a session of this room is live; end it first"},
			"session": last[0]})
		return
	}
	now := time.Now()
	s := history.Session{ID: newSessionID(now), Room: room, Title: req.Title, StartMs: now.UnixMilli(), By: c.UID()}
	if err := st.PutSession(r.Context(), s); err != nil {
		a.storeFailed(w, room, err)
		return
	}
	a.record(r.Context(), c, AuditEntry{Room: room, Action: AuditSession, Details: "started session " + s.ID})
	writeJSON(w, http.StatusCreated, s)
}

// endSession ends a live session now; ending an ended one answers it
// unchanged.
func (a *API) endSession(w http.ResponseWriter, r *http.Request, room string) {
	c, st := a.sessionWriter(w, r, room)
	if st == nil {
		return
	}
	s, ok := a.findSession(w, r, st, room)
	if !ok {
		return
	}
	if s.EndMs == 0 {
		s.EndMs = max(time.Now().UnixMilli(), s.StartMs+1)
		if err := st.PutSession(r.Context(), s); err != nil {
			a.storeFailed(w, room, err)
			return
		}
		a.record(r.Context(), c, AuditEntry{Room: room, Action: AuditSession, Details: "ended session " + s.ID})
	}
	writeJSON(w, http.StatusOK, s)
}

// findSession reads session {id} of room, or writes 400/404/503.
func (a *API) findSession(w http.ResponseWriter, r *http.Request, st history.Sessions, room string) (history.Session, bool) {
	id := r.PathValue("id")
	if id == "" {
		id = r.URL.Query().Get("session")
	}
	if !sessionIDRe.MatchString(id) {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "session id must match [a-z0-9-]{1,40}")
		return history.Session{}, false
	}
	s, ok, err := st.Session(r.Context(), room, id)
	if err != nil {
		a.storeFailed(w, room, err)
		return history.Session{}, false
	}
	if !ok {
		writeError(w, http.StatusNotFound, protocol.CodeNotFound, "no such session in this room")
		return history.Session{}, false
	}
	return s, true
}

func (a *API) storeFailed(w http.ResponseWriter, room string, err error) {
	a.cfg.Logger.Warn("history store failed", "room", room, "err", err)
	writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "history unavailable")
}

// SessionsResponse is the body of GET /api/rooms/{room}/sessions.
type SessionsResponse struct {
	Room     string            `json:"room"`
	Sessions []history.Session `json:"sessions"`
}

func (a *API) getSessions(w http.ResponseWriter, r *http.Request, room string) {
	st := a.sessionStore(w)
	if st == nil {
		return
	}
	limit, ok := queryCount(w, r, "limit", defaultSessions, maxSessionsLimit)
	if !ok {
		return
	}
	list, err := st.Sessions(r.Context(), room, limit)
	if err != nil {
		a.storeFailed(w, room, err)
		return
	}
	if list == nil {
		list = []history.Session{}
	}
	writeJSON(w, http.StatusOK, SessionsResponse{Room: room, Sessions: list})
}

func (a *API) getSession(w http.ResponseWriter, r *http.Request, room string) {
	st := a.sessionStore(w)
	if st == nil {
		return
	}
	if s, ok := a.findSession(w, r, st, room); ok {
		writeJSON(w, http.StatusOK, s)
	}
}

// analyticsRange is how the analytics endpoints begin: the store's
// analytics (else 503) and the range the request asks for (streamRange).
// It reports false when it wrote an error.
func (a *API) analyticsRange(w http.ResponseWriter, r *http.Request, room string) (an history.Analytics, from, to int64, sess *history.Session, ok bool) {
	if an = a.analytics(w); an == nil {
		return nil, 0, 0, nil, false
	}
	from, to, sess, ok = a.streamRange(w, r, room)
	return an, from, to, sess, ok
}

// streamRange resolves ?from=&to= (Unix ms) or ?session=ID (a live
// session runs to now; of a session over maxStreamRange, its last
// maxStreamRange) into [from, to); with neither, the last hour. It
// writes 400/404/503 and reports false on failure.
func (a *API) streamRange(w http.ResponseWriter, r *http.Request, room string) (from, to int64, sess *history.Session, ok bool) {
	q := r.URL.Query()
	now := time.Now().UnixMilli()
	if q.Get("session") != "" {
		if q.Get("from") != "" || q.Get("to") != "" {
			writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "give session or from/to, not both")
			return 0, 0, nil, false
		}
		st := a.sessionStore(w)
		if st == nil {
			return 0, 0, nil, false
		}
		s, found := a.findSession(w, r, st, room)
		if !found {
			return 0, 0, nil, false
		}
		to = s.EndMs
		if to == 0 {
			to = max(now, s.StartMs+1)
		}
		// A session over 31 days (or left live) reads its last 31 days,
		// as from..to is capped, not its whole span on every request.
		return max(s.StartMs, to-maxStreamRange.Milliseconds()), to, &s, true
	}
	parse := func(name string, def int64) (int64, bool) {
		v := q.Get(name)
		if v == "" {
			return def, true
		}
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n < 0 || n > maxStreamTimeMs {
			writeError(w, http.StatusBadRequest, protocol.CodeInvalid,
				fmt.Sprintf("%s must be a Unix time in ms, 0 to %d", name, int64(maxStreamTimeMs)))
			return 0, false
		}
		return n, true
	}
	if to, ok = parse("to", now); !ok {
		return 0, 0, nil, false
	}
	if from, ok = parse("from", to-int64(time.Hour/time.Millisecond)); !ok {
		return 0, 0, nil, false
	}
	switch {
	case from < 0:
		// Only the default can be: an hour before a to under an hour.
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid,
			"from defaults to an hour before to, which is before 1970 here: give from, or a later to")
		return 0, 0, nil, false
	case from >= to:
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "from must be before to")
		return 0, 0, nil, false
	case to-from > maxStreamRange.Milliseconds():
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "from..to may span at most 31 days")
		return 0, 0, nil, false
	}
	return from, to, nil, true
}

// DensityResponse is the body of GET /api/rooms/{room}/density.
type DensityResponse struct {
	Room     string  `json:"room"`
	From     int64   `json:"from"`
	To       int64   `json:"to"`
	BucketMs int64   `json:"bucket_ms"`
	Counts   []int64 `json:"counts"`
}

// getDensity answers messages per interval of [from, to): buckets
// intervals (default 100, at most history.MaxBuckets), each
// ceil((to-from)/buckets) ms wide.
func (a *API) getDensity(w http.ResponseWriter, r *http.Request, room string) {
	an, from, to, _, ok := a.analyticsRange(w, r, room)
	if !ok {
		return
	}
	n, ok := queryCount(w, r, "buckets", defaultBuckets, history.MaxBuckets)
	if !ok {
		return
	}
	buckets := int64(n)
	bucket := max((to-from+buckets-1)/buckets, 1)
	counts, err := an.Density(r.Context(), room, from, to, bucket)
	if err != nil {
		a.storeFailed(w, room, err)
		return
	}
	writeJSON(w, http.StatusOK, DensityResponse{Room: room, From: from, To: to, BucketMs: bucket, Counts: counts})
}

// HighlightLink is a highlight minute with the replay page that opens at it.
type HighlightLink struct {
	history.Highlight
	Replay string `json:"replay"`
}

// AnalyticsResponse is the body of GET /api/rooms/{room}/analytics.
type AnalyticsResponse struct {
	Room       string                 `json:"room"`
	From       int64                  `json:"from"`
	To         int64                  `json:"to"`
	Session    string                 `json:"session,omitempty"`
	Messages   int64                  `json:"messages"`
	Chatters   int64                  `json:"chatters_peak"`
	Minutes    []history.MinuteStat   `json:"minutes"`
	Phrases    []history.PhraseCount  `json:"phrases"`
	Verdicts   []history.VerdictCount `json:"verdicts"`
	Highlights []HighlightLink        `json:"highlights"`
}

// getAnalytics answers the stream analytics of [from, to) or a session.
func (a *API) getAnalytics(w http.ResponseWriter, r *http.Request, room string, _ *auth.Claims) {
	an, from, to, sess, ok := a.analyticsRange(w, r, room)
	if !ok {
		return
	}
	limit, ok := queryCount(w, r, "phrases", defaultPhrases, maxPhrases)
	if !ok {
		return
	}
	ctx := r.Context()
	resp := AnalyticsResponse{Room: room, From: from, To: to, Minutes: []history.MinuteStat{}, Phrases: []history.PhraseCount{},
		Verdicts: []history.VerdictCount{}, Highlights: []HighlightLink{}}
	var blocked []string
	if a.cfg.Engine != nil {
		blocked = append(a.blockedWords(room), a.cfg.Engine.GlobalKeywords().Words...)
	}
	// The three reads are independent: run them at once, so a long range
	// costs the slowest of them, not their sum.
	var (
		wg                        sync.WaitGroup
		mins                      []history.MinuteStat
		phrases                   []history.PhraseCount
		verdicts                  []history.VerdictCount
		minErr, phraseErr, verErr error
	)
	wg.Add(2)
	go func() {
		defer wg.Done()
		mins, minErr = an.Minutes(ctx, room, from, to)
	}()
	go func() {
		defer wg.Done()
		phrases, phraseErr = an.TopPhrases(ctx, room, from, to, blocked, limit)
	}()
	if vl, ok := a.cfg.History.(history.VerdictLog); ok {
		wg.Add(1)
		go func() {
			defer wg.Done()
			verdicts, verErr = vl.Verdicts(ctx, room, from, to)
		}()
	}
	wg.Wait()
	if err := errors.Join(minErr, phraseErr, verErr); err != nil {
		a.storeFailed(w, room, err)
		return
	}
	resp.Verdicts = append(resp.Verdicts, verdicts...)
	resp.Minutes = append(resp.Minutes, mins...)
	resp.Phrases = append(resp.Phrases, phrases...)
	for _, m := range mins {
		resp.Messages += m.Messages
		resp.Chatters = max(resp.Chatters, m.Chatters)
	}
	q := url.Values{"room": {room}}
	if sess != nil {
		resp.Session = sess.ID
		q.Set("session", sess.ID)
	} else {
		q.Set("from", strconv.FormatInt(from, 10))
		q.Set("to", strconv.FormatInt(to, 10))
	}
	for _, h := range history.Highlights(mins, from, to) {
		q.Set("at", strconv.FormatInt(max(h.Minute, from), 10))
		resp.Highlights = append(resp.Highlights, HighlightLink{Highlight: h, Replay: "/replay?" + q.Encode()})
	}
	writeJSON(w, http.StatusOK, resp)
}

// blockedWords returns the room's keyword list (whatever its action:
// block, mask or hold), left out of top phrases.
func (a *API) blockedWords(room string) []string {
	return a.cfg.Engine.RoomKeywords(room).Words
}
