package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/client"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestKcatReadsDispatch checks that a stock Kafka tool, Debian's kcat,
// reads the dispatch topic and gets the documented frame:
// {"op":"batch","room":R,"msgs":[{"seq":..,"uid":..,"name":..,"text":..,"ts":..}]}.
func TestKcatReadsDispatch(t *testing.T) {
	brokers := testenv.Addr(t, testenv.Kafka)
	kcat, err := exec.LookPath("kcat")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("kcat not installed (deploy/dev/env.sh up installs it)")
		}
		t.Skip("kcat not installed: run deploy/dev/env.sh up (apt-get install kcat)")
	}
	prefix := fmt.Sprintf("kcat%d.", time.Now().UnixNano())
	_, wsAddr := startAll(t, "--bus", "kafka", "--brokers", brokers, "--topic-prefix", prefix)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, client.Config{URL: "ws://" + wsAddr + "/ws", Token: token(t, "kcat-user", "mod", "*")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	const room = "kcat-room"
	if err := c.Join(ctx, room, 0); err != nil {
		t.Fatal(err)
	}
	ack, err := c.Send(ctx, room, "hello kcat")
	if err != nil || ack.Op != protocol.OpAck || ack.Seq == 0 {
		t.Fatalf("send: %+v %v", ack, err)
	}

	var out, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, kcat, "-C", "-b", strings.Split(brokers, ",")[0], "-t", prefix+"dispatch",
		"-o", "beginning", "-c", "1", "-e", "-q", "-f", "%k\t%s\n")
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("kcat: %v\n%s", err, stderr.String())
	}
	key, value, ok := strings.Cut(strings.TrimSpace(out.String()), "\t")
	if !ok || key != room {
		t.Fatalf("kcat printed %q, want key %q, a tab, the value", out.String(), room)
	}
	var f struct {
		Op   string `json:"op"`
		Room string `json:"room"`
		Msgs []struct {
			Seq  uint64 `json:"seq"`
			UID  string `json:"uid"`
			Name string `json:"name"`
			Text string `json:"text"`
			TS   int64  `json:"ts"`
		} `json:"msgs"`
	}
	if err := json.Unmarshal([]byte(value), &f); err != nil {
		t.Fatalf("value %q is not JSON: %v", value, err)
	}
	if f.Op != "batch" || f.Room != room || len(f.Msgs) != 1 {
		t.Fatalf("frame = %s, want a batch of room %s with one message", value, room)
	}
	m := f.Msgs[0]
	if m.Seq != ack.Seq || m.UID != "kcat-user" || m.Name != "name-kcat-user" || m.Text != "hello kcat" ||
		time.Since(time.UnixMilli(m.TS)).Abs() > time.Minute {
		t.Errorf("message = %+v, want seq %d from kcat-user, text %q, ts now", m, ack.Seq, "hello kcat")
	}
	if strings.Contains(value, `"in"`) {
		t.Errorf("internal field leaked into the dispatch frame: %s", value)
	}
}
