package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// Limits of moderation requests.
const (
	maxBanDuration = 365 * 24 * 3600 // seconds
	maxReasonRunes = 200
	maxUIDLength   = 128
)

// registerModeration adds the moderators' endpoints (settings, keywords,
// bans, deletions, held queue, audit log, recent chatters and user cards)
// to mux. Every one of them needs a
// token that may moderate the room (see auth.Claims.CanModerate).
func (a *API) registerModeration(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/rooms/{room}/settings", a.mod(a.getSettings))
	mux.HandleFunc("PUT /api/rooms/{room}/settings", a.mod(a.putSettings))
	mux.HandleFunc("GET /api/rooms/{room}/keywords", a.mod(a.getKeywords))
	mux.HandleFunc("PUT /api/rooms/{room}/keywords", a.mod(a.putKeywords))
	mux.HandleFunc("GET /api/rooms/{room}/bans", a.mod(a.getBans))
	mux.HandleFunc("POST /api/rooms/{room}/bans", a.mod(a.postBan))
	mux.HandleFunc("DELETE /api/rooms/{room}/bans/{uid}", a.mod(a.deleteBan))
	mux.HandleFunc("DELETE /api/rooms/{room}/messages/{seq}", a.mod(a.deleteMessage))
	mux.HandleFunc("GET /api/rooms/{room}/held", a.mod(a.getHeld))
	mux.HandleFunc("POST /api/rooms/{room}/held/{id}/approve", a.mod(a.approveHeld))
	mux.HandleFunc("POST /api/rooms/{room}/held/{id}/reject", a.mod(a.rejectHeld))
	mux.HandleFunc("GET /api/rooms/{room}/audit", a.mod(a.getAudit))
	mux.HandleFunc("GET /api/rooms/{room}/users", a.mod(a.getUsers))
	mux.HandleFunc("GET /api/rooms/{room}/users/{uid}", a.mod(a.getUser))
}

// modHandler handles a moderation request of an authorised moderator.
type modHandler func(w http.ResponseWriter, r *http.Request, room string, c *auth.Claims)

// mod validates the room and the moderator's token before calling h.
func (a *API) mod(h modHandler) http.HandlerFunc {
	return a.room(func(w http.ResponseWriter, r *http.Request, room string) {
		c := a.moderator(w, r, room)
		if c == nil {
			return
		}
		if a.cfg.Rooms != nil && a.cfg.Engine != nil {
			_ = a.cfg.Rooms.LoadRoom(r.Context(), room, a.cfg.Engine)
		}
		h(w, r, room, c)
	})
}

// publishControls publishes events in order; on failure it writes 503 and
// reports false.
func (a *API) publishControls(w http.ResponseWriter, r *http.Request, c *auth.Claims, evs ...bus.Control) bool {
	for _, ev := range evs {
		ev.By = c.UID()
		if err := a.PublishControl(r.Context(), ev); err != nil {
			a.cfg.Logger.Warn("moderation: publishing control event failed", "op", ev.Op, "room", ev.Room, "err", err)
			writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "control stream unavailable, retry")
			return false
		}
	}
	return true
}

// record appends an audit entry; a failure is logged, not returned: the
// action itself has happened.
func (a *API) record(ctx context.Context, c *auth.Claims, e AuditEntry) {
	e.At, e.By, e.ByName = time.Now(), c.UID(), c.Name
	if err := a.audit.Record(ctx, e); err != nil {
		a.cfg.Logger.Warn("moderation: audit record failed", "room", e.Room, "action", e.Action, "err", err)
	}
}

// persist stores v under key in the KV store, when there is one.
func (a *API) persist(ctx context.Context, key string, v []byte) {
	if a.cfg.KV == nil {
		return
	}
	if err := a.cfg.KV.Put(ctx, key, v); err != nil {
		a.cfg.Logger.Warn("moderation: persisting room configuration failed", "key", key, "err", err)
	}
}

func (a *API) getSettings(w http.ResponseWriter, r *http.Request, room string, _ *auth.Claims) {
	writeJSON(w, http.StatusOK, a.settings(room))
}

// settings returns the room's effective settings.
func (a *API) settings(room string) moderation.Settings {
	if a.cfg.Engine != nil {
		return a.cfg.Engine.Settings(room)
	}
	return moderation.BuiltinSettings()
}

