package httpapi

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/bytedance/sonic"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

var apiJSON = sonic.Config{NoQuoteTextMarshaler: true}.Froze()

// maxGuestName is the longest guest display name, in runes (POST
// /api/guest; docs/api.md, docs/protocol.md "Limits").
const maxGuestName = 24

// APIConfig configures the HTTP API.
type APIConfig struct {
	// Bus carries publishes to logic and moderation events out. Required.
	Bus bus.Bus
	// History serves the history endpoints. Required.
	History history.Store
	// Presence serves online counts and top rooms. Nil means they read 0.
	Presence presence.Presence
	// Signer verifies bearer tokens. Required.
	Signer *auth.Signer
	// Engine answers settings and keyword reads. Nil means defaults.
	Engine *moderation.Engine
	// ID is this API instance's reply address on the bus. Zero value means
	// "api-<hostname>-<pid>".
	ID string
	// Guests enables POST /api/guest, which hands out short-lived viewer
	// tokens for a chosen name (development and demo setups).
	Guests bool
	// WSPort is the WebSocket port the pages connect to (GET /api/config).
	WSPort int
	// MaxBody bounds request bodies. Zero value means 64 KiB.
	MaxBody int64
	// PublishTimeout bounds the wait for logic's verdict on a publish.
	// Zero value means 5s.
	PublishTimeout time.Duration
	// Logger receives logs. Zero value means slog.Default().
	Logger *slog.Logger
	// Bans records bans and timeouts with their reason (shared by every
	// instance). Nil means bans live only in Engine and on the control
	// stream.
	Bans presence.Bans
	// KV persists room settings and keyword lists. Nil means they are not
	// persisted beyond the engines that applied them.
	KV presence.KV
	// Rooms loads a room's persisted state into Engine before a moderator
	// endpoint reads or changes it (wrap with Loaded). Nil means Engine
	// holds only what this process saw.
	Rooms moderation.RoomLoader
	// Audit records moderators' actions and pushes. Nil means an in-memory
	// log of this instance: the last 1,000 actions per room, and of each
	// kind of push.
	Audit AuditLog
	// PurgeWindow is how far back a ban retracts the user's messages.
	// Zero value means 10 minutes.
	PurgeWindow time.Duration
	// PurgeGrace is how far past the ban the purge reaches: messages with
	// a ts up to PurgeGrace after it (but not after a timeout's end) are
	// retracted too, for logic workers whose clock runs ahead and for
	// sends accepted before the ban reached every worker. Zero value
	// means 5 seconds.
	PurgeGrace time.Duration
	// NoticeAllLimit bounds POST /api/notices per service account and API
	// instance. Zero value means DefaultNoticeAllLimit (3, then one per 10 s).
	NoticeAllLimit PushLimit
	// UserNoticeLimit bounds POST /api/users/{uid}/notice per service
	// account and API instance. Zero value means DefaultUserNoticeLimit
	// (50, then 20 per second).
	UserNoticeLimit PushLimit
	// AllowedOrigins lists the browser origins (exact, e.g.
	// "https://example.com"; "*" for any) that may call the public
	// endpoints (config, guest, rooms, history, online) from their pages:
	// the gateway's --origins list. Empty means same-origin only: no CORS
	// headers are sent.
	AllowedOrigins []string
}

// API is the HTTP API of danmaku: history, online counts, publishing and
// (in the moderation files) the moderators' endpoints. See docs/api.md.
type API struct {
	cfg     APIConfig
	ingest  bus.Publisher
	control bus.Publisher
	nextReq atomic.Uint64

	mu      sync.Mutex // guards waiters
	waiters map[uint64]chan bus.Reply

	noticeAll  *pushLimiters // POST /api/notices
	userNotice *pushLimiters // POST /api/users/{uid}/notice

	reply bus.Publisher         // answers to held senders
	held  *moderation.HeldQueue // fed by the control stream
	audit AuditLog
}

