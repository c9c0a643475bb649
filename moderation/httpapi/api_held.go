package httpapi

import (
	"context"
	"encoding/json"
	"hash/fnv"
	"net/http"
	"strconv"
	"time"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// Values of heldData.Resolved.
const (
	heldApproved = "approved"
	heldRejected = "rejected"
)

// heldData is the Data of a bus.ControlHeld event. Logic publishes it
// without Resolved when it holds a message; an API instance publishes it
// with Resolved when a moderator approved or rejected the message, so that
// every instance drops it from its queue.
type heldData struct {
	Message protocol.Message `json:"msg"`
	// Gateway and Conn address the sender, who waits for the outcome.
	Gateway  string `json:"gw,omitempty"`
	Conn     uint64 `json:"conn,omitempty"`
	Rule     string `json:"rule,omitempty"`
	Resolved string `json:"resolved,omitempty"`
}

// key identifies the held message across API instances.
func (d *heldData) key() string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(d.Message.UID + "\x00" + d.Message.ID + "\x00" + strconv.FormatInt(d.Message.TS, 10)))
	return strconv.FormatUint(h.Sum64(), 16)
}

// HeldView is one entry of GET /api/rooms/{room}/held.
type HeldView struct {
	// ID names the entry in .../held/{id}/approve and /reject.
	ID string `json:"id"`
	// MsgID is the sender's message id.
	MsgID string `json:"msg_id,omitempty"`
	UID   string `json:"uid"`
	Name  string `json:"name"`
	Text  string `json:"text"`
	// Rule is the moderation rule that held the message.
	Rule string `json:"rule"`
	// TS is when it was held, Unix ms.
	TS int64 `json:"ts"`
}

// runControl keeps the held queue in step with the control stream: held
// messages are added, resolved ones dropped. Runs on its own goroutine
// until ctx is done.
func (a *API) runControl(ctx context.Context) {
	bus.FollowControl(ctx, a.cfg.Bus, func(ev bus.Control) {
		switch {
		case ev.Op == bus.ControlHeld:
			a.applyHeld(ev)
		case ev.Op == bus.ControlBan && ev.Room != "":
			// The instance that banned answered the senders (postBan).
			a.dropHeldOf(ev.Room, ev.UID)
		}
	}, nil)
}

// applyHeld adds or drops one held message.
func (a *API) applyHeld(ev bus.Control) {
	var d heldData
	if json.Unmarshal(ev.Data, &d) != nil || !protocol.ValidRoom(ev.Room) {
		return
	}
	if d.Resolved != "" {
		a.takeHeld(ev.Room, d.key())
		return
	}
	at := time.Now()
	if d.Message.TS > 0 {
		at = time.UnixMilli(d.Message.TS)
	}
	if _, ok := a.held.Add(moderation.Held{Room: ev.Room, UID: d.Message.UID, Name: d.Message.Name, Text: d.Message.Text,
		Rule: d.Rule, At: at, Data: ev.Data}); !ok {
		a.cfg.Logger.Warn("moderation: held queue full, message dropped", "room", ev.Room)
	}
}

// takeHeld removes the room's held message with the given key.
func (a *API) takeHeld(room, key string) (heldData, bool) {
	for _, h := range a.held.List(room, time.Now()) {
		var d heldData
		if json.Unmarshal(h.Data, &d) != nil || d.key() != key {
			continue
		}
		if _, ok := a.held.Take(room, h.ID); ok {
			return d, true
		}
	}
	return heldData{}, false
}

// dropHeldOf removes uid's held messages of room (the user was banned)
// and returns them.
func (a *API) dropHeldOf(room, uid string) []heldData {
	var out []heldData
	for _, h := range a.held.List(room, time.Now()) {
		var d heldData
		if h.UID != uid || json.Unmarshal(h.Data, &d) != nil {
			continue
		}
		if _, ok := a.held.Take(room, h.ID); ok {
			out = append(out, d)
		}
	}
	return out
}

// bannedNow reports whether uid is banned in room now.
func (a *API) bannedNow(ctx context.Context, room, uid string) (bool, error) {
	switch {
	case a.cfg.Bans != nil:
		_, ok, err := a.cfg.Bans.Banned(ctx, room, uid)
		return ok, err
	case a.cfg.Engine != nil:
		_, ok := a.cfg.Engine.Banned(room, uid, time.Now())
		return ok, nil
	}
	return false, nil
}

