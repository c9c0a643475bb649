package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/client"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// historyPage is the body of GET /api/rooms/{room}/history.
type historyPage struct {
	Room string             `json:"room"`
	Msgs []protocol.Message `json:"msgs"`
	Next uint64             `json:"next"`
}

// getHistory reads one page of GET /api/rooms/{room}/history?query.
func getHistory(httpAddr, room, query string) (historyPage, error) {
	var p historyPage
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + httpAddr + "/api/rooms/" + room + "/history?" + query)
	if err != nil {
		return p, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return p, fmt.Errorf("status %d", resp.StatusCode)
	}
	err = json.NewDecoder(resp.Body).Decode(&p)
	return p, err
}

// pageAll follows the next cursor from after_seq 0 and returns every
// message of room.
func pageAll(httpAddr, room string, limit int) ([]protocol.Message, error) {
	var all []protocol.Message
	after := uint64(0)
	for range 10000 {
		p, err := getHistory(httpAddr, room, fmt.Sprintf("after_seq=%d&limit=%d", after, limit))
		if err != nil {
			return all, err
		}
		all = append(all, p.Msgs...)
		if p.Next == 0 {
			return all, nil
		}
		after = p.Next
	}
	return all, fmt.Errorf("too many pages")
}

// TestClickHouseDownMidStream runs `danmaku all` on the Kafka-protocol
// broker and its own ClickHouse, stops ClickHouse for about ten seconds
// while a sender keeps sending, and starts it again on the same port:
// viewers receive every acknowledged message throughout, and afterwards
// the history API pages through every acknowledged message exactly once,
// in seq order.
func TestClickHouseDownMidStream(t *testing.T) {
	brokers := testenv.Addr(t, testenv.Kafka)
	testenv.Addr(t, testenv.ClickHouse) // the dev environment that installs clickhouse-server
	dir := t.TempDir()
	runDev(t, nil, "clickhouse.sh", "start", dir)
	t.Cleanup(func() { runDev(t, nil, "clickhouse.sh", "stop", dir) })
	chAddr := readAddr(t, filepath.Join(dir, "clickhouse.addr"))
	_, chPort, _ := net.SplitHostPort(chAddr)
	_, chHTTP, _ := net.SplitHostPort(readAddr(t, filepath.Join(dir, "clickhouse.http")))
	prefix := fmt.Sprintf("chdown%d.", time.Now().UnixNano())
	httpAddr, wsAddr := startAll(t, "--bus", "kafka", "--brokers", brokers, "--topic-prefix", prefix,
		"--history", "clickhouse", "--clickhouse", chAddr)
	room := "ch-down"
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()

	var rec recorder
	dialJoined(t, ctx, wsAddr, "", room, &rec)
	sender := dialJoined(t, ctx, wsAddr, token(t, "ch-sender", "mod", "*"), room, nil)

	// The sender runs throughout; phases are marked by the main goroutine.
	var mu sync.Mutex
	acked := make(map[uint64]string)
	var slowest time.Duration
	stop := make(chan struct{})
	sent := make(chan error, 1)
	go func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				sent <- nil
				return
			default:
			}
			text := fmt.Sprintf("m-%d", i)
			start := time.Now()
			f, err := sender.Send(ctx, room, text)
			if err != nil || f.Op != protocol.OpAck {
				sent <- fmt.Errorf("send %s: %+v, %v", text, f, err)
				return
			}
			mu.Lock()
			acked[f.Seq] = text
			slowest = max(slowest, time.Since(start))
			mu.Unlock()
			time.Sleep(40 * time.Millisecond)
		}
	}()
	count := func() int {
		mu.Lock()
		defer mu.Unlock()
		return len(acked)
	}

	// Let the stream settle (topic and group setup) before the outage.
	for settle := time.Now(); count() < 20 && time.Since(settle) < 20*time.Second; {
		time.Sleep(50 * time.Millisecond)
	}
	before := count()
	runDev(t, nil, "clickhouse.sh", "stop", dir)
	downAt := time.Now()
	t.Logf("ClickHouse stopped after %d acked messages", before)
	time.Sleep(10 * time.Second)
	atRestart := count()
	runDev(t, []string{"CLICKHOUSE_PORT=" + chPort, "CLICKHOUSE_HTTP_PORT=" + chHTTP}, "clickhouse.sh", "start", dir)
	t.Logf("ClickHouse back after %v; %d messages acked while it was down",
		time.Since(downAt).Round(time.Millisecond), atRestart-before)
	if atRestart-before < 10 {
		t.Errorf("only %d messages acked while ClickHouse was down", atRestart-before)
	}
	time.Sleep(2 * time.Second)
	close(stop)
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	want := make(map[uint64]string, len(acked))
	for k, v := range acked {
		want[k] = v
	}
	t.Logf("%d messages acked in all; slowest ack %v", len(want), slowest.Round(time.Millisecond))
	mu.Unlock()

	waitDelivered(t, &rec, room, want, 10*time.Second)
	if got := rec.get(room); len(got) != len(want) {
		t.Errorf("viewer got %d messages, want %d", len(got), len(want))
	}

	// History catches up once ClickHouse is back: every acked message,
	// once, ascending, across pages.
	deadline := time.Now().Add(30 * time.Second)
	var msgs []protocol.Message
	var err error
	for {
		msgs, err = pageAll(httpAddr, room, 97)
		if err == nil && len(msgs) >= len(want) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history has %d of %d acked messages (%v)", len(msgs), len(want), err)
		}
		time.Sleep(250 * time.Millisecond)
	}
	seen := make(map[uint64]bool, len(msgs))
	for i, m := range msgs {
		if seen[m.Seq] {
			t.Errorf("history repeats seq %d", m.Seq)
		}
		seen[m.Seq] = true
		if i > 0 && m.Seq <= msgs[i-1].Seq {
			t.Errorf("history out of order: seq %d after %d", m.Seq, msgs[i-1].Seq)
		}
		if text, ok := want[m.Seq]; !ok || text != m.Text {
			t.Errorf("history seq %d = %q, acked as %q (%v)", m.Seq, m.Text, text, ok)
		}
	}
	for seq := range want {
		if !seen[seq] {
			t.Errorf("acked seq %d missing from history", seq)
		}
	}
}

