package httpapi_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/moderation/httpapi"
	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/history/chstore"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// streamStore is a history store with everything the stream endpoints use.
type streamStore interface {
	history.Store
	history.Deleter
	history.Sessions
	history.Analytics
	history.VerdictLog
}

// TestStreamEndpoints runs the sessions, density and analytics endpoints
// on seeded data against the memory store and a real ClickHouse (18.16 in
// this project's test environment), with the same exact expectations.
func TestStreamEndpoints(t *testing.T) {
	t.Run("memory", func(t *testing.T) {
		testStreamEndpoints(t, history.NewMemory(history.MemoryConfig{}))
	})
	t.Run("clickhouse", func(t *testing.T) {
		addr := testenv.Addr(t, testenv.ClickHouse)
		db := fmt.Sprintf("danmaku_api_test_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		st, err := chstore.New(ctx, chstore.Config{Addr: addr, Database: db, RetentionDays: -1, Logger: quiet})
		if err != nil {
			t.Fatalf("chstore.New: %v", err)
		}
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = st.Close()
			if conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}}); err == nil {
				_ = conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
				_ = conn.Close()
			}
		})
		testStreamEndpoints(t, st)
	})
}

type streamAPI struct {
	t      *testing.T
	srv    *httptest.Server
	signer *auth.Signer
	eng    *moderation.Engine
}

func (s *streamAPI) token(role string, rooms []string) string {
	s.t.Helper()
	tok, err := s.signer.Sign("uid-"+role, role, role, rooms, time.Hour)
	if err != nil {
		s.t.Fatal(err)
	}
	return tok
}