func (a *API) getHeld(w http.ResponseWriter, r *http.Request, room string, _ *auth.Claims) {
	list := a.held.List(room, time.Now())
	out := make([]HeldView, 0, len(list))
	for _, h := range list {
		var d heldData
		if json.Unmarshal(h.Data, &d) != nil {
			continue
		}
		out = append(out, HeldView{ID: d.key(), MsgID: d.Message.ID, UID: d.Message.UID, Name: d.Message.Name,
			Text: d.Message.Text, Rule: d.Rule, TS: h.At.UnixMilli()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"room": room, "held": out})
}

// heldTake removes the held message named by the {id} path value, or
// writes 404.
func (a *API) heldTake(w http.ResponseWriter, r *http.Request, room string) (heldData, bool) {
	d, ok := a.takeHeld(room, r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, protocol.CodeNotFound, "no such held message (already handled or expired)")
	}
	return d, ok
}

// requeue puts d back after a failed approval.
func (a *API) requeue(room string, d heldData) {
	data, _ := json.Marshal(d)
	a.applyHeld(bus.Control{Op: bus.ControlHeld, Room: room, Data: data})
}

// answerSender tells the held message's sender the outcome; best effort.
func (a *API) answerSender(ctx context.Context, d heldData, rp bus.Reply) {
	if d.Gateway == "" {
		return
	}
	rp.Gateway, rp.Conn, rp.ID, rp.Room = d.Gateway, d.Conn, d.Message.ID, d.Message.Room
	v, err := bus.Marshal(rp)
	if err == nil {
		err = a.reply.Publish(ctx, bus.Record{Key: d.Gateway, Value: v})
	}
	if err != nil {
		a.cfg.Logger.Warn("moderation: answering held sender failed", "room", rp.Room, "err", err)
	}
}

func (a *API) approveHeld(w http.ResponseWriter, r *http.Request, room string, c *auth.Claims) {
	d, ok := a.heldTake(w, r, room)
	if !ok {
		return
	}
	m := d.Message
	// A ban drops the user's held messages, but one held on its way
	// meanwhile (or a ban by another API instance) may still be queued.
	banned, err := a.bannedNow(r.Context(), room, m.UID)
	if err != nil {
		a.requeue(room, d)
		writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, "ban store unavailable")
		return
	}
	if banned {
		a.answerSender(r.Context(), d, bus.Reply{Code: protocol.CodeBanned, Message: "banned by a moderator"})
		d.Resolved = heldRejected
		data, _ := json.Marshal(d)
		if !a.publishControls(w, r, c, bus.Control{Op: bus.ControlHeld, Room: room, UID: m.UID, Data: data}) {
			return
		}
		writeError(w, http.StatusConflict, protocol.CodeConflict, "the sender is banned in this room: the held message was dropped")
		return
	}
	role := m.Role
	if role == "" {
		role = auth.RoleViewer
	}
	rp, err := a.Publish(r.Context(), bus.Ingest{Room: room, ID: m.ID, UID: m.UID, Name: m.Name, Role: role,
		Text: m.Text, Kind: m.Kind, Color: m.Color, Mode: m.Mode, Size: m.Size, Trusted: true})
	if err == nil && rp.Seq == 0 {
		err = errPipeline(rp)
	}
	if err != nil {
		a.requeue(room, d)
		writeError(w, http.StatusServiceUnavailable, protocol.CodeUnavailable, err.Error())
		return
	}
	a.answerSender(r.Context(), d, bus.Reply{Seq: rp.Seq})
	d.Resolved = heldApproved
	data, _ := json.Marshal(d)
	if !a.publishControls(w, r, c, bus.Control{Op: bus.ControlHeld, Room: room, UID: m.UID, Data: data}) {
		return
	}
	a.record(r.Context(), c, AuditEntry{Room: room, Action: AuditApprove, UID: m.UID, Seq: rp.Seq, Details: clip(m.Text, 80)})
	writeJSON(w, http.StatusOK, map[string]any{"room": room, "seq": rp.Seq})
}

func (a *API) rejectHeld(w http.ResponseWriter, r *http.Request, room string, c *auth.Claims) {
	d, ok := a.heldTake(w, r, room)
	if !ok {
		return
	}
	a.answerSender(r.Context(), d, bus.Reply{Code: protocol.CodeBlocked, Message: "rejected by a moderator"})
	d.Resolved = heldRejected
	data, _ := json.Marshal(d)
	if !a.publishControls(w, r, c, bus.Control{Op: bus.ControlHeld, Room: room, UID: d.Message.UID, Data: data}) {
		return
	}
	a.record(r.Context(), c, AuditEntry{Room: room, Action: AuditReject, UID: d.Message.UID, Details: clip(d.Message.Text, 80)})
	w.WriteHeader(http.StatusNoContent)
}

// pipelineError is an approval that logic did not accept.
type pipelineError struct{ rp bus.Reply }

func errPipeline(rp bus.Reply) error { return &pipelineError{rp} }

func (e *pipelineError) Error() string {
	switch {
	case e.rp.Held:
		return "logic held the approved message again; retry"
	case e.rp.Code != "":
		return "logic refused the approved message: " + string(e.rp.Code)
	}
	return "logic gave no seq"
}
