package httpapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/danmaku-live/danmaku/app"
	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/moderation/httpapi"
	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

var quiet = slog.New(slog.DiscardHandler)

const testSecret = "test-secret-0123456789-abcdefghij"

// harness is the HTTP API of a gateway process in front of a logic
// process (logic and the history writer): the Apps that `danmaku gateway`
// and `danmaku logic` run, built with app.New, on one memory bus and one
// history store (shared as processes share ClickHouse). The two processes
// have separate engines, so a configuration change reaches logic only
// through the control stream.
type harness struct {
	t       *testing.T
	base    string // the API's URL
	bus     *bus.Memory
	hist    *history.Memory
	signer  *auth.Signer
	logicEn *moderation.Engine // the logic process's
	kv      presence.KV        // the gateway process's settings store
	replies bus.Consumer       // replies addressed to gwID
	conn    atomic.Uint64
}

// gwID is the gateway the harness's sends come from (not the gateway
// process's own, so its replies come to the harness).
const gwID = "gw-test"

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, bus: bus.NewMemory(bus.MemoryConfig{}), hist: history.NewMemory(history.MemoryConfig{})}
	t.Cleanup(func() { _ = h.bus.Close() }) // after the apps stopped
	var err error
	if h.signer, err = auth.NewSigner(testSecret); err != nil {
		t.Fatal(err)
	}
	lg := startApp(t, app.RoleLogic, h.bus, h.hist)
	gw := startApp(t, app.RoleGateway, h.bus, h.hist)
	h.logicEn, h.kv, h.base = lg.Engine(), gw.KV(), "http://"+gw.HTTPAddr()
	if h.replies, err = h.bus.Consumer(bus.StreamReply, bus.ConsumerOptions{Key: gwID}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = h.replies.Close() })
	h.warmUp()
	return h
}

// startApp runs the App of role on b and st until the test ends.
func startApp(t *testing.T, role app.Role, b bus.Bus, st history.Store) *app.App {
	t.Helper()
	cfg := app.Config{Role: role, HTTPAddr: "127.0.0.1:0", JWTSecret: testSecret, Logger: quiet,
		Backends: app.Backends{Given: b, GivenHistory: st}}
	cfg.Gateway.Addr, cfg.Gateway.ID, cfg.Gateway.DrainTimeout = "127.0.0.1:0", "gw-api-test", time.Second
	cfg.HistoryWriter.FlushInterval = 10 * time.Millisecond
	a, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := a.Start()
	if err != nil {
		t.Fatalf("%s: %v", role, err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("%s: %v", role, err)
		}
	})
	return a
}