func (s *streamAPI) do(method, path, token, body string, into any) int {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.srv.URL+path, strings.NewReader(body))
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	if into != nil && resp.StatusCode < 300 {
		if err := json.NewDecoder(resp.Body).Decode(into); err != nil {
			s.t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// errorOf sends method path with token and returns the answer's status
// and its error body (failing the test when it has none).
func (s *streamAPI) errorOf(method, path, token string) (int, protocol.Error) {
	s.t.Helper()
	req, _ := http.NewRequest(method, s.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct{ Error protocol.Error }
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		s.t.Fatalf("%s %s: %d, no error body: %v", method, path, resp.StatusCode, err)
	}
	return resp.StatusCode, body.Error
}

// newStreamAPI serves the API over st, with a moderation engine and a
// memory bus.
func newStreamAPI(t *testing.T, st history.Store) *streamAPI {
	// A unit test of the handler over each stream store (memory and
	// ClickHouse): the endpoints read and write the store only, no
	// pipeline stage.
	signer, err := auth.NewSigner(testSecret)
	if err != nil {
		t.Fatal(err)
	}
	eng, err := moderation.New(moderation.Config{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.NewAPI(httpapi.APIConfig{Bus: bus.NewMemory(bus.MemoryConfig{}), History: st, Signer: signer,
		Engine: eng, ID: "api-streams", Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	api.Register(mux)
	s := &streamAPI{t: t, srv: httptest.NewServer(mux), signer: signer, eng: eng}
	t.Cleanup(s.srv.Close)
	return s
}

// TestStreamEndpointsNeedASharedStore: over a history store without
// sessions and analytics (a plain history.Store), the stream endpoints
// answer 503 and say what they need.
func TestStreamEndpointsNeedASharedStore(t *testing.T) {
	s := newStreamAPI(t, struct{ history.Store }{history.NewMemory(history.MemoryConfig{})})
	streamer := s.token(auth.RoleStreamer, []string{"r"})
	for _, c := range []struct{ method, path, want string }{
		{"POST", "/api/rooms/r/sessions", "stream sessions need a shared history store (--history clickhouse)"},
		{"GET", "/api/rooms/r/sessions", "stream sessions need a shared history store (--history clickhouse)"},
		{"GET", "/api/rooms/r/density", "analytics need a shared history store (--history clickhouse)"},
		{"GET", "/api/rooms/r/analytics", "analytics need a shared history store (--history clickhouse)"},
	} {
		if status, e := s.errorOf(c.method, c.path, streamer); status != 503 || e.Code != protocol.CodeUnavailable || e.Message != c.want {
			t.Errorf("%s %s = %d %+v, want 503 unavailable %q", c.method, c.path, status, e, c.want)
		}
	}
}

// TestCountParameters checks the 400 answer, and its message, of each
// whole-number parameter out of its range: limit (sessions, users, audit,
// rooms), phrases (analytics) and buckets (density).
func TestCountParameters(t *testing.T) {
	s := newStreamAPI(t, history.NewMemory(history.MemoryConfig{}))
	mod := s.token(auth.RoleMod, []string{"r"})
	for path, want := range map[string]string{
		"/api/rooms/r/sessions?limit=0":      "limit must be 1-200",
		"/api/rooms/r/sessions?limit=201":    "limit must be 1-200",
		"/api/rooms/r/users?limit=x":         "limit must be 1-200",
		"/api/rooms/r/audit?limit=1001":      "limit must be 1-1000",
		"/api/rooms?limit=-1":                "limit must be 1-1000",
		"/api/rooms/r/analytics?phrases=101": "phrases must be 1-100",
		"/api/rooms/r/density?buckets=0":     fmt.Sprintf("buckets must be 1-%d", history.MaxBuckets),
	} {
		if status, e := s.errorOf("GET", path, mod); status != 400 || e.Code != protocol.CodeInvalid || e.Message != want {
			t.Errorf("GET %s = %d %+v, want 400 invalid %q", path, status, e, want)
		}
	}
}

func testStreamEndpoints(t *testing.T, st streamStore) {
	s := newStreamAPI(t, st)
	eng, ctx := s.eng, context.Background()
	room := fmt.Sprintf("streams%d", time.Now().UnixNano()%1e9)
	streamer := s.token(auth.RoleStreamer, []string{room})
	mod := s.token(auth.RoleMod, []string{room})
	service := s.token(auth.RoleService, nil)
	viewer := s.token(auth.RoleViewer, nil)
	otherMod := s.token(auth.RoleMod, []string{"elsewhere"})

	t.Run("Sessions", func(t *testing.T) {
		base := "/api/rooms/" + room + "/sessions"
		for _, c := range []struct {
			name, token string
			want        int
		}{{"no token", "", 401}, {"viewer", viewer, 403}, {"mod of another room", otherMod, 403}} {
			if got := s.do("POST", base, c.token, "", nil); got != c.want {
				t.Errorf("start with %s = %d, want %d", c.name, got, c.want)
			}
		}
		if got := s.do("POST", base, streamer, `{"title":""}`, nil); got != 201 {
			// An empty title is no title.
			t.Fatalf("start with an empty title = %d, want 201", got)
		}
		var list httpapi.SessionsResponse
		s.do("GET", base, "", "", &list)
		if len(list.Sessions) != 1 || list.Sessions[0].EndMs != 0 || list.Sessions[0].By != "uid-streamer" {
			t.Fatalf("sessions after a start = %+v, want one live session by the streamer", list.Sessions)
		}
		first := list.Sessions[0]
		if got := s.do("POST", base, mod, `{"title":"again"}`, nil); got != http.StatusConflict {
			t.Errorf("second start while live = %d, want 409", got)
		}
		var ended history.Session
		if got := s.do("POST", base+"/"+first.ID+"/end", service, "", &ended); got != 200 || ended.EndMs < first.StartMs || ended.ID != first.ID {
			t.Fatalf("end by a service = %d %+v", got, ended)
		}
		var again history.Session
		if got := s.do("POST", base+"/"+first.ID+"/end", mod, "", &again); got != 200 || again != ended {
			t.Errorf("ending again = %d %+v, want 200 and the session unchanged %+v", got, again, ended)
		}
		var second history.Session
		if got := s.do("POST", base, mod, `{"title":"第二场 stream"}`, &second); got != 201 || second.Title != "第二场 stream" || second.ID == first.ID {
			t.Fatalf("start after the end = %d %+v", got, second)
		}
		s.do("GET", base, "", "", &list)
		if len(list.Sessions) != 2 || list.Sessions[0].ID != second.ID || list.Sessions[1] != ended {
			t.Errorf("sessions = %+v, want [%+v %+v]", list.Sessions, second, ended)
		}
		var one history.Session
		if got := s.do("GET", base+"/"+ended.ID, "", "", &one); got != 200 || one != ended {
			t.Errorf("GET session = %d %+v, want %+v", got, one, ended)
		}
		for path, want := range map[string]int{
			base + "/nosuchsession":        404,
			base + "/BAD!id":               400,
			base + "/nosuchsession/x":      404,
			base + "?limit=0":              400,
			"/api/rooms/bad room/sessions": 400,
		} {
			if got := s.do("GET", path, "", "", nil); got != want {
				t.Errorf("GET %s = %d, want %d", path, got, want)
			}
		}
		if got := s.do("POST", base+"/nosuchsession/end", mod, "", nil); got != 404 {
			t.Errorf("ending an unknown session = %d, want 404", got)
		}
		if got := s.do("POST", base, mod, `{"title":"`+strings.Repeat("x", 101)+`"}`, nil); got != 400 {
			t.Errorf("start with a 101-character title = %d, want 400", got)
		}
		s.do("POST", base+"/"+second.ID+"/end", mod, "", nil)
	})

	// Seeded traffic: one message a minute for ten minutes, a burst of 15
	// from 5 chatters in minute 10, then a blocked word, a deleted and a
	// purged message in minute 11.
	const min = int64(60000)
	m0 := (time.Now().Add(-40*time.Minute).UnixMilli() / min) * min
	var msgs []protocol.Message
	add := func(at int64, uid, text string) {
		msgs = append(msgs, protocol.Message{Room: room, Seq: uint64(len(msgs) + 1), UID: uid, Text: text, TS: at})
	}
	for i := int64(0); i < 10; i++ {
		add(m0+i*min+1000, "u"+strconv.FormatInt(i%3, 10), "hello 你好")
	}
	for i := int64(0); i < 15; i++ {
		add(m0+10*min+i*1000, "h"+strconv.FormatInt(i%5, 10), "进球了 GOAL ⚽")
	}
	add(m0+11*min+1000, "x", "垃圾 nice")
	add(m0+11*min+2000, "y", "bye 你好")
	add(m0+11*min+3000, "z", "deleteme now") // deleted
	add(m0+11*min+4000, "p", "purged too")   // purged
	if err := st.Append(ctx, msgs); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Delete(ctx, room, []uint64{uint64(len(msgs) - 1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Purge(ctx, room, "p", m0, m0+60*min); err != nil {
		t.Fatal(err)
	}
	if err := eng.SetRoomKeywords(room, moderation.KeywordList{Words: []string{"垃圾"}}); err != nil {
		t.Fatal(err)
	}
	if err := st.AddVerdicts(ctx, []history.VerdictCount{
		{Room: room, Minute: m0 + 10*min, Action: "reject", Rule: "keyword:room:垃圾", Count: 3},
		{Room: room, Minute: m0 + 11*min, Action: "hold", Rule: "spam", Count: 1},
		{Room: room, Minute: m0 - 5*min, Action: "reject", Rule: "too_long", Count: 9}, // before the range
	}); err != nil {
		t.Fatal(err)
	}
	sess := history.Session{Room: room, ID: "burst-1", StartMs: m0 + 10*min, EndMs: m0 + 12*min, Title: "the burst"}
	if err := st.PutSession(ctx, sess); err != nil {
		t.Fatal(err)
	}
	rng := fmt.Sprintf("from=%d&to=%d", m0, m0+12*min)

	t.Run("Density", func(t *testing.T) {
		base := "/api/rooms/" + room + "/density?"
		for q, want := range map[string]httpapi.DensityResponse{
			rng + "&buckets=12": {From: m0, To: m0 + 12*min, BucketMs: min, Counts: []int64{1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 15, 2}},
			fmt.Sprintf("from=%d&to=%d&buckets=5", m0, m0+10*min): {From: m0, To: m0 + 10*min, BucketMs: 2 * min, Counts: []int64{2, 2, 2, 2, 2}},
			"session=burst-1&buckets=2":                           {From: m0 + 10*min, To: m0 + 12*min, BucketMs: min, Counts: []int64{15, 2}},
		} {
			var got httpapi.DensityResponse
			if code := s.do("GET", base+q, "", "", &got); code != 200 {
				t.Errorf("density?%s = %d", q, code)
				continue
			}
			want.Room = room
			if !reflect.DeepEqual(got, want) {
				t.Errorf("density?%s = %+v, want %+v", q, got, want)
			}
		}
		for _, q := range []string{"from=5&to=5", "from=x", "buckets=0", "buckets=2001", rng + "&session=burst-1",
			"to=1", "to=3599999", "from=-1&to=5", "from=4294967290000&to=4294967295001",
			fmt.Sprintf("from=0&to=%d", 40*24*time.Hour/time.Millisecond)} {
			if code := s.do("GET", base+q, "", "", nil); code != 400 {
				t.Errorf("density?%s = %d, want 400", q, code)
			}
		}
		if code := s.do("GET", base+"session=nosuch", "", "", nil); code != 404 {
			t.Errorf("density of an unknown session = %d, want 404", code)
		}
	})

	t.Run("SessionRangeCappedAt31Days", func(t *testing.T) {
		// A session's range is capped like from..to: its last 31 days.
		day := int64(24 * time.Hour / time.Millisecond)
		for _, ss := range []history.Session{{Room: room, ID: "long-ended", StartMs: m0 - 200*day, EndMs: m0},
			{Room: room, ID: "long-live", StartMs: m0 - 200*day}} {
			if err := st.PutSession(ctx, ss); err != nil {
				t.Fatal(err)
			}
			var got httpapi.DensityResponse
			if code := s.do("GET", "/api/rooms/"+room+"/density?session="+ss.ID, "", "", &got); code != 200 {
				t.Fatalf("density?session=%s = %d", ss.ID, code)
			}
			if got.To-got.From != 31*day || ss.EndMs != 0 && got.To != ss.EndMs || got.To < m0 {
				t.Errorf("density?session=%s spans %d..%d (%d days), want its last 31 days", ss.ID, got.From, got.To, (got.To-got.From)/day)
			}
			var an httpapi.AnalyticsResponse
			if code := s.do("GET", "/api/rooms/"+room+"/analytics?session="+ss.ID, mod, "", &an); code != 200 {
				t.Fatalf("analytics?session=%s = %d", ss.ID, code)
			}
			if an.To-an.From != 31*day {
				t.Errorf("analytics?session=%s spans %d days, want 31", ss.ID, (an.To-an.From)/day)
			}
		}
	})

	t.Run("Analytics", func(t *testing.T) {
		base := "/api/rooms/" + room + "/analytics?"
		for _, tok := range []string{"", viewer, otherMod} {
			if code := s.do("GET", base+rng, tok, "", nil); code != 401 && code != 403 {
				t.Errorf("analytics without a mod token = %d, want 401/403", code)
			}
		}
		var got httpapi.AnalyticsResponse
		if code := s.do("GET", base+rng+"&phrases=5", mod, "", &got); code != 200 {
			t.Fatalf("analytics = %d", code)
		}
		var wantMin []history.MinuteStat
		for i := int64(0); i < 10; i++ {
			wantMin = append(wantMin, history.MinuteStat{Minute: m0 + i*min, Messages: 1, Chatters: 1})
		}
		wantMin = append(wantMin, history.MinuteStat{Minute: m0 + 10*min, Messages: 15, Chatters: 5},
			history.MinuteStat{Minute: m0 + 11*min, Messages: 2, Chatters: 2})
		want := httpapi.AnalyticsResponse{Room: room, From: m0, To: m0 + 12*min, Messages: 27, Chatters: 5, Minutes: wantMin,
			Phrases: []history.PhraseCount{{Phrase: "goal", Count: 15}, {Phrase: "⚽", Count: 15}, {Phrase: "球了", Count: 15},
				{Phrase: "进球", Count: 15}, {Phrase: "你好", Count: 11}},
			Verdicts: []history.VerdictCount{{Action: "reject", Rule: "keyword:room:垃圾", Count: 3}, {Action: "hold", Rule: "spam", Count: 1}},
			Highlights: []httpapi.HighlightLink{{Highlight: history.Highlight{Minute: m0 + 10*min, Messages: 15, Median: 1},
				Replay: fmt.Sprintf("/replay?at=%d&from=%d&room=%s&to=%d", m0+10*min, m0, room, m0+12*min)}},
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("analytics =\n%+v\nwant\n%+v", got, want)
		}
		// A session's analytics, read by the room's streamer.
		got = httpapi.AnalyticsResponse{}
		if code := s.do("GET", base+"session=burst-1", streamer, "", &got); code != 200 {
			t.Fatalf("session analytics = %d", code)
		}
		if got.Session != "burst-1" || got.Messages != 17 || len(got.Minutes) != 2 || len(got.Highlights) != 0 ||
			!reflect.DeepEqual(got.Phrases[len(got.Phrases)-3:], []history.PhraseCount{{Phrase: "bye", Count: 1}, {Phrase: "nice", Count: 1}, {Phrase: "你好", Count: 1}}) {
			t.Errorf("session analytics = %+v", got)
		}
		for _, q := range []string{"phrases=0", "phrases=101", "from=9&to=3"} {
			if code := s.do("GET", base+q, mod, "", nil); code != 400 {
				t.Errorf("analytics?%s = %d, want 400", q, code)
			}
		}
	})
}