// TestReplayByTime sends three bursts at known times on ClickHouse and
// reads each back through the history API by time range (from/to in ms):
// exactly that burst, in seq order.
func TestReplayByTime(t *testing.T) {
	ch := testenv.Addr(t, testenv.ClickHouse)
	httpAddr, wsAddr := startAll(t, "--history", "clickhouse", "--clickhouse", ch)
	room := fmt.Sprintf("replay-%d", time.Now().UnixNano())
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sender, err := client.Dial(ctx, client.Config{URL: "ws://" + wsAddr + "/ws", Token: token(t, "replayer", "mod", "*")})
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	if err := sender.Join(ctx, room, 0); err != nil {
		t.Fatal(err)
	}
	type burst struct {
		from, to int64 // ms, [from, to)
		seqs     []uint64
		texts    []string
	}
	var bursts []burst
	for b := range 3 {
		time.Sleep(150 * time.Millisecond)
		bu := burst{from: time.Now().UnixMilli()}
		for i := range 4 + b {
			text := fmt.Sprintf("burst%d-%d", b, i)
			f, err := sender.Send(ctx, room, text)
			if err != nil || f.Op != protocol.OpAck {
				t.Fatalf("send: %+v %v", f, err)
			}
			bu.seqs = append(bu.seqs, f.Seq)
			bu.texts = append(bu.texts, text)
			time.Sleep(10 * time.Millisecond)
		}
		bu.to = time.Now().UnixMilli() + 1
		bursts = append(bursts, bu)
		time.Sleep(150 * time.Millisecond)
	}
	total := 0
	for _, b := range bursts {
		total += len(b.seqs)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		all, err := pageAll(httpAddr, room, 1000)
		if err == nil && len(all) == total {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("history has %d of %d messages (%v)", len(all), total, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for i, b := range bursts {
		t.Run(fmt.Sprintf("burst%d", i), func(t *testing.T) {
			p, err := getHistory(httpAddr, room, fmt.Sprintf("from=%d&to=%d&limit=1000", b.from, b.to))
			if err != nil {
				t.Fatal(err)
			}
			if len(p.Msgs) != len(b.seqs) {
				t.Fatalf("range [%d, %d) returned %d messages, want %d: %+v", b.from, b.to, len(p.Msgs), len(b.seqs), p.Msgs)
			}
			for j, m := range p.Msgs {
				if m.Seq != b.seqs[j] || m.Text != b.texts[j] {
					t.Errorf("msg %d = seq %d %q, want seq %d %q", j, m.Seq, m.Text, b.seqs[j], b.texts[j])
				}
				if m.TS < b.from || m.TS >= b.to {
					t.Errorf("msg seq %d ts %d outside [%d, %d)", m.Seq, m.TS, b.from, b.to)
				}
			}
		})
	}
	// A range that spans the second and third bursts returns both, in
	// order, and a page limit cuts it with a next cursor.
	p, err := getHistory(httpAddr, room, fmt.Sprintf("from=%d&to=%d&limit=3", bursts[1].from, bursts[2].to))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Msgs) != 3 || p.Msgs[0].Seq != bursts[1].seqs[0] || p.Next != p.Msgs[2].Seq {
		t.Errorf("first page of bursts 1-2: %+v next %d", p.Msgs, p.Next)
	}
	p, err = getHistory(httpAddr, room, fmt.Sprintf("from=%d&to=%d&after_seq=%d&limit=1000", bursts[1].from, bursts[2].to, p.Next))
	if err != nil {
		t.Fatal(err)
	}
	if want := len(bursts[1].seqs) + len(bursts[2].seqs) - 3; len(p.Msgs) != want || p.Msgs[len(p.Msgs)-1].Seq != bursts[2].seqs[len(bursts[2].seqs)-1] {
		t.Errorf("second page of bursts 1-2: %d msgs, want %d: %+v", len(p.Msgs), want, p.Msgs)
	}
}
