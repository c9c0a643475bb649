package main

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/danmaku-live/danmaku/pkg/client"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// mpEnv is the environment of the processes the multi-process tests
// start: only the --jwt-secret flag counts.
var mpEnv = []string{"DANMAKU_JWT_SECRET="}

// mpRooms returns n room names, with prefix, whose records land in n
// different partitions of 8 (murmur2, as kafkabus places them), so that
// both logic workers own some of them.
func mpRooms(prefix string, n int) []string {
	bal := &kafka.Murmur2Balancer{Consistent: true}
	parts := []int{0, 1, 2, 3, 4, 5, 6, 7}
	used := map[int]bool{}
	var rooms []string
	for i := 0; len(rooms) < n; i++ {
		r := fmt.Sprintf("%s-%d", prefix, i)
		p := bal.Balance(kafka.Message{Key: []byte(r)}, parts...)
		if !used[p] {
			used[p] = true
			rooms = append(rooms, r)
		}
	}
	return rooms
}

// TestMultiProcess runs the pipeline as separate processes on the test
// Kafka-protocol broker, ClickHouse and Redis: two logic workers, dispatch
// and two gateways. 200 viewers on both gateways watch 5 rooms while
// senders on both gateways post; midway one logic worker is killed with
// SIGKILL. Every send must be acknowledged, no seq given twice, and every
// viewer must get every acknowledged message of its room exactly once in
// seq order. The survivors must then stop cleanly on SIGTERM.
func TestMultiProcess(t *testing.T) {
	brokers := testenv.Addr(t, testenv.Kafka)
	chAddr := testenv.Addr(t, testenv.ClickHouse)
	redisAddr := testenv.Addr(t, testenv.Redis)
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	bin := testenv.Binary(t)
	run := fmt.Sprintf("mp%d", time.Now().UnixNano()%1e9)
	common := []string{"--bus", "kafka", "--brokers", brokers, "--topic-prefix", run + ".",
		"--history", "clickhouse", "--clickhouse", chAddr, "--presence", "redis", "--redis", redisAddr,
		"--jwt-secret", testSecret, "--log-level", "info", "--drain-timeout", "2s"}
	start := func(name, role string, extra ...string) *testenv.Process {
		h := freeAddr(t)
		args := append(append([]string{role, "--http", h}, common...), extra...)
		return testenv.Spawn(t, bin, name, h, mpEnv, args...)
	}
	logic1 := start("logic-1", "logic")
	logic1.WaitReady(t, 30*time.Second) // creates the topics
	logic2 := start("logic-2", "logic")
	disp := start("dispatch", "dispatch")
	ws1, ws2 := freeAddr(t), freeAddr(t)
	gw1 := start("gateway-1", "gateway", "--ws", ws1, "--id", run+"-gw1")
	gw2 := start("gateway-2", "gateway", "--ws", ws2, "--id", run+"-gw2")
	for _, p := range []*testenv.Process{logic2, disp, gw1, gw2} {
		p.WaitReady(t, 30*time.Second)
	}
	urls := []string{"ws://" + ws1 + "/ws", "ws://" + ws2 + "/ws"}
	ctx, cancel := context.WithTimeout(context.Background(), 80*time.Second)
	defer cancel()

	rooms := mpRooms(run, 5)
	type viewer struct {
		room string
		rec  recorder
	}
	viewers := make([]*viewer, 200)
	var vwg sync.WaitGroup
	var dialErr atomic.Value
	for i := range viewers {
		v := &viewer{room: rooms[i%5]}
		viewers[i] = v
		vwg.Add(1)
		go func() {
			defer vwg.Done()
			c, err := client.Dial(ctx, client.Config{URL: urls[i%2], OnMessage: v.rec.add,
				MinBackoff: 20 * time.Millisecond, MaxBackoff: 500 * time.Millisecond})
			if err != nil {
				dialErr.Store(fmt.Errorf("viewer %d: %w", i, err))
				return
			}
			t.Cleanup(func() { c.Close() })
			if err := c.Join(ctx, v.room, 0); err != nil {
				dialErr.Store(fmt.Errorf("viewer %d join: %w", i, err))
			}
		}()
	}
	vwg.Wait()
	if err := dialErr.Load(); err != nil {
		t.Fatal(err)
	}

	// Four senders, two per gateway, each posting to every room in turn.
	const senders, perSender = 4, 50
	var mu sync.Mutex
	acked := map[string]map[uint64]string{}
	for _, r := range rooms {
		acked[r] = map[uint64]string{}
	}
	var nAcked atomic.Int64
	var ackTimes []time.Time // guarded by mu
	var swg sync.WaitGroup
	for s := range senders {
		c, err := client.Dial(ctx, client.Config{URL: urls[s%2], Token: token(t, fmt.Sprintf("%s-sender%d", run, s), "mod", "*"),
			MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, SendTimeout: 2 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		for _, r := range rooms {
			if err := c.Join(ctx, r, 0); err != nil {
				t.Fatal(err)
			}
		}
		swg.Add(1)
		go func() {
			defer swg.Done()
			for i := range perSender {
				r := rooms[(i+s)%len(rooms)]
				text := fmt.Sprintf("s%d-m%d", s, i)
				f, err := c.Send(ctx, r, text)
				if err != nil || f.Op != protocol.OpAck || f.Seq == 0 {
					t.Errorf("sender %d message %d: no ack: %+v %v", s, i, f, err)
					return
				}
				mu.Lock()
				if prev, dup := acked[r][f.Seq]; dup && prev != text {
					t.Errorf("room %s seq %d acknowledged for two messages: %q and %q", r, f.Seq, prev, text)
				}
				acked[r][f.Seq] = text
				ackTimes = append(ackTimes, time.Now())
				mu.Unlock()
				nAcked.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	// Midway, once both workers have taken partitions, SIGKILL logic-1.
	deadline := time.Now().Add(30 * time.Second)
	for nAcked.Load() < senders*perSender/2 || !strings.Contains(logic1.Log(), "took over partition") ||
		!strings.Contains(logic2.Log(), "took over partition") {
		if time.Now().After(deadline) {
			t.Fatalf("no midway point: %d acks; both workers active: %v %v", nAcked.Load(),
				strings.Contains(logic1.Log(), "took over partition"), strings.Contains(logic2.Log(), "took over partition"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	killedAt := nAcked.Load()
	killTime := time.Now()
	if err := logic1.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-logic1.Done()
	t.Logf("killed logic-1 (pid %d) after %d of %d acks", logic1.Pid(), killedAt, senders*perSender)
	swg.Wait()
	if t.Failed() {
		return
	}
	total := 0
	for _, r := range rooms {
		total += len(acked[r])
	}
	if total != senders*perSender {
		t.Fatalf("acknowledged %d distinct messages, want %d", total, senders*perSender)
	}
	// Acks resume within the group's rebalance time: the session timeout
	// (10 s) for the coordinator to give up on the killed member, then a
	// join round and the new owner's claim of each partition.
	slices.SortFunc(ackTimes, func(a, b time.Time) int { return a.Compare(b) })
	var pause time.Duration
	prev := killTime
	for _, at := range ackTimes {
		if at.After(killTime) {
			pause = max(pause, at.Sub(prev))
			prev = at
		}
	}
	t.Logf("longest pause between acks after the SIGKILL of logic-1: %v", pause.Round(time.Millisecond))
	if pause > 25*time.Second {
		t.Errorf("acks paused %v after the SIGKILL; want them back within the rebalance time (session timeout 10 s + a join round)", pause)
	}

	// Every viewer gets every acknowledged message of its room, once, in
	// seq order.
	deadline = time.Now().Add(20 * time.Second)
	for i, v := range viewers {
		want := acked[v.room]
		var got []protocol.Message
		for {
			got = v.rec.get(v.room)
			if len(got) >= len(want) || time.Now().After(deadline) {
				break
			}
			time.Sleep(20 * time.Millisecond)
		}
		checkStream(t, fmt.Sprintf("viewer %d (gateway %d) room %s", i, i%2+1, v.room), got, want)
		if t.Failed() {
			break
		}
	}

	// logic-2 must have taken over logic-1's partitions (a second round of
	// takeovers after the kill), or the kill proved nothing.
	if n := strings.Count(logic2.Log(), "took over partition"); n < 6 {
		t.Errorf("logic-2 took over partitions %d times; want its own and logic-1's", n)
	}
	if testing.Verbose() {
		for _, line := range strings.Split(logic2.Log(), "\n") {
			if strings.Contains(line, "took over") {
				t.Log("logic-2: " + line)
			}
		}
	}

	// The survivors drain and exit cleanly on SIGTERM.
	for _, p := range []*testenv.Process{gw1, gw2, disp, logic2} {
		p.Stop(t, 20*time.Second)
	}
}

// TestGatewaysShareReusePort runs two gateway processes on one WebSocket
// port with --reuseport: both start, viewers connect, and when one stops on
// SIGTERM the other keeps accepting on the same port.
func TestGatewaysShareReusePort(t *testing.T) {
	brokers := testenv.Addr(t, testenv.Kafka)
	if testing.Short() {
		t.Skip("multi-process test skipped in -short mode")
	}
	bin := testenv.Binary(t)
	run := fmt.Sprintf("rp%d", time.Now().UnixNano()%1e9)
	ws := freeAddr(t)
	var gws []*testenv.Process
	for i := range 2 {
		h := freeAddr(t)
		gws = append(gws, testenv.Spawn(t, bin, fmt.Sprintf("gateway-%d", i+1), h, mpEnv, "gateway", "--http", h, "--ws", ws,
			"--reuseport", "--id", fmt.Sprintf("%s-gw%d", run, i+1), "--bus", "kafka", "--brokers", brokers,
			"--topic-prefix", run+".", "--jwt-secret", testSecret, "--drain-timeout", "1s"))
	}
	for _, p := range gws {
		p.WaitReady(t, 30*time.Second)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dial := func(n int) {
		t.Helper()
		for i := range n {
			c, err := client.Dial(ctx, client.Config{URL: "ws://" + ws + "/ws"})
			if err != nil {
				t.Fatalf("viewer %d: %v", i, err)
			}
			if err := c.Join(ctx, run, 0); err != nil {
				t.Fatalf("viewer %d join: %v", i, err)
			}
			c.Close()
		}
	}
	dial(20)
	gws[0].Stop(t, 15*time.Second)
	dial(20) // only gateway-2 listens now
	gws[1].Stop(t, 15*time.Second)
}
