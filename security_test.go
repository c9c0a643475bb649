package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/danmaku-live/danmaku/app"
	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/client"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
	"github.com/danmaku-live/danmaku/pkg/ws"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// forgedTokens returns tokens the server must refuse: wrong or no
// algorithm, a different secret, expired, not yet valid, malformed.
func forgedTokens(t *testing.T) map[string]string {
	t.Helper()
	now := time.Now()
	claims := func(exp, nbf time.Time) auth.Claims {
		c := auth.Claims{Role: auth.RoleService, Rooms: []string{"*"}}
		c.Subject = "attacker"
		c.ExpiresAt = jwt.NewNumericDate(exp)
		if !nbf.IsZero() {
			c.NotBefore = jwt.NewNumericDate(nbf)
		}
		return c
	}
	sign := func(m jwt.SigningMethod, key any, c auth.Claims) string {
		s, err := jwt.NewWithClaims(m, c).SignedString(key)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	valid := claims(now.Add(time.Hour), time.Time{})
	// An RS256 header over an HMAC signature with the shared secret: the
	// classic key-confusion attack on servers that pick the key by alg.
	rsHeader := func() string {
		tok := jwt.NewWithClaims(jwt.SigningMethodHS256, valid)
		tok.Header["alg"] = "RS256"
		ss, err := tok.SigningString()
		if err != nil {
			t.Fatal(err)
		}
		sig, err := jwt.SigningMethodHS256.Sign(ss, []byte(testSecret))
		if err != nil {
			t.Fatal(err)
		}
		return ss + "." + base64.RawURLEncoding.EncodeToString(sig)
	}()
	return map[string]string{
		"alg none":          sign(jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, valid),
		"alg HS512":         sign(jwt.SigningMethodHS512, []byte(testSecret), valid),
		"alg RS256 header":  rsHeader,
		"other secret":      sign(jwt.SigningMethodHS256, []byte("not-the-secret"), valid),
		"expired":           sign(jwt.SigningMethodHS256, []byte(testSecret), claims(now.Add(-time.Minute), time.Time{})),
		"not yet valid":     sign(jwt.SigningMethodHS256, []byte(testSecret), claims(now.Add(2*time.Hour), now.Add(time.Hour))),
		"no expiry":         sign(jwt.SigningMethodHS256, []byte(testSecret), auth.Claims{Role: auth.RoleService, RegisteredClaims: jwt.RegisteredClaims{Subject: "x"}}),
		"garbage":           "not.a.jwt",
		"signature removed": strings.Join(strings.Split(sign(jwt.SigningMethodHS256, []byte(testSecret), valid), ".")[:2], ".") + ".",
	}
}

// apiStatus sends one API request and returns the status.
func apiStatus(t *testing.T, method, url, bearer string, body []byte) int {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

// TestSecurityTokens: forged, expired and not-yet-valid tokens are refused
// by the WebSocket handshake (401) and the HTTP API (401); a valid token
// passes both; a mod token works only in its rooms (403 elsewhere), a
// viewer token not at all (403).
func TestSecurityTokens(t *testing.T) {
	httpAddr, wsAddr := startAll(t)
	api := "http://" + httpAddr + "/api/rooms/r1/settings"
	for name, tok := range forgedTokens(t) {
		t.Run(name, func(t *testing.T) {
			if st := wstest.Dial(t, wsAddr).Upgrade("/ws?token="+url.QueryEscape(tok), ""); st != http.StatusUnauthorized {
				t.Errorf("WebSocket handshake: status %d, want 401", st)
			}
			if st := apiStatus(t, "GET", api, tok, nil); st != http.StatusUnauthorized {
				t.Errorf("GET settings: status %d, want 401", st)
			}
			if st := apiStatus(t, "POST", "http://"+httpAddr+"/api/rooms/r1/publish", tok, []byte(`{"text":"x"}`)); st != http.StatusUnauthorized {
				t.Errorf("POST publish: status %d, want 401", st)
			}
		})
	}
	t.Run("valid", func(t *testing.T) {
		if st := wstest.Dial(t, wsAddr).Upgrade("/ws?token="+url.QueryEscape(token(t, "u1", "viewer")), ""); st != http.StatusSwitchingProtocols {
			t.Errorf("WebSocket handshake: status %d, want 101", st)
		}
		if st := apiStatus(t, "GET", api, token(t, "m1", "mod", "r1"), nil); st != http.StatusOK {
			t.Errorf("mod of r1: status %d, want 200", st)
		}
	})
	t.Run("room scope", func(t *testing.T) {
		if st := apiStatus(t, "GET", api, token(t, "m2", "mod", "r2"), nil); st != http.StatusForbidden {
			t.Errorf("mod of r2 on r1: status %d, want 403", st)
		}
		if st := apiStatus(t, "GET", api, token(t, "v1", "viewer"), nil); st != http.StatusForbidden {
			t.Errorf("viewer: status %d, want 403", st)
		}
		if st := apiStatus(t, "GET", api, "", nil); st != http.StatusUnauthorized {
			t.Errorf("no token: status %d, want 401", st)
		}
		if st := apiStatus(t, "POST", "http://"+httpAddr+"/api/rooms/r1/bans", token(t, "m2", "mod", "r2"),
			[]byte(`{"uid":"x","duration_sec":60}`)); st != http.StatusForbidden {
			t.Errorf("mod of r2 bans in r1: status %d, want 403", st)
		}
	})
}

// TestSecurityAnonymousSend: a connection without a token may watch but
// its sends are rejected "unauthorized".
func TestSecurityAnonymousSend(t *testing.T) {
	_, wsAddr := startAll(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: "ws://" + wsAddr + "/ws"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.Join(ctx, "r1", 0); err != nil {
		t.Fatal(err)
	}
	f, err := c.Send(ctx, "r1", "hello")
	if err != nil || f.Op != protocol.OpReject || f.Code != protocol.CodeUnauthorized {
		t.Fatalf("anonymous send: %+v %v, want reject unauthorized", f, err)
	}
}

// TestSecurityPerIPCap: connections beyond --max-conns-per-ip from one
// address get 429; closing one frees a slot.
func TestSecurityPerIPCap(t *testing.T) {
	_, wsAddr := startAll(t, "--max-conns-per-ip", "5")
	var conns []*wstest.Conn
	for i := range 5 {
		r := wstest.Dial(t, wsAddr)
		if st := r.Upgrade("/ws", ""); st != http.StatusSwitchingProtocols {
			t.Fatalf("connection %d: status %d, want 101", i, st)
		}
		conns = append(conns, r)
	}
	if st := wstest.Dial(t, wsAddr).Upgrade("/ws", ""); st != http.StatusTooManyRequests {
		t.Fatalf("6th connection: status %d, want 429", st)
	}
	conns[0].NetConn().Close()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := wstest.Dial(t, wsAddr).Upgrade("/ws", "")
		if st == http.StatusSwitchingProtocols {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after closing one: status %d, want 101", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSecurityOrigin: with an allow-list, a browser from another origin
// gets 403; a listed origin and non-browser clients (no Origin) connect.
func TestSecurityOrigin(t *testing.T) {
	_, wsAddr := startAll(t, "--origins", "https://ok.example,https://also.example")
	for _, tc := range []struct {
		origin string
		want   int
	}{
		{"https://evil.example", http.StatusForbidden},
		{"https://ok.example.evil.example", http.StatusForbidden},
		{"http://ok.example", http.StatusForbidden},
		{"null", http.StatusForbidden},
		{"https://ok.example", http.StatusSwitchingProtocols},
		{"https://also.example", http.StatusSwitchingProtocols},
		{"", http.StatusSwitchingProtocols},
	} {
		t.Run(tc.origin, func(t *testing.T) {
			extra := ""
			if tc.origin != "" {
				extra = "Origin: " + tc.origin + "\r\n"
			}
			if st := wstest.Dial(t, wsAddr).Upgrade("/ws", extra); st != tc.want {
				t.Errorf("status %d, want %d", st, tc.want)
			}
		})
	}
}

// TestSecurityRateLimitSurvivesReconnect: the send rate limit is keyed by
// user, so a user who exhausted it cannot reset it by reconnecting.
func TestSecurityRateLimitSurvivesReconnect(t *testing.T) {
	httpAddr, wsAddr := startAll(t)
	// A slow refill (one message per 5 s, burst 2) so a slow reconnect
	// does not refill the bucket.
	if st := apiStatus(t, "PUT", "http://"+httpAddr+"/api/rooms/rl/settings", token(t, "m", "mod", "rl"),
		[]byte(`{"rate_per_sec":0.2,"burst":2}`)); st != http.StatusOK {
		t.Fatalf("settings: %d", st)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	tok := token(t, "flooder", "viewer")
	dial := func() *client.Client {
		c, err := client.Dial(ctx, client.Config{URL: "ws://" + wsAddr + "/ws", Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Join(ctx, "rl", 0); err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := dial()
	limited := false
	for i := 0; i < 10 && !limited; i++ {
		f, err := c.Send(ctx, "rl", fmt.Sprintf("burst %d", i))
		if err != nil {
			t.Fatal(err)
		}
		limited = f.Op == protocol.OpReject && f.Code == protocol.CodeRateLimited
	}
	if !limited {
		t.Fatal("10 quick sends were never rate limited")
	}
	c.Close()
	c = dial()
	defer c.Close()
	f, err := c.Send(ctx, "rl", "after reconnect")
	if err != nil || f.Op != protocol.OpReject || f.Code != protocol.CodeRateLimited || f.RetryAfterMs <= 0 {
		t.Fatalf("send after reconnect: %+v %v, want rate_limited with retry_after_ms", f, err)
	}
}

// TestSecurityRequestLimits: every endpoint that reads a JSON body
// answers 413 to one larger than 64 KiB, and oversized headers get 431,
// on the HTTP API and on the WebSocket port.
func TestSecurityRequestLimits(t *testing.T) {
	httpAddr, wsAddr := startAll(t)
	base := "http://" + httpAddr
	big := []byte(`{"name":"` + strings.Repeat("a", 100<<10) + `"}`)
	mod := token(t, "m", "mod", "*")
	for _, ep := range []struct{ method, path string }{
		{"POST", "/api/guest"},
		{"POST", "/api/rooms/r1/publish"},
		{"PUT", "/api/rooms/r1/settings"},
		{"PUT", "/api/rooms/r1/keywords"},
		{"POST", "/api/rooms/r1/bans"},
	} {
		t.Run(ep.method+" "+ep.path, func(t *testing.T) {
			if st := apiStatus(t, ep.method, base+ep.path, mod, big); st != http.StatusRequestEntityTooLarge {
				t.Errorf("status %d, want 413", st)
			}
		})
	}
	t.Run("HTTP headers", func(t *testing.T) {
		req, _ := http.NewRequest("GET", base+"/api/rooms", nil)
		req.Header.Set("X-Big", strings.Repeat("b", 64<<10))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
			t.Errorf("status %d, want 431", resp.StatusCode)
		}
	})
	t.Run("WebSocket headers", func(t *testing.T) {
		st := wstest.Dial(t, wsAddr).Upgrade("/ws", "X-Big: "+strings.Repeat("b", 64<<10)+"\r\n")
		if st != 0 && (st < 400 || st >= 500) {
			t.Errorf("status %d, want a 4xx or a closed connection", st)
		}
	})
}

// TestSecretsNotLogged runs a process at debug level with the secret in
// DANMAKU_JWT_SECRET, uses valid, invalid and guest tokens over WebSocket
// and HTTP, and checks that neither the secret nor any token (nor a
// token's signature) appears in the log.
func TestSecretsNotLogged(t *testing.T) {
	const secret = "s3cr3t-never-logged-7f1c2a"
	t.Setenv("DANMAKU_JWT_SECRET", secret)
	var logs testenv.SyncBuffer
	httpAddr, wsAddr := freeAddr(t), freeAddr(t)
	cfg, err := parseConfig("all", []string{"--http", httpAddr, "--ws", wsAddr, "--demo=false", "--log-level", "debug",
		"--drain-timeout", "1s"}, &logs)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.JWTSecret != secret {
		t.Fatalf("secret not taken from the environment")
	}
	a, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()
	for {
		if resp, err := http.Get("http://" + httpAddr + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	signer, _ := auth.NewSigner(secret)
	var tokens []string
	mk := func(sub, role string, rooms ...string) string {
		tok, err := signer.Sign(sub, sub, role, rooms, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		tokens = append(tokens, tok)
		return tok
	}
	viewer, mod := mk("v", "viewer"), mk("m", "mod", "r1")
	expired, _ := signer.SignClaims(auth.Claims{Role: "viewer", RegisteredClaims: jwt.RegisteredClaims{Subject: "e",
		ExpiresAt: jwt.NewNumericDate(time.Now().Add(-time.Hour))}})
	tokens = append(tokens, expired)
	for _, f := range forgedTokens(t) {
		tokens = append(tokens, f)
	}
	// A guest token handed out by the API.
	resp, err := http.Post("http://"+httpAddr+"/api/guest", "application/json", strings.NewReader(`{"name":"g"}`))
	if err != nil {
		t.Fatal(err)
	}
	var g struct{ Token string }
	_ = json.NewDecoder(resp.Body).Decode(&g)
	resp.Body.Close()
	if g.Token == "" {
		t.Fatal("no guest token")
	}
	tokens = append(tokens, g.Token)

	cctx, ccancel := context.WithTimeout(ctx, 20*time.Second)
	defer ccancel()
	for _, tok := range []string{viewer, g.Token} {
		c, err := client.Dial(cctx, client.Config{URL: "ws://" + wsAddr + "/ws", Token: tok})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Join(cctx, "r1", 0); err != nil {
			t.Fatal(err)
		}
		if _, err := c.Send(cctx, "r1", "hi"); err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
	for _, tok := range tokens {
		_ = wstest.Dial(t, wsAddr).Upgrade("/ws?token="+url.QueryEscape(tok)+"&room=r1", "")
		apiStatus(t, "GET", "http://"+httpAddr+"/api/rooms/r1/settings", tok, nil)
		apiStatus(t, "GET", "http://"+httpAddr+"/api/rooms/r1/history?include_deleted=1", tok, nil)
	}
	apiStatus(t, "POST", "http://"+httpAddr+"/api/rooms/r1/bans", mod, []byte(`{"uid":"v","duration_sec":1,"reason":"t"}`))
	cancel()
	<-done
	done <- nil
	out := logs.String()
	if !strings.Contains(out, "level=DEBUG") && !strings.Contains(out, "level=INFO") {
		t.Fatalf("no log captured: %q", out)
	}
	if strings.Contains(out, secret) {
		t.Errorf("the secret appears in the log")
	}
	for _, tok := range tokens {
		parts := strings.Split(tok, ".")
		if strings.Contains(out, tok) {
			t.Errorf("a token appears in the log: %s…", tok[:min(20, len(tok))])
		}
		if len(parts) == 3 && len(parts[2]) > 8 && strings.Contains(out, parts[2]) {
			t.Errorf("a token signature appears in the log")
		}
	}
	t.Logf("%d log lines checked against the secret and %d tokens", strings.Count(out, "\n"), len(tokens))

}

// TestSecurityBogusResume: an anonymous viewer that joins a room with a
// resume past anything the room has (the first viewer of the room on the
// gateway, so nothing else told the gateway the room's end) or just past
// its end gets the room's real end and an empty history, and the honest
// viewers of the room still get every message.
func TestSecurityBogusResume(t *testing.T) {
	_, wsAddr := startAll(t)
	const room = "bogus-resume"
	upgrade := func(query string) *wstest.Conn {
		v := wstest.Dial(t, wsAddr)
		if st := v.Upgrade("/ws?room="+room+query, ""); st != 101 {
			t.Fatalf("upgrade %s: %d", query, st)
		}
		return v
	}
	joined := func(who string, v *wstest.Conn, wantSeq uint64) {
		t.Helper()
		if j := v.NextOp(protocol.OpJoined, 5*time.Second); j.Seq != wantSeq {
			t.Fatalf("%s: joined seq %d, want %d", who, j.Seq, wantSeq)
		}
		if h := v.NextOp(protocol.OpHistory, 5*time.Second); !h.Complete || len(h.Msgs) != 0 {
			t.Fatalf("%s: history complete=%v with %d msgs, want complete and empty", who, h.Complete, len(h.Msgs))
		}
	}
	// send has sender uid send text and checks the ack's seq.
	send := func(uid, text string, wantSeq uint64) {
		t.Helper()
		s := upgrade("&token=" + token(t, uid, "viewer"))
		s.NextOp(protocol.OpHistory, 5*time.Second)
		if err := s.Send(ws.OpText, []byte(fmt.Sprintf(`{"op":"send","room":%q,"id":%q,"text":%q}`, room, uid+text, text))); err != nil {
			t.Fatal(err)
		}
		if f := s.NextOp(protocol.OpAck, 5*time.Second); f.Seq != wantSeq {
			t.Fatalf("ack seq %d, want %d", f.Seq, wantSeq)
		}
	}
	// receive reads batches on v until seq to and checks from..to arrive
	// in order.
	receive := func(who string, v *wstest.Conn, from, to uint64) {
		t.Helper()
		for next := from; next <= to; {
			for _, m := range v.NextOp(protocol.OpBatch, 5*time.Second).Msgs {
				if m.Seq != next {
					t.Fatalf("%s: seq %d, want %d", who, m.Seq, next)
				}
				next++
			}
		}
	}

	hostile := upgrade("&resume=1000000")
	joined("hostile", hostile, 0)
	honest := upgrade("")
	joined("honest", honest, 0)
	for i := uint64(1); i <= 3; i++ {
		send("s1", fmt.Sprint("m", i), i)
	}
	receive("honest", honest, 1, 3)

	// Just past the end, once the room has messages.
	hostile2 := upgrade("&resume=5")
	joined("hostile past the end", hostile2, 3)
	late := upgrade("&resume=3")
	joined("honest resume", late, 3)
	send("s2", "m4", 4)
	receive("honest", honest, 4, 4)
	receive("honest resume", late, 4, 4)
	receive("hostile past the end", hostile2, 4, 4)
}

// TestSecurityForeignModIsAViewer: a mod token for one room sends in
// another room as a plain viewer there: no mod badge on the message (and
// so no moderator exemptions or privileged display modes in logic). The
// outside review of issue 18 found a mod of room "other" getting top and
// large danmaku, and the badge, in every room over WebSocket.
func TestSecurityForeignModIsAViewer(t *testing.T) {
	_, wsAddr := startAll(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	got := make(chan protocol.Message, 4)
	watcher, err := client.Dial(ctx, client.Config{URL: "ws://" + wsAddr + "/ws",
		OnMessage: func(_ string, m protocol.Message) { got <- m }})
	if err != nil {
		t.Fatal(err)
	}
	defer watcher.Close()
	if err := watcher.Join(ctx, "fm", 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, role string
		rooms      []string
		want       string
	}{
		{"mod-of-other", "mod", []string{"other"}, ""},
		{"streamer-of-other", "streamer", []string{"other"}, ""},
		{"mod-of-fm", "mod", []string{"fm"}, "mod"},
	} {
		c, err := client.Dial(ctx, client.Config{URL: "ws://" + wsAddr + "/ws", Token: token(t, tc.name, tc.role, tc.rooms...)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Join(ctx, "fm", 0); err != nil {
			t.Fatal(err)
		}
		f, err := c.Send(ctx, "fm", "hello from "+tc.name)
		c.Close()
		if err != nil || f.Seq == 0 {
			t.Fatalf("%s: send %+v %v", tc.name, f, err)
		}
		select {
		case m := <-got:
			if m.Role != tc.want {
				t.Errorf("%s: the message carries role %q in room fm, want %q", tc.name, m.Role, tc.want)
			}
		case <-ctx.Done():
			t.Fatalf("%s: the message never arrived", tc.name)
		}
	}
}
