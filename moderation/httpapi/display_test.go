package httpapi_test

import (
	"context"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// sendDisplay publishes a viewer's message with a display mode and size as
// a gateway would and returns logic's reply.
func (h *harness) sendDisplay(room, uid, text, mode, size string) bus.Reply {
	h.t.Helper()
	in := bus.Ingest{Room: room, ID: "d-" + strconv.FormatUint(h.conn.Add(1), 10), UID: uid, Name: uid, Role: auth.RoleViewer,
		Text: text, Mode: mode, Size: size, TS: time.Now().UnixMilli(), Gateway: gwID, Conn: h.conn.Add(1)}
	v, _ := bus.Marshal(in)
	if err := h.bus.Publisher(bus.StreamIngest).Publish(context.Background(), bus.Record{Key: room, Value: v}); err != nil {
		h.t.Fatal(err)
	}
	return h.reply(in.Conn)
}

// TestDisplayModePermissions checks the room's mode_policy and size_policy
// where messages are accepted: the defaults (top/bottom for the privileged
// and paid messages, sizes for all), a viewer's send, the publish API for
// mods and services (relaying as a viewer, with and without paid), a
// changed policy reaching logic, and that accepted modes are stored.
func TestDisplayModePermissions(t *testing.T) {
	h := newHarness(t)
	const room = "dm"
	mod := h.token(auth.RoleMod, []string{room}, time.Hour)
	svc := h.token(auth.RoleService, nil, time.Hour)

	_, body := h.do("GET", "/api/rooms/"+room+"/settings", mod, "")
	if s := decode[moderation.Settings](t, body); s.ModePolicy != moderation.DisplayPrivileged || s.SizePolicy != moderation.DisplayAll {
		t.Fatalf("default policies: %s", body)
	}

	// Defaults: a viewer may not go on top, may send large.
	if rp := h.sendDisplay(room, "v1", "on top?", protocol.ModeTop, ""); rp.Code != protocol.CodeBlocked || rp.Message != moderation.RuleMode {
		t.Fatalf("viewer top under privileged: %+v", rp)
	}
	if rp := h.sendDisplay(room, "v1", "big", "", protocol.SizeLarge); rp.Seq == 0 {
		t.Fatalf("viewer large under all: %+v", rp)
	}
	for _, tc := range []struct {
		name, token, body string
		status            int
		code              protocol.Code
	}{
		{"mod top", mod, `{"text":"mod on top","mode":"top","size":"large"}`, http.StatusOK, ""},
		{"service bottom", svc, `{"text":"bot at the bottom","mode":"bottom"}`, http.StatusOK, ""},
		{"relayed viewer top", svc, `{"text":"relayed top","role":"viewer","mode":"top"}`, http.StatusBadRequest, protocol.CodeBlocked},
		{"relayed paid top", svc, `{"text":"paid top","role":"viewer","kind":"paid","mode":"top"}`, http.StatusOK, ""},
		{"scroll and normal spelled out", svc, `{"text":"plain","role":"viewer","mode":"scroll","size":"normal"}`, http.StatusOK, ""},
		{"unknown mode", svc, `{"text":"x","mode":"left"}`, http.StatusBadRequest, protocol.CodeInvalid},
		{"unknown size", svc, `{"text":"x","size":"huge"}`, http.StatusBadRequest, protocol.CodeInvalid},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st, body := h.do("POST", "/api/rooms/"+room+"/publish", tc.token, tc.body)
			if st != tc.status || tc.code != "" && errCode(t, body) != tc.code {
				t.Fatalf("status %d %s; want %d %q", st, body, tc.status, tc.code)
			}
		})
	}

	// Open top/bottom to all, close sizes to everyone.
	if st, body := h.do("PUT", "/api/rooms/"+room+"/settings", mod, `{"mode_policy":"all","size_policy":"none"}`); st != 200 {
		t.Fatalf("put: %d %s", st, body)
	}
	h.waitLogic("the display policies", func() bool { return h.logicEn.Settings(room).SizePolicy == moderation.DisplayNone })
	if rp := h.sendDisplay(room, "v2", "viewer at the bottom", protocol.ModeBottom, ""); rp.Seq == 0 {
		t.Fatalf("viewer bottom under all: %+v", rp)
	}
	if rp := h.sendDisplay(room, "v3", "small please", "", protocol.SizeSmall); rp.Code != protocol.CodeBlocked || rp.Message != moderation.RuleSize {
		t.Fatalf("viewer small under none: %+v", rp)
	}
	if st, body := h.do("POST", "/api/rooms/"+room+"/publish", mod, `{"text":"mod large","size":"large"}`); st != http.StatusBadRequest || errCode(t, body) != protocol.CodeBlocked {
		t.Fatalf("mod large under none: %d %s", st, body)
	}
	if st, body := h.do("PUT", "/api/rooms/"+room+"/settings", mod, `{"mode_policy":"mods"}`); st != 400 || errCode(t, body) != protocol.CodeInvalid {
		t.Fatalf("bad policy: %d %s", st, body)
	}

	// What was accepted keeps its mode and size in history.
	want := map[string][2]string{
		"big":                  {"", protocol.SizeLarge},
		"mod on top":           {protocol.ModeTop, protocol.SizeLarge},
		"bot at the bottom":    {protocol.ModeBottom, ""},
		"paid top":             {protocol.ModeTop, ""},
		"plain":                {"", ""},
		"viewer at the bottom": {protocol.ModeBottom, ""},
	}
	var msgs []protocol.Message
	deadline := time.Now().Add(5 * time.Second)
	for len(msgs) < len(want) && time.Now().Before(deadline) {
		msgs, _ = h.hist.Range(context.Background(), room, history.Filter{Limit: 50})
		time.Sleep(10 * time.Millisecond)
	}
	if len(msgs) != len(want) {
		t.Fatalf("stored %d messages, want %d: %+v", len(msgs), len(want), msgs)
	}
	for _, m := range msgs {
		w, ok := want[m.Text]
		if !ok || m.Mode != w[0] || m.Size != w[1] {
			t.Errorf("stored %q mode %q size %q; want %v", m.Text, m.Mode, m.Size, w)
		}
	}
}
