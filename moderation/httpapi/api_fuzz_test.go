package httpapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/moderation/httpapi"
	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// failingStore is a history store that is down.
type failingStore struct{}

var _ history.Store = failingStore{}

func (failingStore) Append(context.Context, []protocol.Message) error { return errors.New("down") }
func (failingStore) Range(context.Context, string, history.Filter) ([]protocol.Message, error) {
	return nil, errors.New("down")
}

// FuzzHistoryQuery feeds arbitrary rooms, query strings and Authorization
// headers to GET /api/rooms/{room}/history, on a working and on a failing
// history store. The handler must answer with a client error, 200 or 503
// — never 500 or a panic — and a 200 must be valid JSON.
func FuzzHistoryQuery(f *testing.F) {
	signer, err := auth.NewSigner(testSecret)
	if err != nil {
		f.Fatal(err)
	}
	mod, _ := signer.Sign("m", "m", auth.RoleMod, []string{"r1"}, time.Hour)
	viewer, _ := signer.Sign("v", "v", auth.RoleViewer, nil, time.Hour)
	for _, s := range []struct {
		room, query, authz string
		down               bool
	}{
		{"r1", "", "", false},
		{"r1", "after_seq=3&limit=2", "", false},
		{"r1", "from=1&to=0&limit=1000", "", false},
		{"r1", "limit=1001", "", false},
		{"r1", "after_seq=18446744073709551616", "", false},
		{"r1", "from=9223372036854775807", "", false},
		{"r1", "limit=-1&from=x", "", false},
		{"r1", "include_deleted=1", "Bearer " + mod, false},
		{"r1", "include_deleted=true", "Bearer " + viewer, false},
		{"r1", "include_deleted=1", "Bearer x.y.z", false},
		{"r1", "%zz&&==;;", "bearer", true},
		{"r2", "limit=5", "", true},
		{"../x", "", "", false},
		{"a b", "limit=1", "", false},
	} {
		f.Add(s.room, s.query, s.authz, s.down)
	}
	hist := history.NewMemory(history.MemoryConfig{})
	var msgs []protocol.Message
	for i := range 20 {
		msgs = append(msgs, protocol.Message{Room: "r1", Seq: uint64(i + 1), UID: "u", Text: "m", TS: int64(1000 + i)})
	}
	if err := hist.Append(context.Background(), msgs); err != nil {
		f.Fatal(err)
	}
	// The handler alone over a store (and a failing one): the history
	// query runs no pipeline stage, and a fuzz iteration must be cheap.
	handler := func(st history.Store) http.Handler {
		api, err := httpapi.NewAPI(httpapi.APIConfig{Bus: bus.NewMemory(bus.MemoryConfig{}), History: st,
			Signer: signer, ID: "api-fuzz", Logger: quiet})
		if err != nil {
			f.Fatal(err)
		}
		mux := http.NewServeMux()
		api.Register(mux)
		return mux
	}
	up, down := handler(hist), handler(failingStore{})
	f.Fuzz(func(t *testing.T, room, query, authz string, isDown bool) {
		target := "/api/rooms/" + url.PathEscape(room) + "/history"
		if query != "" {
			target += "?" + url.PathEscape(query) // no raw '#' or spaces in a request line
		}
		req, err := http.NewRequest(http.MethodGet, "http://x"+target, nil)
		if err != nil {
			return // not an HTTP request line at all
		}
		req.URL.RawQuery = query
		if authz != "" {
			req.Header["Authorization"] = []string{authz}
		}
		rec := httptest.NewRecorder()
		h := up
		if isDown {
			h = down
		}
		h.ServeHTTP(rec, req)
		switch rec.Code {
		case http.StatusOK:
			if !protocol.ValidRoom(room) {
				t.Fatalf("200 for invalid room %q", room)
			}
			var resp httpapi.HistoryResponse
			if err := json.Unmarshal(rec.Body.Bytes(), &resp); err != nil {
				t.Fatalf("200 with a body that is not JSON: %v: %q", err, rec.Body.String())
			}
		case http.StatusBadRequest, http.StatusUnauthorized, http.StatusForbidden, http.StatusServiceUnavailable:
		case http.StatusMovedPermanently, http.StatusTemporaryRedirect, http.StatusNotFound, http.StatusMethodNotAllowed:
			// The mux cleans paths and rejects what is not a room path.
			if protocol.ValidRoom(room) {
				t.Fatalf("status %d for valid room %q, query %q", rec.Code, room, query)
			}
		default:
			t.Fatalf("status %d for room %q query %q auth %q: %s", rec.Code, room, query, authz, rec.Body.String())
		}
	})
}