// NewAPI returns the API.
func NewAPI(cfg APIConfig) (*API, error) {
	switch {
	case cfg.Bus == nil:
		return nil, errors.New("moderation: APIConfig.Bus is required")
	case cfg.History == nil:
		return nil, errors.New("moderation: APIConfig.History is required")
	case cfg.Signer == nil:
		return nil, errors.New("moderation: APIConfig.Signer is required")
	}
	if cfg.ID == "" {
		host, _ := os.Hostname()
		cfg.ID = "api-" + host + "-" + strconv.Itoa(os.Getpid())
	}
	if cfg.MaxBody == 0 {
		cfg.MaxBody = 64 << 10
	}
	if cfg.PublishTimeout == 0 {
		cfg.PublishTimeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.PurgeWindow == 0 {
		cfg.PurgeWindow = 10 * time.Minute
	}
	if cfg.PurgeGrace <= 0 {
		cfg.PurgeGrace = 5 * time.Second
	}
	if cfg.Audit == nil {
		cfg.Audit = NewMemoryAudit(0, 0)
	}
	if cfg.NoticeAllLimit.Every <= 0 || cfg.NoticeAllLimit.Burst <= 0 {
		cfg.NoticeAllLimit = DefaultNoticeAllLimit
	}
	if cfg.UserNoticeLimit.Every <= 0 || cfg.UserNoticeLimit.Burst <= 0 {
		cfg.UserNoticeLimit = DefaultUserNoticeLimit
	}
	return &API{
		noticeAll:  newPushLimiters(cfg.NoticeAllLimit),
		userNotice: newPushLimiters(cfg.UserNoticeLimit),
		reply:      cfg.Bus.Publisher(bus.StreamReply),
		held:       moderation.NewHeldQueue(0, 0, 0),
		audit:      cfg.Audit,
		cfg:        cfg,
		ingest:     cfg.Bus.Publisher(bus.StreamIngest),
		control:    cfg.Bus.Publisher(bus.StreamControl),
		waiters:    make(map[uint64]chan bus.Reply),
	}, nil
}

// Run reads logic's replies to this API's publishes, and the control
// stream (held messages for the review queue), until ctx is done.
func (a *API) Run(ctx context.Context) error {
	done := make(chan struct{})
	defer func() { <-done }()
	go func() {
		defer close(done)
		a.runControl(ctx)
	}()
	bus.Follow(ctx, a.cfg.Bus, bus.StreamReply, bus.ConsumerOptions{Key: a.cfg.ID}, func(recs []bus.Record) {
		for _, rec := range recs {
			var rp bus.Reply
			if bus.Unmarshal(rec.Value, &rp) != nil {
				continue
			}
			a.mu.Lock()
			ch := a.waiters[rp.Conn]
			delete(a.waiters, rp.Conn)
			a.mu.Unlock()
			if ch != nil {
				ch <- rp
			}
		}
	}, nil)
	return nil
}

// Register adds the API's routes to mux.
func (a *API) Register(mux *http.ServeMux) {
	// The public endpoints answer other origins of the allow-list (CORS).
	public := map[string]http.HandlerFunc{
		"GET /api/config":               a.getConfig,
		"POST /api/guest":               a.postGuest,
		"GET /api/rooms":                a.getRooms,
		"GET /api/rooms/{room}/history": a.room(a.getHistory),
		"GET /api/rooms/{room}/online":  a.room(a.getOnline),
	}
	maps.Copy(public, a.publicStreams())
	for pattern, h := range public {
		mux.HandleFunc(pattern, a.public(h))
		_, path, _ := strings.Cut(pattern, " ")
		mux.HandleFunc("OPTIONS "+path, a.preflight)
	}
	mux.HandleFunc("POST /api/rooms/{room}/publish", a.room(a.postPublish))
	a.registerModeration(mux)
	a.registerPush(mux)
	a.registerStreams(mux)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, protocol.CodeNotFound, "no such endpoint")
	})
}

// AllowedOrigins returns the origins that may call the public endpoints.
func (a *API) AllowedOrigins() []string { return a.cfg.AllowedOrigins }

// originAllowed reports whether a browser page of origin may call the
// public endpoints.
func (a *API) originAllowed(origin string) bool {
	for _, o := range a.cfg.AllowedOrigins {
		if o == "*" || o == origin {
			return true
		}
	}
	return false
}