func (a *API) putSettings(w http.ResponseWriter, r *http.Request, room string, c *auth.Claims) {
	var s moderation.Settings
	if !a.readJSON(w, r, &s) {
		return
	}
	if err := s.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, strings.TrimPrefix(err.Error(), moderation.ErrInvalid.Error()+": "))
		return
	}
	before := a.settings(room)
	if a.cfg.Engine != nil {
		if err := a.cfg.Engine.SetSettings(room, s); err != nil {
			writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, err.Error())
			return
		}
	}
	after := s.WithDefaults(moderation.BuiltinSettings())
	if a.cfg.Engine != nil {
		after = a.cfg.Engine.Settings(room)
	}
	data, _ := json.Marshal(s)
	a.persist(r.Context(), moderation.SettingsKey(room), data)
	evs := []bus.Control{{Op: bus.ControlSettings, Room: room, Data: data}}
	notice := settingsNotice(before, after)
	if notice != "" {
		evs = append(evs, bus.Control{Op: bus.ControlNotice, Room: room, Text: notice})
	}
	if !a.publishControls(w, r, c, evs...) {
		return
	}
	a.record(r.Context(), c, AuditEntry{Room: room, Action: AuditSettings, Details: settingsDetails(after)})
	writeJSON(w, http.StatusOK, after)
}

// settingsNotice describes for viewers what changed between two effective
// settings; "" when nothing they would notice did.
func settingsNotice(before, after moderation.Settings) string {
	var parts []string
	if before.SlowModeSec != after.SlowModeSec {
		if after.SlowModeSec > 0 {
			parts = append(parts, fmt.Sprintf("slow mode is on: 1 message every %d s", after.SlowModeSec))
		} else {
			parts = append(parts, "slow mode is off")
		}
	}
	if before.MaxLength != after.MaxLength {
		parts = append(parts, fmt.Sprintf("messages may be up to %d characters", after.MaxLength))
	}
	if before.LinkPolicy != after.LinkPolicy {
		switch after.LinkPolicy {
		case moderation.LinkBlock:
			parts = append(parts, "links are not allowed")
		case moderation.LinkAllowList:
			parts = append(parts, "only links to approved sites are allowed")
		default:
			parts = append(parts, "links are allowed")
		}
	}
	if (before.HoldThreshold > 0) != (after.HoldThreshold > 0) {
		if after.HoldThreshold > 0 {
			parts = append(parts, "some messages are now reviewed by moderators before they appear")
		} else {
			parts = append(parts, "messages are no longer held for review")
		}
	}
	if before.RatePerSec != after.RatePerSec || before.Burst != after.Burst {
		if after.RatePerSec > 0 {
			parts = append(parts, fmt.Sprintf("rate limit: %s messages/s, bursts of %d", strconv.FormatFloat(after.RatePerSec, 'g', 4, 64), after.Burst))
		} else {
			parts = append(parts, "rate limit is off")
		}
	}
	return strings.Join(parts, "; ")
}

// settingsDetails summarises settings for the audit log.
func settingsDetails(s moderation.Settings) string {
	return fmt.Sprintf("slow_mode_sec=%d max_length=%d rate_per_sec=%g burst=%d link_policy=%s hold_threshold=%g",
		s.SlowModeSec, s.MaxLength, s.RatePerSec, s.Burst, s.LinkPolicy, s.HoldThreshold)
}

// KeywordsResponse is the body of GET and PUT /api/rooms/{room}/keywords.
type KeywordsResponse struct {
	Room     string   `json:"room"`
	Keywords []string `json:"keywords"`
	Action   string   `json:"action"`
}

func (a *API) keywords(room string) KeywordsResponse {
	kl := moderation.KeywordList{Action: moderation.ActionBlock}
	if a.cfg.Engine != nil {
		kl = a.cfg.Engine.RoomKeywords(room)
	}
	resp := KeywordsResponse{Room: room, Keywords: kl.Words, Action: kl.Action}
	if resp.Keywords == nil {
		resp.Keywords = []string{}
	}
	if resp.Action == "" {
		resp.Action = moderation.ActionBlock
	}
	return resp
}

func (a *API) getKeywords(w http.ResponseWriter, r *http.Request, room string, _ *auth.Claims) {
	writeJSON(w, http.StatusOK, a.keywords(room))
}

func (a *API) putKeywords(w http.ResponseWriter, r *http.Request, room string, c *auth.Claims) {
	var kl moderation.KeywordList
	if !a.readJSON(w, r, &kl) {
		return
	}
	if kl.Action == "" {
		kl.Action = moderation.ActionBlock
	}
	if err := kl.Validate(); err != nil {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, strings.TrimPrefix(err.Error(), moderation.ErrInvalid.Error()+": "))
		return
	}
	if a.cfg.Engine != nil {
		if err := a.cfg.Engine.SetRoomKeywords(room, kl); err != nil {
			writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, err.Error())
			return
		}
	}
	data, _ := json.Marshal(kl)
	a.persist(r.Context(), moderation.KeywordsKey(room), data)
	if !a.publishControls(w, r, c, bus.Control{Op: bus.ControlKeywords, Room: room, Data: data}) {
		return
	}
	a.record(r.Context(), c, AuditEntry{Room: room, Action: AuditKeywords,
		Details: fmt.Sprintf("%d keywords, action %s", len(kl.Words), kl.Action)})
	resp := KeywordsResponse{Room: room, Keywords: kl.Words, Action: kl.Action}
	if a.cfg.Engine != nil {
		resp = a.keywords(room)
	}
	if resp.Keywords == nil {
		resp.Keywords = []string{}
	}
	writeJSON(w, http.StatusOK, resp)
}

