package httpapi

import (
	"net/http"
	"sort"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// userWindow is how many of a room's newest messages the user endpoints
// look at: "recent chatters" and a user's recent messages come from them.
const userWindow = 1000

// Chatter is one entry of GET /api/rooms/{room}/users.
type Chatter struct {
	UID  string `json:"uid"`
	Name string `json:"name"`
	// Role is the sender's role when not a plain viewer (mod, streamer,
	// service); service accounts cannot be banned in a meaningful way
	// (their publishes are trusted), so the dashboard offers no ban.
	Role string `json:"role,omitempty"`
	// Messages is how many of the window's messages are theirs (deleted
	// ones included).
	Messages int `json:"messages"`
	// LastTS and LastSeq are of their newest message in the window.
	LastTS  int64  `json:"last_ts"`
	LastSeq uint64 `json:"last_seq"`
	// Ban is the user's ban or timeout in the room, when one is in force.
	Ban *presence.Ban `json:"ban,omitempty"`
}

// UsersResponse is the body of GET /api/rooms/{room}/users.
type UsersResponse struct {
	Room  string    `json:"room"`
	Users []Chatter `json:"users"`
	// Window is how many of the room's newest messages were looked at.
	Window int `json:"window"`
}

// UserResponse is the body of GET /api/rooms/{room}/users/{uid}.
type UserResponse struct {
	Room string `json:"room"`
	Chatter
	// Recent holds the user's messages among the room's newest Window
	// messages, oldest first, deleted ones marked "deleted": true.
	Recent []protocol.Message `json:"recent"`
	Window int                `json:"window"`
}

// recentWindow reads the room's newest userWindow messages, deleted ones
// included; it writes 503 and reports false when history fails.
func (a *API) recentWindow(w http.ResponseWriter, r *http.Request, room string) ([]protocol.Message, bool) {
	msgs, err := a.cfg.History.Range(r.Context(), room, history.Filter{Limit: userWindow, Tail: true, IncludeDeleted: true})
	if err != nil {
		a.cfg.Logger.Warn("moderation: history read failed", "room", room, "err", err)
		writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "history unavailable")
		return nil, false
	}
	return msgs, true
}

// activeBans returns the room's bans in force, by uid; nil without a ban
// store (or when it fails: the lists are still useful without bans).
func (a *API) activeBans(r *http.Request, room string) map[string]presence.Ban {
	out := map[string]presence.Ban{}
	now := time.Now()
	switch {
	case a.cfg.Bans != nil:
		bans, err := a.cfg.Bans.List(r.Context(), room)
		if err != nil {
			a.cfg.Logger.Warn("moderation: ban list failed", "room", room, "err", err)
			return out
		}
		for _, b := range bans {
			if b.Until.IsZero() || b.Until.After(now) {
				out[b.UID] = b
			}
		}
	case a.cfg.Engine != nil:
		for _, b := range a.cfg.Engine.Bans(room, now) {
			out[b.UID] = presence.Ban{Room: room, UID: b.UID, Until: b.Until}
		}
	}
	return out
}

// getUsers lists the room's recent chatters, newest first; q narrows them
// to those whose name or uid contains it (case-insensitive).
func (a *API) getUsers(w http.ResponseWriter, r *http.Request, room string, _ *auth.Claims) {
	q := r.URL.Query()
	needle := strings.TrimSpace(q.Get("q"))
	if !utf8.ValidString(needle) || utf8.RuneCountInString(needle) > maxUIDLength {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "q must be at most 128 characters of UTF-8")
		return
	}
	limit, ok := queryCount(w, r, "limit", 50, 200)
	if !ok {
		return
	}
	msgs, ok := a.recentWindow(w, r, room)
	if !ok {
		return
	}
	needle = strings.ToLower(needle)
	byUID := map[string]*Chatter{}
	for _, m := range msgs {
		if m.UID == "" {
			continue
		}
		c := byUID[m.UID]
		if c == nil {
			c = &Chatter{UID: m.UID}
			byUID[m.UID] = c
		}
		c.Messages++
		c.Name, c.Role, c.LastTS, c.LastSeq = m.Name, m.Role, m.TS, m.Seq // ascending: the newest wins
	}
	bans := a.activeBans(r, room)
	users := make([]Chatter, 0, len(byUID))
	for _, c := range byUID {
		if needle != "" && !strings.Contains(strings.ToLower(c.Name), needle) && !strings.Contains(strings.ToLower(c.UID), needle) {
			continue
		}
		if b, ok := bans[c.UID]; ok {
			c.Ban = &b
		}
		users = append(users, *c)
	}
	sort.Slice(users, func(i, j int) bool { return users[i].LastSeq > users[j].LastSeq })
	if len(users) > limit {
		users = users[:limit]
	}
	writeJSON(w, http.StatusOK, UsersResponse{Room: room, Users: users, Window: userWindow})
}

// getUser is one user's card: their recent messages in the room and their
// ban, if any. A user with no recent message is answered with an empty
// list (a moderator may look up a uid to ban it), not 404.
func (a *API) getUser(w http.ResponseWriter, r *http.Request, room string, _ *auth.Claims) {
	uid := r.PathValue("uid")
	if uid == "" || len(uid) > maxUIDLength || !utf8.ValidString(uid) {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "uid must be 1-128 bytes of UTF-8")
		return
	}
	msgs, ok := a.recentWindow(w, r, room)
	if !ok {
		return
	}
	resp := UserResponse{Room: room, Chatter: Chatter{UID: uid}, Recent: []protocol.Message{}, Window: userWindow}
	for _, m := range msgs {
		if m.UID != uid {
			continue
		}
		m.Room = ""
		resp.Recent = append(resp.Recent, m)
		resp.Messages++
		resp.Name, resp.Role, resp.LastTS, resp.LastSeq = m.Name, m.Role, m.TS, m.Seq
	}
	if b, ok := a.activeBans(r, room)[uid]; ok {
		resp.Ban = &b
	}
	writeJSON(w, http.StatusOK, resp)
}