// public adds CORS headers for an allowed Origin to the answers of h.
// Without an Origin header, or for one not in the list, nothing is added
// (the browser then keeps the answer from the calling page).
func (a *API) public(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Vary", "Origin")
		if o := r.Header.Get("Origin"); o != "" && a.originAllowed(o) {
			w.Header().Set("Access-Control-Allow-Origin", o)
		}
		h(w, r)
	}
}

// preflight answers a CORS preflight for a public endpoint: 204 with the
// allowed methods and headers for an allowed Origin, 403 otherwise.
func (a *API) preflight(w http.ResponseWriter, r *http.Request) {
	w.Header().Add("Vary", "Origin")
	o := r.Header.Get("Origin")
	if o == "" || !a.originAllowed(o) {
		writeError(w, http.StatusForbidden, protocol.CodeForbidden, "origin not allowed (the server's --origins list)")
		return
	}
	h := w.Header()
	h.Set("Access-Control-Allow-Origin", o)
	h.Set("Access-Control-Allow-Methods", "GET, POST")
	h.Set("Access-Control-Allow-Headers", "Content-Type")
	h.Set("Access-Control-Max-Age", "600")
	w.WriteHeader(http.StatusNoContent)
}

// room validates the {room} path value before calling h.
func (a *API) room(h func(w http.ResponseWriter, r *http.Request, room string)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		room := r.PathValue("room")
		if !protocol.ValidRoom(room) {
			writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "room must match [A-Za-z0-9_-]{1,64}")
			return
		}
		h(w, r, room)
	}
}

// ErrorBody is the JSON body of every API error.
type ErrorBody struct {
	Error struct {
		Code    protocol.Code `json:"code"`
		Message string        `json:"message"`
	} `json:"error"`
}

