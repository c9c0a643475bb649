package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/client"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestModerationStateSurvivesRestart: keywords and bans that moderators set
// are kept in Redis and applied by a process started afterwards.
func TestModerationStateSurvivesRestart(t *testing.T) {
	redis := testenv.Addr(t, testenv.Redis)
	room := fmt.Sprintf("persist-%x", time.Now().UnixNano()&0xffffffff)
	mod := token(t, "mod-"+room, "mod", room)

	// First process: a moderator blocks a word and bans a user.
	httpAddr, _, stop := startApp(t, "--presence", "redis", "--redis", redis)
	do := func(method, path, body string) int {
		req, _ := http.NewRequest(method, "http://"+httpAddr+path, bytes.NewBufferString(body))
		req.Header.Set("Authorization", "Bearer "+mod)
		req.Header.Set("Content-Type", "application/json")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if st := do("PUT", "/api/rooms/"+room+"/keywords", `{"keywords":["forbiddenword"],"action":"block"}`); st != 200 {
		t.Fatalf("PUT keywords: %d", st)
	}
	if st := do("POST", "/api/rooms/"+room+"/bans", `{"uid":"troll-`+room+`","duration_s":600,"reason":"spam"}`); st != 200 && st != 201 {
		t.Fatalf("POST bans: %d", st)
	}
	stop()

	// Second process on the same Redis: both still hold.
	_, wsAddr := startAll(t, "--presence", "redis", "--redis", redis)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	send := func(uid, role, text string) protocol.ServerFrame {
		c, err := client.Dial(ctx, client.Config{URL: "ws://" + wsAddr + "/ws", Token: token(t, uid, role, "*")})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		if err := c.Join(ctx, room, 0); err != nil {
			t.Fatal(err)
		}
		f, err := c.Send(ctx, room, text)
		if err != nil {
			t.Fatal(err)
		}
		return f
	}
	if f := send("someone-"+room, "viewer", "this has forbiddenword in it"); f.Code != protocol.CodeBlocked {
		t.Errorf("keyword after restart: %+v, want blocked", f)
	}
	if f := send("troll-"+room, "viewer", "hello again"); f.Code != protocol.CodeBanned {
		t.Errorf("ban after restart: %+v, want banned", f)
	}
	if f := send("someone-else-"+room, "viewer", "innocent words"); f.Op != protocol.OpAck || f.Seq == 0 {
		t.Errorf("innocent send: %+v", f)
	}
}