// warmUp waits until the group-less control consumers of logic and the API
// read the stream, so no event of the test is published before they start.
func (h *harness) warmUp() {
	h.t.Helper()
	svc := h.token(auth.RoleService, nil, time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; ; i++ {
		data, _ := json.Marshal(moderation.Settings{MaxLength: 10 + i%50})
		h.publishControl(bus.Control{Op: bus.ControlSettings, Room: "warmup", Data: data})
		held, _ := json.Marshal(map[string]any{"msg": map[string]any{"uid": "w", "id": "w" + strconv.Itoa(i), "text": "w", "ts": time.Now().UnixMilli()}})
		h.publishControl(bus.Control{Op: bus.ControlHeld, Room: "warmup", Data: held})
		time.Sleep(20 * time.Millisecond)
		_, body := h.do("GET", "/api/rooms/warmup/held", svc, "")
		if h.logicEn.Settings("warmup").MaxLength == 10+i%50 && strings.Contains(body, `"uid":"w"`) {
			return
		}
		if time.Now().After(deadline) {
			h.t.Fatal("control consumers did not start")
		}
	}
}

// waitLogic waits until applied reports that logic's engine applied a
// control event (control events and sends travel on different streams, so
// a send right after a change may overtake it).
func (h *harness) waitLogic(what string, applied func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !applied() {
		if time.Now().After(deadline) {
			h.t.Fatalf("logic did not apply %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// waitLogicKeywords waits until logic's engine has a keyword list of n
// words in room.
func (h *harness) waitLogicKeywords(room string, n int) {
	h.t.Helper()
	h.waitLogic("the keyword list", func() bool { return len(h.logicEn.RoomKeywords(room).Words) == n })
}

func (h *harness) publishControl(ev bus.Control) {
	h.t.Helper()
	v, _ := bus.Marshal(ev)
	if err := h.bus.Publisher(bus.StreamControl).Publish(context.Background(), bus.Record{Key: ev.Room, Value: v}); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) token(role string, rooms []string, ttl time.Duration) string {
	h.t.Helper()
	tok, err := h.signer.SignClaims(auth.Claims{Name: "M", Role: role, Rooms: rooms, RegisteredClaims: jwt.RegisteredClaims{
		Subject: "mod-1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(ttl))}})
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

// do sends a request and returns the status and body.
func (h *harness) do(method, path, token, body string) (int, string) {
	h.t.Helper()
	req, _ := http.NewRequest(method, h.base+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// send publishes a viewer's message as a gateway would and returns logic's
// reply.
func (h *harness) send(room, uid, text string) bus.Reply {
	h.t.Helper()
	in := bus.Ingest{Room: room, ID: "m-" + strconv.FormatUint(h.conn.Add(1), 10), UID: uid, Name: uid, Role: auth.RoleViewer,
		Text: text, TS: time.Now().UnixMilli(), Gateway: gwID, Conn: h.conn.Add(1)}
	v, _ := bus.Marshal(in)
	if err := h.bus.Publisher(bus.StreamIngest).Publish(context.Background(), bus.Record{Key: room, Value: v}); err != nil {
		h.t.Fatal(err)
	}
	return h.reply(in.Conn)
}

// reply waits for the reply to conn.
func (h *harness) reply(conn uint64) bus.Reply {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		recs, err := h.replies.Fetch(ctx)
		if err != nil {
			h.t.Fatalf("no reply for conn %d: %v", conn, err)
		}
		for _, rec := range recs {
			var rp bus.Reply
			if bus.Unmarshal(rec.Value, &rp) == nil && rp.Conn == conn {
				return rp
			}
		}
	}
}

// controls opens a control-stream reader; next returns the next event
// with the given op.
type controls struct {
	t       *testing.T
	c       bus.Consumer
	pending []bus.Record
}

// holdReview makes room r hold messages with "review" (as mod) and
// returns a reader of its held queue and a wait for it to hold n.
func (h *harness) holdReview(mod string) (held func() []httpapi.HeldView, waitHeld func(n int) []httpapi.HeldView) {
	t := h.t
	t.Helper()
	if status, body := h.do("PUT", "/api/rooms/r/keywords", mod, `{"keywords":["review"],"action":"hold"}`); status != 200 {
		t.Fatalf("keywords: %d %s", status, body)
	}
	h.waitLogicKeywords("r", 1)
	held = func() []httpapi.HeldView {
		_, body := h.do("GET", "/api/rooms/r/held", mod, "")
		return decode[struct {
			Held []httpapi.HeldView `json:"held"`
		}](t, body).Held
	}
	waitHeld = func(n int) []httpapi.HeldView {
		deadline := time.Now().Add(3 * time.Second)
		for {
			if l := held(); len(l) == n {
				return l
			}
			if time.Now().After(deadline) {
				t.Fatalf("held queue never had %d entries: %+v", n, held())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return held, waitHeld
}

func (h *harness) controls() *controls {
	c, err := h.bus.Consumer(bus.StreamControl, bus.ConsumerOptions{})
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = c.Close() })
	return &controls{t: h.t, c: c}
}

func (cs *controls) next(op string) bus.Control {
	cs.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		for len(cs.pending) > 0 {
			rec := cs.pending[0]
			cs.pending = cs.pending[1:]
			var ev bus.Control
			if bus.Unmarshal(rec.Value, &ev) == nil && ev.Op == op {
				return ev
			}
		}
		recs, err := cs.c.Fetch(ctx)
		if err != nil {
			cs.t.Fatalf("no %q control event: %v", op, err)
		}
		cs.pending = append(cs.pending, recs...)
	}
}

func decode[T any](t *testing.T, body string) T {
	t.Helper()
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("bad JSON %q: %v", body, err)
	}
	return v
}

func errCode(t *testing.T, body string) protocol.Code {
	return decode[httpapi.ErrorBody](t, body).Error.Code
}

func TestModerationAuth(t *testing.T) {
	h := newHarness(t)
	endpoints := []struct{ method, path, body string }{
		{"GET", "/settings", ""},
		{"PUT", "/settings", `{}`},
		{"GET", "/keywords", ""},
		{"PUT", "/keywords", `{"keywords":[]}`},
		{"GET", "/bans", ""},
		{"POST", "/bans", `{"uid":"x"}`},
		{"DELETE", "/bans/x", ""},
		{"DELETE", "/messages/1", ""},
		{"GET", "/held", ""},
		{"POST", "/held/abc/approve", ""},
		{"POST", "/held/abc/reject", ""},
		{"GET", "/audit", ""},
		{"GET", "/users", ""},
		{"GET", "/users/x", ""},
	}
	expired, _ := h.signer.SignClaims(auth.Claims{Role: auth.RoleMod, Rooms: []string{"a"}, RegisteredClaims: jwt.RegisteredClaims{
		Subject: "mod-1", ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Minute))}})
	other, _ := auth.NewSigner("another-secret-0123456789-abcdefgh")
	forged, _ := other.Sign("mod-1", "M", auth.RoleMod, []string{"a"}, time.Hour)
	tokens := []struct {
		name   string
		token  string
		status int
		code   protocol.Code
	}{
		{"missing", "", http.StatusUnauthorized, protocol.CodeUnauthorized},
		{"malformed", "not.a.jwt", http.StatusUnauthorized, protocol.CodeUnauthorized},
		{"wrong secret", forged, http.StatusUnauthorized, protocol.CodeUnauthorized},
		{"expired", expired, http.StatusUnauthorized, protocol.CodeUnauthorized},
		{"viewer", h.token(auth.RoleViewer, nil, time.Hour), http.StatusForbidden, protocol.CodeForbidden},
		{"mod of room b", h.token(auth.RoleMod, []string{"b"}, time.Hour), http.StatusForbidden, protocol.CodeForbidden},
		{"streamer of room b", h.token(auth.RoleStreamer, []string{"b"}, time.Hour), http.StatusForbidden, protocol.CodeForbidden},
	}
	for _, ep := range endpoints {
		for _, tk := range tokens {
			t.Run(ep.method+ep.path+"/"+tk.name, func(t *testing.T) {
				status, body := h.do(ep.method, "/api/rooms/a"+ep.path, tk.token, ep.body)
				if status != tk.status || errCode(t, body) != tk.code {
					t.Fatalf("got %d %s, want %d %s", status, body, tk.status, tk.code)
				}
			})
		}
		// A mod of room a passes authorisation (any status but 401/403).
		t.Run(ep.method+ep.path+"/mod of room a", func(t *testing.T) {
			status, body := h.do(ep.method, "/api/rooms/a"+ep.path, h.token(auth.RoleMod, []string{"a"}, time.Hour), ep.body)
			if status == http.StatusUnauthorized || status == http.StatusForbidden {
				t.Fatalf("got %d %s", status, body)
			}
		})
	}
	t.Run("bad room", func(t *testing.T) {
		status, _ := h.do("GET", "/api/rooms/bad%20room/settings", h.token(auth.RoleService, nil, time.Hour), "")
		if status != http.StatusBadRequest {
			t.Fatalf("got %d", status)
		}
	})
}

func TestSettingsRoundTrip(t *testing.T) {
	h := newHarness(t)
	mod := h.token(auth.RoleMod, []string{"r"}, time.Hour)
	status, body := h.do("GET", "/api/rooms/r/settings", mod, "")
	if got := decode[moderation.Settings](t, body); status != 200 || got.MaxLength != 100 || got.Burst != 3 || got.SlowModeSec != 0 {
		t.Fatalf("defaults: %d %s", status, body)
	}
	cs := h.controls()
	status, body = h.do("PUT", "/api/rooms/r/settings", mod, `{"slow_mode_sec":10,"max_length":50,"link_policy":"block"}`)
	if status != 200 {
		t.Fatalf("put: %d %s", status, body)
	}
	if ev := cs.next(bus.ControlSettings); ev.Room != "r" || ev.By != "mod-1" {
		t.Fatalf("settings event %+v", ev)
	}
	if ev := cs.next(bus.ControlNotice); !strings.Contains(ev.Text, "slow mode is on: 1 message every 10 s") {
		t.Fatalf("notice %q", ev.Text)
	}
	_, body = h.do("GET", "/api/rooms/r/settings", mod, "")
	got := decode[moderation.Settings](t, body)
	if got.SlowModeSec != 10 || got.MaxLength != 50 || got.LinkPolicy != moderation.LinkBlock || got.Burst != 3 {
		t.Fatalf("round trip: %s", body)
	}
	if v, ok, _ := h.kv.Get(context.Background(), "settings/r"); !ok || !bytes.Contains(v, []byte(`"slow_mode_sec":10`)) {
		t.Fatalf("not persisted: %s", v)
	}
	// Logic applied it from the control stream: a long text is refused.
	h.waitLogic("the settings", func() bool { return h.logicEn.Settings("r").MaxLength == 50 })
	if rp := h.send("r", "u1", strings.Repeat("x", 60)); rp.Code != protocol.CodeTooLong {
		t.Fatalf("long text: %+v", rp)
	}
	for _, tc := range []struct{ name, body string }{
		{"negative slow mode", `{"slow_mode_sec":-1}`},
		{"bad link policy", `{"link_policy":"maybe"}`},
		{"hold threshold above 1", `{"hold_threshold":2}`},
		{"not JSON", `slow`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, body := h.do("PUT", "/api/rooms/r/settings", mod, tc.body)
			if status != 400 || errCode(t, body) != protocol.CodeInvalid {
				t.Fatalf("got %d %s", status, body)
			}
		})
	}
}

func TestKeywordsBlockThroughLogic(t *testing.T) {
	h := newHarness(t)
	mod := h.token(auth.RoleMod, []string{"r"}, time.Hour)
	status, body := h.do("PUT", "/api/rooms/r/keywords", mod, `{"keywords":["badword","spam link"]}`)
	got := decode[httpapi.KeywordsResponse](t, body)
	if status != 200 || len(got.Keywords) != 2 || got.Action != moderation.ActionBlock {
		t.Fatalf("put: %d %s", status, body)
	}
	_, body = h.do("GET", "/api/rooms/r/keywords", mod, "")
	if got := decode[httpapi.KeywordsResponse](t, body); len(got.Keywords) != 2 || got.Keywords[0] != "badword" {
		t.Fatalf("get: %s", body)
	}
	h.waitLogicKeywords("r", 2)
	if rp := h.send("r", "u1", "what a B.A.D.W.O.R.D"); rp.Code != protocol.CodeBlocked {
		t.Fatalf("keyword send: %+v", rp)
	}
	if rp := h.send("r", "u1", "hello"); rp.Seq == 0 {
		t.Fatalf("clean send: %+v", rp)
	}
	status, body = h.do("PUT", "/api/rooms/r/keywords", mod, `{"keywords":["x"],"action":"explode"}`)
	if status != 400 || errCode(t, body) != protocol.CodeInvalid {
		t.Fatalf("bad action: %d %s", status, body)
	}
}

func TestBan(t *testing.T) {
	h := newHarness(t)
	mod := h.token(auth.RoleMod, []string{"r"}, time.Hour)
	first := h.send("r", "troll", "first")
	if first.Seq == 0 {
		t.Fatalf("send: %+v", first)
	}
	waitHistory(t, h, "r", first.Seq)
	cs := h.controls()
	status, body := h.do("POST", "/api/rooms/r/bans", mod, `{"uid":"troll","duration_s":600,"reason":"spam"}`)
	ban := decode[presence.Ban](t, body)
	if status != 200 || ban.UID != "troll" || time.Until(ban.Until) < 9*time.Minute || ban.Reason != "spam" || ban.By != "mod-1" {
		t.Fatalf("ban: %d %s", status, body)
	}
	if ev := cs.next(bus.ControlBan); ev.UID != "troll" || ev.Until == 0 || ev.Room != "r" {
		t.Fatalf("ban event %+v", ev)
	}
	purge := cs.next(bus.ControlPurge)
	if at := ban.At.UnixMilli(); purge.UID != "troll" || purge.Room != "r" || purge.Until <= at || purge.Until > at+5000 {
		t.Fatalf("purge event %+v: want until in (ban time, ban time + 5 s]", purge)
	}
	if msgs, _ := h.hist.Range(context.Background(), "r", history.Filter{}); len(msgs) != 0 {
		t.Fatalf("purged message still listed: %+v", msgs)
	}
	// A message accepted just before the ban that reaches history only now
	// is retracted too.
	late := protocol.Message{Room: "r", Seq: first.Seq + 100, UID: "troll", Text: "in flight", TS: ban.At.UnixMilli() - 50}
	if err := h.hist.Append(context.Background(), []protocol.Message{late}); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := h.hist.Range(context.Background(), "r", history.Filter{}); len(msgs) != 0 {
		t.Fatalf("message in flight at the ban listed after it was written: %+v", msgs)
	}
	h.waitLogic("the ban", func() bool { _, ok := h.logicEn.Banned("r", "troll", time.Now()); return ok })
	if rp := h.send("r", "troll", "again"); rp.Code != protocol.CodeBanned {
		t.Fatalf("banned send: %+v", rp)
	}
	_, body = h.do("GET", "/api/rooms/r/bans", mod, "")
	if got := decode[httpapi.BansResponse](t, body); len(got.Bans) != 1 || got.Bans[0].UID != "troll" {
		t.Fatalf("list: %s", body)
	}
	if status, body := h.do("DELETE", "/api/rooms/r/bans/troll", mod, ""); status != 204 {
		t.Fatalf("unban: %d %s", status, body)
	}
	if ev := cs.next(bus.ControlUnban); ev.UID != "troll" {
		t.Fatalf("unban event %+v", ev)
	}
	h.waitLogic("the unban", func() bool { _, ok := h.logicEn.Banned("r", "troll", time.Now()); return !ok })
	if rp := h.send("r", "troll", "sorry"); rp.Seq == 0 {
		t.Fatalf("send after unban: %+v", rp)
	}
	for _, tc := range []struct{ name, body string }{
		{"no uid", `{"duration_s":5}`},
		{"negative duration", `{"uid":"x","duration_s":-5}`},
		{"long reason", `{"uid":"x","reason":"` + strings.Repeat("r", 201) + `"}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, body := h.do("POST", "/api/rooms/r/bans", mod, tc.body); status != 400 {
				t.Fatalf("got %d %s", status, body)
			}
		})
	}
}

func waitHistory(t *testing.T, h *harness, room string, seq uint64) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for {
		msgs, _ := h.hist.Range(context.Background(), room, history.Filter{AfterSeq: seq - 1, Limit: 1, IncludeDeleted: true})
		if len(msgs) == 1 && msgs[0].Seq == seq {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("seq %d not in history", seq)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDeleteMessage(t *testing.T) {
	h := newHarness(t)
	mod := h.token(auth.RoleMod, []string{"r"}, time.Hour)
	rp := h.send("r", "u1", "delete me")
	if rp.Seq == 0 {
		t.Fatalf("send: %+v", rp)
	}
	cs := h.controls()
	path := "/api/rooms/r/messages/" + strconv.FormatUint(rp.Seq, 10)
	if status, body := h.do("DELETE", path, mod, ""); status != 204 {
		t.Fatalf("delete: %d %s", status, body)
	}
	if ev := cs.next(bus.ControlDelete); len(ev.Seqs) != 1 || ev.Seqs[0] != rp.Seq || ev.Room != "r" {
		t.Fatalf("delete event %+v", ev)
	}
	_, body := h.do("GET", "/api/rooms/r/history", "", "")
	if got := decode[httpapi.HistoryResponse](t, body); len(got.Msgs) != 0 {
		t.Fatalf("deleted message listed: %s", body)
	}
	_, body = h.do("GET", "/api/rooms/r/history?include_deleted=1", mod, "")
	if got := decode[httpapi.HistoryResponse](t, body); len(got.Msgs) != 1 || !got.Msgs[0].Deleted {
		t.Fatalf("include_deleted: %s", body)
	}
	for _, tc := range []struct {
		name, seq string
		status    int
	}{
		{"unknown seq", "999", 404},
		{"zero", "0", 400},
		{"not a number", "abc", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, body := h.do("DELETE", "/api/rooms/r/messages/"+tc.seq, mod, ""); status != tc.status {
				t.Fatalf("got %d %s", status, body)
			}
		})
	}
	_, body = h.do("GET", "/api/rooms/r/audit", mod, "")
	if got := decode[httpapi.AuditResponse](t, body); len(got.Entries) != 1 || got.Entries[0].Action != httpapi.AuditDelete ||
		got.Entries[0].Seq != rp.Seq || got.Entries[0].By != "mod-1" || got.Entries[0].UID != "u1" {
		t.Fatalf("audit: %s", body)
	}
}

func TestAPIHeldQueue(t *testing.T) {
	h := newHarness(t)
	mod := h.token(auth.RoleMod, []string{"r"}, time.Hour)
	_, waitHeld := h.holdReview(mod)

	t.Run("approve", func(t *testing.T) {
		rp := h.send("r", "u1", "please review me")
		if !rp.Held || rp.Seq != 0 {
			t.Fatalf("send: %+v", rp)
		}
		list := waitHeld(1)
		if list[0].Text != "please review me" || list[0].UID != "u1" || !strings.Contains(list[0].Rule, "keyword") {
			t.Fatalf("held entry %+v", list[0])
		}
		status, body := h.do("POST", "/api/rooms/r/held/"+list[0].ID+"/approve", mod, "")
		got := decode[struct {
			Seq uint64 `json:"seq"`
		}](t, body)
		if status != 200 || got.Seq == 0 {
			t.Fatalf("approve: %d %s", status, body)
		}
		// The sender gets the ack with the seq on its own connection.
		if ack := h.reply(rp.Conn); ack.Seq != got.Seq || ack.ID != rp.ID {
			t.Fatalf("sender ack %+v, want seq %d", ack, got.Seq)
		}
		waitHistory(t, h, "r", got.Seq)
		msgs, _ := h.hist.Range(context.Background(), "r", history.Filter{})
		if len(msgs) != 1 || msgs[0].Text != "please review me" || msgs[0].UID != "u1" {
			t.Fatalf("history %+v", msgs)
		}
		waitHeld(0)
		if status, _ := h.do("POST", "/api/rooms/r/held/"+list[0].ID+"/approve", mod, ""); status != 404 {
			t.Fatalf("second approve: %d", status)
		}
	})
	t.Run("reject", func(t *testing.T) {
		rp := h.send("r", "u2", "review this one too")
		if !rp.Held {
			t.Fatalf("send: %+v", rp)
		}
		list := waitHeld(1)
		if status, body := h.do("POST", "/api/rooms/r/held/"+list[0].ID+"/reject", mod, ""); status != 204 {
			t.Fatalf("reject: %d %s", status, body)
		}
		if rej := h.reply(rp.Conn); rej.Code != protocol.CodeBlocked {
			t.Fatalf("sender reply %+v", rej)
		}
		waitHeld(0)
	})
	t.Run("audit newest first", func(t *testing.T) {
		_, body := h.do("GET", "/api/rooms/r/audit?limit=2", mod, "")
		got := decode[httpapi.AuditResponse](t, body)
		if len(got.Entries) != 2 || got.Entries[0].Action != httpapi.AuditReject || got.Entries[1].Action != httpapi.AuditApprove {
			t.Fatalf("audit: %s", body)
		}
		if status, _ := h.do("GET", "/api/rooms/r/audit?limit=0", mod, ""); status != 400 {
			t.Fatalf("limit=0: %d", status)
		}
	})
}

func TestOversizedBody(t *testing.T) {
	h := newHarness(t)
	mod := h.token(auth.RoleMod, []string{"r"}, time.Hour)
	big := `{"keywords":["` + strings.Repeat("a", 70<<10) + `"]}`
	for _, path := range []string{"/keywords", "/settings"} {
		t.Run(path, func(t *testing.T) {
			status, body := h.do("PUT", "/api/rooms/r"+path, mod, big)
			if status != http.StatusRequestEntityTooLarge || errCode(t, body) != protocol.CodeTooLarge {
				t.Fatalf("got %d %s", status, body)
			}
		})
	}
}

// TestUsers checks the recent-chatters list and the user card: mod-scoped
// to the room, search by name or uid, newest first, deleted messages marked,
// bans shown, and clear errors for bad input.
func TestUsers(t *testing.T) {
	h := newHarness(t)
	mod := h.token(auth.RoleMod, []string{"r"}, time.Hour)
	var last uint64
	for _, m := range []struct{ uid, text string }{
		{"alice", "hello"}, {"bob", "hi alice"}, {"alice", "how are you"}, {"carol-7", "yo"}, {"bob", "fine"},
	} {
		rp := h.send("r", m.uid, m.text)
		if rp.Seq == 0 {
			t.Fatalf("send %+v: %+v", m, rp)
		}
		last = rp.Seq
	}
	h.send("other", "dave", "elsewhere")
	waitHistory(t, h, "r", last)

	status, body := h.do("GET", "/api/rooms/r/users", mod, "")
	list := decode[httpapi.UsersResponse](t, body)
	if status != 200 || len(list.Users) != 3 || list.Window != 1000 {
		t.Fatalf("users: %d %s", status, body)
	}
	if got := []string{list.Users[0].UID, list.Users[1].UID, list.Users[2].UID}; got[0] != "bob" || got[1] != "carol-7" || got[2] != "alice" {
		t.Fatalf("not newest first: %v", got)
	}
	if u := list.Users[2]; u.Messages != 2 || u.Name != "alice" || u.LastSeq == 0 || u.LastTS == 0 {
		t.Fatalf("alice: %+v", u)
	}
	for q, want := range map[string]string{"ALI": "alice", "carol-": "carol-7"} {
		_, body := h.do("GET", "/api/rooms/r/users?q="+q, mod, "")
		if got := decode[httpapi.UsersResponse](t, body); len(got.Users) != 1 || got.Users[0].UID != want {
			t.Fatalf("q=%s: %s", q, body)
		}
	}
	if _, body := h.do("GET", "/api/rooms/r/users?q=nobody", mod, ""); len(decode[httpapi.UsersResponse](t, body).Users) != 0 {
		t.Fatalf("q=nobody: %s", body)
	}

	// A deleted message stays in the card, marked; a ban shows.
	if status, body := h.do("DELETE", "/api/rooms/r/messages/1", mod, ""); status != 204 {
		t.Fatalf("delete: %d %s", status, body)
	}
	if status, body := h.do("POST", "/api/rooms/r/bans", mod, `{"uid":"bob","duration_s":600,"reason":"rude"}`); status != 200 {
		t.Fatalf("ban: %d %s", status, body)
	}
	status, body = h.do("GET", "/api/rooms/r/users/alice", mod, "")
	card := decode[httpapi.UserResponse](t, body)
	if status != 200 || card.UID != "alice" || len(card.Recent) != 2 || card.Recent[0].Text != "hello" || !card.Recent[0].Deleted ||
		card.Recent[1].Text != "how are you" || card.Recent[1].Deleted || card.Ban != nil {
		t.Fatalf("alice's card: %d %s", status, body)
	}
	_, body = h.do("GET", "/api/rooms/r/users/bob", mod, "")
	if card := decode[httpapi.UserResponse](t, body); card.Ban == nil || card.Ban.Reason != "rude" || card.Ban.Until.IsZero() {
		t.Fatalf("bob's card: %s", body)
	}
	_, body = h.do("GET", "/api/rooms/r/users?q=bob", mod, "")
	if got := decode[httpapi.UsersResponse](t, body); len(got.Users) != 1 || got.Users[0].Ban == nil {
		t.Fatalf("bob in the list: %s", body)
	}
	// A uid without messages: an empty card (to ban by uid), not 404.
	status, body = h.do("GET", "/api/rooms/r/users/ghost", mod, "")
	if card := decode[httpapi.UserResponse](t, body); status != 200 || card.UID != "ghost" || len(card.Recent) != 0 || card.Messages != 0 {
		t.Fatalf("ghost: %d %s", status, body)
	}
	// dave spoke in another room only.
	if _, body := h.do("GET", "/api/rooms/r/users/dave", mod, ""); len(decode[httpapi.UserResponse](t, body).Recent) != 0 {
		t.Fatalf("dave leaked across rooms: %s", body)
	}

	for _, tc := range []struct {
		name, path, token string
		status            int
	}{
		{"viewer", "/api/rooms/r/users", h.token(auth.RoleViewer, nil, time.Hour), 403},
		{"mod of another room", "/api/rooms/r/users/alice", h.token(auth.RoleMod, []string{"other"}, time.Hour), 403},
		{"no token", "/api/rooms/r/users", "", 401},
		{"bad limit", "/api/rooms/r/users?limit=0", mod, 400},
		{"long q", "/api/rooms/r/users?q=" + strings.Repeat("q", 129), mod, 400},
		{"long uid", "/api/rooms/r/users/" + strings.Repeat("u", 129), mod, 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if status, body := h.do("GET", tc.path, tc.token, ""); status != tc.status {
				t.Fatalf("got %d %s, want %d", status, body, tc.status)
			}
		})
	}
}

// TestPublicCORS checks the CORS answers of the public endpoints: the
// allow-list's origins get Access-Control-Allow-Origin (and a preflight for
// POST /api/guest), others and same-origin requests get none, moderators'
// endpoints never do.
func TestPublicCORS(t *testing.T) {
	// A unit test of the handler: CORS headers need no pipeline behind it,
	// and each allow-list gets its own API.
	signer, _ := auth.NewSigner(testSecret)
	newAPI := func(origins ...string) *httptest.Server {
		api, err := httpapi.NewAPI(httpapi.APIConfig{Bus: bus.NewMemory(bus.MemoryConfig{}), History: history.NewMemory(history.MemoryConfig{}),
			Signer: signer, Guests: true, Logger: quiet, AllowedOrigins: origins})
		if err != nil {
			t.Fatal(err)
		}
		mux := http.NewServeMux()
		api.Register(mux)
		srv := httptest.NewServer(mux)
		t.Cleanup(srv.Close)
		return srv
	}
	do := func(srv *httptest.Server, method, path, origin, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		if method == "OPTIONS" {
			req.Header.Set("Access-Control-Request-Method", "POST")
			req.Header.Set("Access-Control-Request-Headers", "content-type")
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, res.Body)
		res.Body.Close()
		return res
	}
	const ok, evil = "https://fan.example", "https://evil.example"
	srv := newAPI(ok, "https://other.example")
	for _, path := range []string{"/api/config", "/api/rooms", "/api/rooms/r/history", "/api/rooms/r/online"} {
		res := do(srv, "GET", path, ok, "")
		if res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != ok || !strings.Contains(res.Header.Get("Vary"), "Origin") {
			t.Errorf("GET %s from %s: %d, ACAO %q, Vary %q", path, ok, res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"), res.Header.Get("Vary"))
		}
		if res := do(srv, "GET", path, evil, ""); res.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET %s from %s: ACAO %q", path, evil, res.Header.Get("Access-Control-Allow-Origin"))
		}
		if res := do(srv, "GET", path, "", ""); res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("GET %s without Origin: %d, ACAO %q", path, res.StatusCode, res.Header.Get("Access-Control-Allow-Origin"))
		}
	}
	res := do(srv, "OPTIONS", "/api/guest", ok, "")
	if res.StatusCode != 204 || res.Header.Get("Access-Control-Allow-Origin") != ok ||
		!strings.Contains(res.Header.Get("Access-Control-Allow-Methods"), "POST") || !strings.EqualFold(res.Header.Get("Access-Control-Allow-Headers"), "Content-Type") {
		t.Errorf("preflight from %s: %d %v", ok, res.StatusCode, res.Header)
	}
	if res := do(srv, "OPTIONS", "/api/guest", evil, ""); res.StatusCode != 403 || res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight from %s: %d %v", evil, res.StatusCode, res.Header)
	}
	if res := do(srv, "POST", "/api/guest", ok, `{"name":"fan"}`); res.StatusCode != 200 || res.Header.Get("Access-Control-Allow-Origin") != ok {
		t.Errorf("POST /api/guest from %s: %d %v", ok, res.StatusCode, res.Header)
	}
	// Moderators' endpoints are for the dashboard (same origin) only.
	if res := do(srv, "GET", "/api/rooms/r/settings", ok, ""); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("moderation endpoint answers CORS: %v", res.Header)
	}
	if res := do(srv, "OPTIONS", "/api/rooms/r/settings", ok, ""); res.StatusCode != 404 {
		t.Errorf("preflight of a moderation endpoint: %d", res.StatusCode)
	}
	// No list: same origin only. "*": any origin.
	if res := do(newAPI(), "GET", "/api/config", ok, ""); res.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("empty list answers CORS: %v", res.Header)
	}
	if res := do(newAPI("*"), "GET", "/api/config", evil, ""); res.Header.Get("Access-Control-Allow-Origin") != evil {
		t.Errorf(`"*" does not allow %s: %v`, evil, res.Header)
	}
}

// TestPublishAsViewer: a service token may publish a message as a plain
// viewer's (role "viewer": no role tag, so it is thinned and shed like
// viewers' chat); other tokens and other roles may not. The id the API
// generates for a publish without one is not broadcast.
func TestPublishAsViewer(t *testing.T) {
	h := newHarness(t)
	svc := h.token(auth.RoleService, nil, time.Hour)
	mod := h.token(auth.RoleMod, []string{"pv"}, time.Hour)
	for _, tc := range []struct {
		token, body string
		status      int
	}{
		{svc, `{"text":"relayed","role":"viewer"}`, http.StatusOK},
		{svc, `{"text":"own","id":"own-1"}`, http.StatusOK},
		{mod, `{"text":"x","role":"viewer"}`, http.StatusForbidden},
		{svc, `{"text":"x","role":"mod"}`, http.StatusBadRequest},
	} {
		if st, body := h.do("POST", "/api/rooms/pv/publish", tc.token, tc.body); st != tc.status {
			t.Fatalf("%s: status %d (%s), want %d", tc.body, st, body, tc.status)
		}
	}
	var msgs []protocol.Message
	deadline := time.Now().Add(5 * time.Second)
	for len(msgs) < 2 && time.Now().Before(deadline) {
		msgs, _ = h.hist.Range(context.Background(), "pv", history.Filter{Limit: 10})
		time.Sleep(10 * time.Millisecond)
	}
	if len(msgs) != 2 || msgs[0].Text != "relayed" || msgs[0].Role != "" || msgs[1].Role != auth.RoleService {
		t.Fatalf("stored %+v; want the relayed message without a role, then the service's own", msgs)
	}
	// An id the API made up is not broadcast; one the caller gave is.
	if msgs[0].ID != "" || msgs[1].ID != "own-1" {
		t.Fatalf("ids %q and %q, want none (generated) and own-1", msgs[0].ID, msgs[1].ID)
	}
}

// TestBanPurgeEndsWithShortTimeout: a timeout shorter than the purge's
// grace does not retract what the user sends after it ends.
func TestBanPurgeEndsWithShortTimeout(t *testing.T) {
	h := newHarness(t)
	mod := h.token(auth.RoleMod, []string{"r"}, time.Hour)
	cs := h.controls()
	status, body := h.do("POST", "/api/rooms/r/bans", mod, `{"uid":"hasty","duration_s":1}`)
	ban := decode[presence.Ban](t, body)
	if status != 200 {
		t.Fatalf("ban: %d %s", status, body)
	}
	if ev := cs.next(bus.ControlPurge); ev.Until != ban.Until.UnixMilli() {
		t.Fatalf("purge event until %d, want the timeout's end %d", ev.Until, ban.Until.UnixMilli())
	}
	after := protocol.Message{Room: "r", Seq: 7, UID: "hasty", Text: "after the timeout", TS: ban.Until.UnixMilli() + 10}
	if err := h.hist.Append(context.Background(), []protocol.Message{after}); err != nil {
		t.Fatal(err)
	}
	if msgs, _ := h.hist.Range(context.Background(), "r", history.Filter{}); len(msgs) != 1 {
		t.Fatalf("message sent after the timeout ended: listed %+v, want it", msgs)
	}
}

// purgeDown is a history whose purges fail.
type purgeDown struct{ *history.Memory }

func (purgeDown) Purge(context.Context, string, string, int64, int64) ([]uint64, error) {
	return nil, errors.New("history down")
}

// TestBanRefusedWhenHistoryCannotPurge: a ban whose purge history cannot
// take is refused as a whole (503), so the moderator's retry does it all,
// instead of a ban that leaves the user's messages in history.
func TestBanRefusedWhenHistoryCannotPurge(t *testing.T) {
	// A unit test of the handler over a store whose purges fail: the ban
	// is refused before anything is published, so no pipeline stage has a
	// part in it; what must stay untouched is the handler's engine and
	// ban store.
	signer, err := auth.NewSigner(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := moderation.New(moderation.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	b := bus.NewMemory(bus.MemoryConfig{})
	defer b.Close()
	bans := presence.NewMemoryBans()
	api, err := httpapi.NewAPI(httpapi.APIConfig{Bus: b, History: purgeDown{history.NewMemory(history.MemoryConfig{})},
		Signer: signer, Engine: eng, Bans: bans, ID: "api-test", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	srv := httptest.NewServer(mux)
	defer srv.Close()
	h := &harness{t: t, base: srv.URL, signer: signer}
	status, body := h.do("POST", "/api/rooms/r/bans", h.token(auth.RoleMod, []string{"r"}, time.Hour), `{"uid":"troll"}`)
	if status != http.StatusServiceUnavailable || errCode(t, body) != protocol.CodeUnavailable {
		t.Fatalf("ban with history down: %d %s, want 503 unavailable", status, body)
	}
	if _, banned := eng.Banned("r", "troll", time.Now()); banned {
		t.Error("the engine applied the refused ban")
	}
	if list, _ := bans.List(context.Background(), "r"); len(list) != 0 {
		t.Errorf("the ban store kept the refused ban: %+v", list)
	}
}

// TestUnbanKeepsLaterMessages: a ban lifted at once no longer retracts
// what the user sends after the unban (its purge reached 5 s past the
// ban): the next message is acked and listed in history, while the one
// from before the ban stays retracted.
func TestUnbanKeepsLaterMessages(t *testing.T) {
	h := newHarness(t)
	mod := h.token(auth.RoleMod, []string{"r"}, time.Hour)
	cs := h.controls()
	before := h.send("r", "oops", "before the ban")
	waitHistory(t, h, "r", before.Seq)
	if status, body := h.do("POST", "/api/rooms/r/bans", mod, `{"uid":"oops"}`); status != 200 {
		t.Fatalf("ban: %d %s", status, body)
	}
	purge := cs.next(bus.ControlPurge)
	if status, body := h.do("DELETE", "/api/rooms/r/bans/oops", mod, ""); status != 204 {
		t.Fatalf("unban: %d %s", status, body)
	}
	unban := cs.next(bus.ControlUnban)
	if unban.Until == 0 || unban.Until >= purge.Until {
		t.Fatalf("unban event until %d, want the unban time, before the purge's until %d", unban.Until, purge.Until)
	}
	h.waitLogic("the unban", func() bool { _, ok := h.logicEn.Banned("r", "oops", time.Now()); return !ok })
	rp := h.send("r", "oops", "thanks for lifting it")
	if rp.Seq == 0 {
		t.Fatalf("send after unban: %+v", rp)
	}
	waitHistory(t, h, "r", rp.Seq)
	live, _ := h.hist.Range(context.Background(), "r", history.Filter{})
	if len(live) != 1 || live[0].Seq != rp.Seq {
		t.Fatalf("history after the unban %+v, want only seq %d (the message after it)", live, rp.Seq)
	}
}

// TestBanDropsHeldMessages: a ban (or timeout) takes the user's messages
// out of the held queue and tells their sender they were refused, and an
// approval of a held message whose sender is banned by then (held on its
// way while the ban was made) is refused 409 and drops it: a banned
// user's message is never published by approval.
func TestBanDropsHeldMessages(t *testing.T) {
	h := newHarness(t)
	mod := h.token(auth.RoleMod, []string{"r"}, time.Hour)
	held, waitHeld := h.holdReview(mod)
	rp := h.send("r", "troll", "review my spam")
	other := h.send("r", "fine", "review mine")
	if !rp.Held || !other.Held {
		t.Fatalf("sends: %+v %+v", rp, other)
	}
	waitHeld(2)
	if status, body := h.do("POST", "/api/rooms/r/bans", mod, `{"uid":"troll","duration_s":60}`); status != 200 {
		t.Fatalf("timeout: %d %s", status, body)
	}
	if l := held(); len(l) != 1 || l[0].UID != "fine" {
		t.Fatalf("held queue after the timeout %+v, want only the other user's message", l)
	}
	if got := h.reply(rp.Conn); got.Code != protocol.CodeBanned || got.ID != rp.ID {
		t.Fatalf("the held sender's answer after the timeout %+v, want banned for %s", got, rp.ID)
	}

	// A message of the banned user held meanwhile reaches the queue after
	// the ban.
	late, _ := json.Marshal(map[string]any{"msg": map[string]any{"room": "r", "uid": "troll", "id": "late-1", "text": "review me late",
		"ts": time.Now().UnixMilli()}, "rule": "keyword:room:review"})
	h.publishControl(bus.Control{Op: bus.ControlHeld, Room: "r", UID: "troll", Data: late})
	list := waitHeld(2)
	id := list[0].ID
	if list[0].UID != "troll" {
		id = list[1].ID
	}
	if status, body := h.do("POST", "/api/rooms/r/held/"+id+"/approve", mod, ""); status != http.StatusConflict || !strings.Contains(body, "banned") {
		t.Fatalf("approve of a banned sender's message: %d %s, want 409", status, body)
	}
	if l := waitHeld(1); l[0].UID != "fine" {
		t.Fatalf("held queue after the refused approval %+v", l)
	}
	time.Sleep(100 * time.Millisecond) // a wrongly published approval would reach history by now
	if msgs, _ := h.hist.Range(context.Background(), "r", history.Filter{IncludeDeleted: true}); len(msgs) != 0 {
		t.Fatalf("history after the refused approval: %+v", msgs)
	}
}

// TestBanPurgesStoredMessagesUnderClockSkew: a logic worker's clock runs
// 6 s ahead of the API's (more than the purge's 5 s grace), so the banned
// user's stored message has a ts past the purge's until. Stored before the
// ban, it was accepted before it and is retracted all the same.
func TestBanPurgesStoredMessagesUnderClockSkew(t *testing.T) {
	h := newHarness(t)
	mod := h.token(auth.RoleMod, []string{"r"}, time.Hour)
	skewed := protocol.Message{Room: "r", Seq: 1, UID: "troll", Text: "spam before the ban", TS: time.Now().UnixMilli() + 6000}
	if err := h.hist.Append(context.Background(), []protocol.Message{skewed}); err != nil {
		t.Fatal(err)
	}
	if status, body := h.do("POST", "/api/rooms/r/bans", mod, `{"uid":"troll"}`); status != 200 {
		t.Fatalf("ban: %d %s", status, body)
	}
	if msgs, _ := h.hist.Range(context.Background(), "r", history.Filter{}); len(msgs) != 0 {
		t.Fatalf("the banned user's message stored before the ban is still listed after it: %+v", msgs)
	}
}