// BanRequest is the body of POST /api/rooms/{room}/bans.
type BanRequest struct {
	UID string `json:"uid"`
	// DurationSec is the length of a timeout; 0 bans permanently.
	DurationSec int64  `json:"duration_s"`
	Reason      string `json:"reason,omitempty"`
}

// BansResponse is the body of GET /api/rooms/{room}/bans.
type BansResponse struct {
	Room string         `json:"room"`
	Bans []presence.Ban `json:"bans"`
}

func (a *API) getBans(w http.ResponseWriter, r *http.Request, room string, _ *auth.Claims) {
	resp := BansResponse{Room: room, Bans: []presence.Ban{}}
	switch {
	case a.cfg.Bans != nil:
		bans, err := a.cfg.Bans.List(r.Context(), room)
		if err != nil {
			writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "ban store unavailable")
			return
		}
		resp.Bans = append(resp.Bans, bans...)
	case a.cfg.Engine != nil:
		for _, b := range a.cfg.Engine.Bans(room, time.Now()) {
			resp.Bans = append(resp.Bans, presence.Ban{Room: room, UID: b.UID, Until: b.Until})
		}
	}
	writeJSON(w, http.StatusOK, resp)
}

func (a *API) postBan(w http.ResponseWriter, r *http.Request, room string, c *auth.Claims) {
	var req BanRequest
	if !a.readJSON(w, r, &req) {
		return
	}
	switch {
	case req.UID == "" || len(req.UID) > maxUIDLength || !utf8.ValidString(req.UID):
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, fmt.Sprintf("uid must be 1-%d bytes of UTF-8", maxUIDLength))
		return
	case req.DurationSec < 0 || req.DurationSec > maxBanDuration:
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, fmt.Sprintf("duration_s must be 0 (permanent) to %d", maxBanDuration))
		return
	case !utf8.ValidString(req.Reason) || utf8.RuneCountInString(req.Reason) > maxReasonRunes:
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, fmt.Sprintf("reason must be at most %d characters", maxReasonRunes))
		return
	}
	now := time.Now()
	var until time.Time
	if req.DurationSec > 0 {
		until = now.Add(time.Duration(req.DurationSec) * time.Second)
	}
	// The purge covers the user's messages accepted before the ban, also
	// those still on their way to history and to the gateways: the store
	// and the gateways remember it up to purgeUntil. It goes first, so a
	// history that cannot take it refuses the whole ban (a retry does it
	// all again); messages accepted meanwhile are within purgeUntil.
	purgeUntil := now.Add(a.cfg.PurgeGrace)
	if !until.IsZero() && until.Before(purgeUntil) {
		purgeUntil = until
	}
	if d, ok := a.cfg.History.(history.Deleter); ok {
		if _, err := d.Purge(r.Context(), room, req.UID, now.Add(-a.cfg.PurgeWindow).UnixMilli(), purgeUntil.UnixMilli()); err != nil {
			a.cfg.Logger.Warn("moderation: history purge failed", "room", room, "uid", req.UID, "err", err)
			writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "history unavailable: the ban was not applied, retry")
			return
		}
	}
	if a.cfg.Bans != nil {
		if err := a.cfg.Bans.Ban(r.Context(), room, req.UID, until, req.Reason, c.UID()); err != nil {
			writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "ban store unavailable")
			return
		}
	}
	if a.cfg.Engine != nil {
		a.cfg.Engine.Ban(room, req.UID, until)
	}
	// The user's messages held for review go too, before the ban event
	// (on which the other API instances drop theirs, and this one finds
	// none left); their senders learn they were refused.
	for _, d := range a.dropHeldOf(room, req.UID) {
		a.answerSender(r.Context(), d, bus.Reply{Code: protocol.CodeBanned, Message: "banned by a moderator"})
	}
	ban := bus.Control{Op: bus.ControlBan, Room: room, UID: req.UID, Reason: req.Reason}
	if !until.IsZero() {
		ban.Until = until.UnixMilli()
	}
	if !a.publishControls(w, r, c, ban, bus.Control{Op: bus.ControlPurge, Room: room, UID: req.UID, Until: purgeUntil.UnixMilli()}) {
		return
	}
	details := "permanent ban"
	if req.DurationSec > 0 {
		details = fmt.Sprintf("timeout %d s", req.DurationSec)
	}
	if req.Reason != "" {
		details += ": " + req.Reason
	}
	a.record(r.Context(), c, AuditEntry{Room: room, Action: AuditBan, UID: req.UID, Details: details})
	writeJSON(w, http.StatusOK, presence.Ban{Room: room, UID: req.UID, Until: until, Reason: req.Reason, By: c.UID(), At: now})
}