func writeError(w http.ResponseWriter, status int, code protocol.Code, msg string) {
	var b ErrorBody
	b.Error.Code, b.Error.Message = code, msg
	writeJSON(w, status, b)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := apiJSON.Marshal(v)
	if err != nil {
		status, body = http.StatusInternalServerError, []byte(`{"error":{"code":"internal","message":"encoding failed"}}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// readJSON decodes a bounded JSON body into v; it writes the error itself
// and reports false on failure.
func (a *API) readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, a.cfg.MaxBody))
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			writeError(w, http.StatusRequestEntityTooLarge, protocol.CodeTooLarge, fmt.Sprintf("body larger than %d bytes", a.cfg.MaxBody))
		} else {
			writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "cannot read body")
		}
		return false
	}
	if err := apiJSON.Unmarshal(body, v); err != nil {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "body must be a JSON object")
		return false
	}
	return true
}

// claims returns the bearer token's claims, or writes 401 and returns nil.
func (a *API) claims(w http.ResponseWriter, r *http.Request) *auth.Claims {
	h := r.Header.Get("Authorization")
	if len(h) < 8 || !strings.EqualFold(h[:7], "bearer ") {
		w.Header().Set("WWW-Authenticate", `Bearer realm="danmaku"`)
		writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, "missing bearer token")
		return nil
	}
	c, err := a.cfg.Signer.Verify(strings.TrimSpace(h[7:]))
	if err != nil {
		w.Header().Set("WWW-Authenticate", `Bearer realm="danmaku", error="invalid_token"`)
		msg := "invalid token"
		switch {
		case errors.Is(err, auth.ErrExpired):
			msg = "token expired"
		case errors.Is(err, auth.ErrNotYetValid):
			msg = "token not valid yet"
		}
		writeError(w, http.StatusUnauthorized, protocol.CodeUnauthorized, msg)
		return nil
	}
	return c
}

// moderator returns the claims if they may moderate room, else writes
// 401/403 and returns nil.
func (a *API) moderator(w http.ResponseWriter, r *http.Request, room string) *auth.Claims {
	c := a.claims(w, r)
	if c == nil {
		return nil
	}
	if !c.CanModerate(room) {
		writeError(w, http.StatusForbidden, protocol.CodeForbidden, "token does not allow moderating this room")
		return nil
	}
	return c
}

func (a *API) getConfig(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"ws_port": a.cfg.WSPort, "ws_path": "/ws", "guests": a.cfg.Guests})
}

// postGuest issues a viewer token for a guest name: {name} → {token, uid}.
func (a *API) postGuest(w http.ResponseWriter, r *http.Request) {
	if !a.cfg.Guests {
		writeError(w, http.StatusNotFound, protocol.CodeNotFound, "guest tokens are disabled")
		return
	}
	var body struct {
		Name string `json:"name"`
	}
	if !a.readJSON(w, r, &body) {
		return
	}
	name, perr := protocol.CleanText(body.Name)
	if perr != nil || len([]rune(name)) > maxGuestName {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "name must be 1-24 characters")
		return
	}
	uid := "guest-" + strconv.FormatUint(uint64(time.Now().UnixNano())^a.nextReq.Add(1)*0x9e3779b97f4a7c15, 36)
	tok, err := a.cfg.Signer.Sign(uid, name, auth.RoleViewer, nil, 24*time.Hour)
	if err != nil {
		writeError(w, http.StatusInternalServerError, protocol.CodeInternal, "cannot sign")
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"token": tok, "uid": uid, "name": name})
}

// queryLimit reads the request's limit parameter: def when absent; a
// value outside 1-1000 is answered 400 and reported false.
func queryLimit(w http.ResponseWriter, r *http.Request, def int) (int, bool) {
	return queryCount(w, r, "limit", def, 1000)
}

// queryCount reads the request's parameter name, a whole number from 1 to
// most: def when absent; any other value is answered 400 ("name must be
// 1-most") and reported false.
func queryCount(w http.ResponseWriter, r *http.Request, name string, def, most int) (int, bool) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return def, true
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > most {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, fmt.Sprintf("%s must be 1-%d", name, most))
		return 0, false
	}
	return n, true
}

func (a *API) getRooms(w http.ResponseWriter, r *http.Request) {
	n, ok := queryLimit(w, r, 20)
	if !ok {
		return
	}
	rooms := []presence.RoomCount{}
	if a.cfg.Presence != nil {
		top, err := a.cfg.Presence.Top(r.Context(), n)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "presence unavailable")
			return
		}
		if top != nil {
			rooms = top
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"rooms": rooms})
}

// HistoryResponse is the body of GET /api/rooms/{room}/history.
type HistoryResponse struct {
	Room string             `json:"room"`
	Msgs []protocol.Message `json:"msgs"`
	// Next is the after_seq of the next page when more may follow.
	Next uint64 `json:"next,omitempty"`
}

func (a *API) getHistory(w http.ResponseWriter, r *http.Request, room string) {
	q := r.URL.Query()
	f := history.Filter{Limit: 50}
	var err error
	parse := func(name string, bits int) (v uint64, ok bool) {
		s := q.Get(name)
		if s == "" {
			return 0, true
		}
		v, err = strconv.ParseUint(s, 10, bits)
		if err != nil {
			writeError(w, http.StatusBadRequest, protocol.CodeInvalid, name+" must be a non-negative integer")
			return 0, false
		}
		return v, true
	}
	var ok bool
	if f.AfterSeq, ok = parse("after_seq", 64); !ok {
		return
	}
	from, ok := parse("from", 62)
	if !ok {
		return
	}
	to, ok := parse("to", 62)
	if !ok {
		return
	}
	f.FromMs, f.ToMs = int64(from), int64(to)
	if f.ToMs != 0 && f.FromMs > f.ToMs {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "from must not be after to")
		return
	}
	limit, ok := parse("limit", 32)
	if !ok {
		return
	}
	if limit != 0 {
		if limit > 1000 {
			writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "limit must be 1-1000")
			return
		}
		f.Limit = int(limit)
	}
	if v := q.Get("include_deleted"); v == "1" || v == "true" {
		if a.moderator(w, r, room) == nil {
			return
		}
		f.IncludeDeleted = true
	}
	msgs, err := a.cfg.History.Range(r.Context(), room, f)
	if err != nil {
		a.cfg.Logger.Warn("history read failed", "room", room, "err", err)
		writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "history unavailable")
		return
	}
	resp := HistoryResponse{Room: room, Msgs: msgs}
	if resp.Msgs == nil {
		resp.Msgs = []protocol.Message{}
	}
	for i := range resp.Msgs {
		resp.Msgs[i].Room = ""
	}
	if len(msgs) == f.Limit && len(msgs) > 0 {
		resp.Next = msgs[len(msgs)-1].Seq
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) getOnline(w http.ResponseWriter, r *http.Request, room string) {
	n := 0
	if a.cfg.Presence != nil {
		var err error
		n, err = a.cfg.Presence.Online(r.Context(), room)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "presence unavailable")
			return
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"room": room, "online": n})
}

// PublishRequest is the body of POST /api/rooms/{room}/publish.
type PublishRequest struct {
	Text string `json:"text"`
	// ID makes retries idempotent; generated when empty.
	ID string `json:"id,omitempty"`
	// Kind is "system", "paid" or "highlight"; empty for a plain message.
	Kind string `json:"kind,omitempty"`
	// Color is an optional #rrggbb display colour.
	Color string `json:"color,omitempty"`
	// Mode is the display mode: "scroll" (or empty), "top" or "bottom".
	// The room's mode_policy decides who may use top and bottom.
	Mode string `json:"mode,omitempty"`
	// Size is "small", "normal" (or empty) or "large"; the room's
	// size_policy decides who may use small and large.
	Size string `json:"size,omitempty"`
	// Name overrides the display name (service tokens only).
	Name string `json:"name,omitempty"`
	// Role "viewer" (service tokens only) publishes the message as a plain
	// viewer's, with no role: a service relaying chat from elsewhere. Such
	// messages are thinned and shed like viewers' (a service's own are
	// never shed). Empty: the token's role.
	Role string `json:"role,omitempty"`
	// Retry says the request re-sends ID after a lost answer (a timeout or
	// a 503): see protocol.ClientFrame.Retry.
	Retry bool `json:"retry,omitempty"`
}

// postPublish serves POST /api/rooms/{room}/publish (service or mod tokens).
func (a *API) postPublish(w http.ResponseWriter, r *http.Request, room string) {
	c := a.claims(w, r)
	if c == nil {
		return
	}
	if c.Role != auth.RoleService && !c.CanModerate(room) {
		writeError(w, http.StatusForbidden, protocol.CodeForbidden, "publishing needs a service token or a mod token for this room")
		return
	}
	var req PublishRequest
	if !a.readJSON(w, r, &req) {
		return
	}
	text, ok := checkPublish(w, &req)
	if !ok {
		return
	}
	generated, ok := a.publishID(w, &req)
	if !ok {
		return
	}
	role, ok := publishRole(w, c, req.Role)
	if !ok {
		return
	}
	rp, err := a.Publish(r.Context(), bus.Ingest{Room: room, ID: req.ID, UID: c.UID(), Name: publishName(c, req.Name), Role: role,
		Text: text, Kind: req.Kind, Color: req.Color, Mode: req.Mode, Size: req.Size, Trusted: c.Role == auth.RoleService, GeneratedID: generated, Retry: req.Retry && !generated})
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, err.Error())
		return
	}
	writePublishReply(w, room, req.ID, rp)
}

// checkPublish validates the text, kind, color, mode and size of req,
// normalising mode and size in place; it returns the cleaned text, or
// writes a 400 and returns false.
func checkPublish(w http.ResponseWriter, req *PublishRequest) (string, bool) {
	text, perr := protocol.CleanText(req.Text)
	if perr != nil {
		writeError(w, http.StatusBadRequest, perr.Code, perr.Message)
		return "", false
	}
	switch req.Kind {
	case protocol.KindNormal, protocol.KindSystem, protocol.KindPaid, protocol.KindHighlight:
	default:
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "kind must be system, paid or highlight")
		return "", false
	}
	if req.Color != "" && !validColor(req.Color) {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "color must be #rrggbb")
		return "", false
	}
	if req.Mode, perr = protocol.ParseMode(req.Mode); perr != nil {
		writeError(w, http.StatusBadRequest, perr.Code, perr.Message)
		return "", false
	}
	if req.Size, perr = protocol.ParseSize(req.Size); perr != nil {
		writeError(w, http.StatusBadRequest, perr.Code, perr.Message)
		return "", false
	}
	return text, true
}

// publishID generates req.ID when it is empty (and says so) or checks the
// caller's; on a bad ID it writes a 400 and returns false.
func (a *API) publishID(w http.ResponseWriter, req *PublishRequest) (generated, ok bool) {
	reqID := a.nextReq.Add(1)
	generated = req.ID == ""
	if generated {
		req.ID = "pub-" + strconv.FormatInt(time.Now().UnixNano(), 36) + "-" + strconv.FormatUint(reqID, 36)
	} else if !protocol.ValidID(req.ID) {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "id must be 1-64 printable ASCII characters")
		return false, false
	}
	return generated, true
}

// publishRole returns the role the message is published with: the
// token's, or viewer when a service token asks for it; otherwise it
// writes a 403 or 400 and returns false.
func publishRole(w http.ResponseWriter, c *auth.Claims, want string) (string, bool) {
	switch want {
	case "":
		return c.Role, true
	case auth.RoleViewer:
		if c.Role != auth.RoleService {
			writeError(w, http.StatusForbidden, protocol.CodeForbidden, "role viewer needs a service token")
			return "", false
		}
		return auth.RoleViewer, true // no role tag on the message (logic's roleTag)
	default:
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "role must be viewer or empty")
		return "", false
	}
}

// publishName returns the display name: the token's, or the override a
// service token gives when it is clean and at most 32 characters.
func publishName(c *auth.Claims, override string) string {
	if c.Role == auth.RoleService && override != "" {
		if n, perr := protocol.CleanText(override); perr == nil && len([]rune(n)) <= 32 {
			return n
		}
	}
	return c.Name
}

// writePublishReply maps logic's verdict to the HTTP answer: the reject
// code with its status (429 with Retry-After, 403, 503 or 400), 202 for a
// held message, or 200 with the seq.
func writePublishReply(w http.ResponseWriter, room, id string, rp bus.Reply) {
	switch {
	case rp.Code != "":
		status := http.StatusBadRequest
		switch rp.Code {
		case protocol.CodeRateLimited, protocol.CodeSlowMode:
			status = http.StatusTooManyRequests
			if rp.RetryAfterMs > 0 {
				w.Header().Set("Retry-After", strconv.FormatInt((rp.RetryAfterMs+999)/1000, 10))
			}
		case protocol.CodeBanned, protocol.CodeUnauthorized:
			status = http.StatusForbidden
		case protocol.CodeUnavailable:
			status = http.StatusServiceUnavailable
		}
		writeError(w, status, rp.Code, rp.Message)
	case rp.Held:
		writeJSON(w, http.StatusAccepted, map[string]any{"room": room, "id": id, "held": true})
	default:
		writeJSON(w, http.StatusOK, map[string]any{"room": room, "id": id, "seq": rp.Seq})
	}
}

// Publish sends in to logic and waits for its verdict. Gateway and Conn
// are filled in.
func (a *API) Publish(ctx context.Context, in bus.Ingest) (bus.Reply, error) {
	in.Gateway = a.cfg.ID
	in.Conn = a.nextReq.Add(1)
	in.TS = time.Now().UnixMilli()
	ch := make(chan bus.Reply, 1)
	a.mu.Lock()
	a.waiters[in.Conn] = ch
	a.mu.Unlock()
	defer func() {
		a.mu.Lock()
		delete(a.waiters, in.Conn)
		a.mu.Unlock()
	}()
	v, err := bus.Marshal(in)
	if err != nil {
		return bus.Reply{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, a.cfg.PublishTimeout)
	defer cancel()
	if err := a.ingest.Publish(ctx, bus.Record{Key: in.Room, Value: v}); err != nil {
		return bus.Reply{}, fmt.Errorf("pipeline unavailable: %w", err)
	}
	select {
	case rp := <-ch:
		return rp, nil
	case <-ctx.Done():
		return bus.Reply{}, errors.New("no verdict in time; retry with the same id")
	}
}

// PublishControl publishes a moderation event.
func (a *API) PublishControl(ctx context.Context, ev bus.Control) error {
	if ev.TS == 0 {
		ev.TS = time.Now().UnixMilli()
	}
	v, err := bus.Marshal(ev)
	if err != nil {
		return err
	}
	return a.control.Publish(ctx, bus.Record{Key: ev.Room, Value: v})
}

func validColor(s string) bool {
	if len(s) != 7 || s[0] != '#' {
		return false
	}
	for i := 1; i < 7; i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
			return false
		}
	}
	return true
}

// ClientIP returns the request's remote IP (no proxy headers are trusted).
func ClientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