func (a *API) deleteBan(w http.ResponseWriter, r *http.Request, room string, c *auth.Claims) {
	uid := r.PathValue("uid")
	if uid == "" || len(uid) > maxUIDLength {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "bad uid")
		return
	}
	// The ban's purge reaches PurgeGrace past the ban: the lift ends it
	// now, before logic accepts the user's messages again, so those are
	// stored and shown. It goes first, so a history that cannot take it
	// refuses the whole unban (a retry does it all again).
	now := time.Now()
	if d, ok := a.cfg.History.(history.Deleter); ok {
		if err := d.EndPurges(r.Context(), room, uid, now.UnixMilli()); err != nil {
			a.cfg.Logger.Warn("moderation: ending the purge failed", "room", room, "uid", uid, "err", err)
			writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "history unavailable: the ban was not lifted, retry")
			return
		}
	}
	if a.cfg.Bans != nil {
		if err := a.cfg.Bans.Unban(r.Context(), room, uid); err != nil {
			writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "ban store unavailable")
			return
		}
	}
	if a.cfg.Engine != nil {
		a.cfg.Engine.Unban(room, uid)
	}
	if !a.publishControls(w, r, c, bus.Control{Op: bus.ControlUnban, Room: room, UID: uid, Until: now.UnixMilli()}) {
		return
	}
	a.record(r.Context(), c, AuditEntry{Room: room, Action: AuditUnban, UID: uid})
	w.WriteHeader(http.StatusNoContent)
}

func (a *API) deleteMessage(w http.ResponseWriter, r *http.Request, room string, c *auth.Claims) {
	seq, err := strconv.ParseUint(r.PathValue("seq"), 10, 64)
	if err != nil || seq == 0 {
		writeError(w, http.StatusBadRequest, protocol.CodeInvalid, "seq must be a positive integer")
		return
	}
	msg, found, err := a.markDeleted(r.Context(), room, seq)
	if err != nil {
		a.cfg.Logger.Warn("moderation: history delete failed", "room", room, "seq", seq, "err", err)
		writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "history unavailable")
		return
	}
	if !found {
		writeError(w, http.StatusNotFound, protocol.CodeNotFound, "no message with this seq")
		return
	}
	if !a.publishControls(w, r, c, bus.Control{Op: bus.ControlDelete, Room: room, UID: msg.UID, Seqs: []uint64{seq}}) {
		return
	}
	a.record(r.Context(), c, AuditEntry{Room: room, Action: AuditDelete, UID: msg.UID, Seq: seq, Details: clip(msg.Text, 80)})
	w.WriteHeader(http.StatusNoContent)
}

// markDeleted finds message seq of room in history and marks it deleted.
// A message acknowledged a moment ago may still be on its way to history,
// so a miss is retried for up to about a second.
func (a *API) markDeleted(ctx context.Context, room string, seq uint64) (protocol.Message, bool, error) {
	for attempt := 0; ; attempt++ {
		msgs, err := a.cfg.History.Range(ctx, room, history.Filter{AfterSeq: seq - 1, Limit: 1, IncludeDeleted: true})
		if err != nil {
			return protocol.Message{}, false, err
		}
		if len(msgs) == 1 && msgs[0].Seq == seq {
			if d, ok := a.cfg.History.(history.Deleter); ok && !msgs[0].Deleted {
				if _, err := d.Delete(ctx, room, []uint64{seq}); err != nil {
					return protocol.Message{}, false, err
				}
			}
			return msgs[0], true, nil
		}
		if attempt == 4 || len(msgs) == 1 {
			// A later seq is stored: this one will not arrive.
			return protocol.Message{}, false, nil
		}
		select {
		case <-ctx.Done():
			return protocol.Message{}, false, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// AuditResponse is the body of GET /api/rooms/{room}/audit.
type AuditResponse struct {
	Room    string       `json:"room"`
	Entries []AuditEntry `json:"entries"`
}

func (a *API) getAudit(w http.ResponseWriter, r *http.Request, room string, _ *auth.Claims) {
	limit, ok := queryLimit(w, r, 100)
	if !ok {
		return
	}
	entries, err := a.audit.List(r.Context(), room, limit)
	if err != nil {
		writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "audit log unavailable")
		return
	}
	if entries == nil {
		entries = []AuditEntry{}
	}
	writeJSON(w, http.StatusOK, AuditResponse{Room: room, Entries: entries})
}

// clip shortens s to at most n runes.
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	r := []rune(s)
	return string(r[:n-1]) + "…"
}
