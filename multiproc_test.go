package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
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

// mpProc is one danmaku process started by a test.
type mpProc struct {
	name string
	cmd  *exec.Cmd
	http string
	out  *mpBuffer
	done chan struct{} // closed when the process exited
	err  error         // exit status; read after done
}

// mpBuffer is a bytes.Buffer safe for the process's writers and the
// test.
type mpBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *mpBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *mpBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// mpBuild builds the danmaku binary once into a temp dir.
func mpBuild(t *testing.T) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	bin := filepath.Join(t.TempDir(), "danmaku")
	cmd := exec.Command(goBin, "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// mpStart starts bin with args, its HTTP health port at httpAddr. The
// process is killed, by pid, when the test ends if it still runs; its log is
// printed when the test failed.
func mpStart(t *testing.T, bin, name, httpAddr string, args ...string) *mpProc {
	t.Helper()
	p := &mpProc{name: name, http: httpAddr, out: &mpBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	p.cmd.Env = append(os.Environ(), "DANMAKU_JWT_SECRET=") // only the flag counts
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		select {
		case <-p.done:
		default:
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("---- log of %s (pid %d) ----\n%s", p.name, p.cmd.Process.Pid, p.out.String())
		}
	})
	return p
}

// waitReady polls the process's /readyz.
func (p *mpProc) waitReady(t *testing.T, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		resp, err := http.Get("http://" + p.http + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		select {
		case <-p.done:
			t.Fatalf("%s exited before it was ready: %v", p.name, p.err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not ready after %v: %v", p.name, d, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop sends SIGTERM and expects a clean exit within d.
func (p *mpProc) stop(t *testing.T, d time.Duration) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		if p.err != nil {
			t.Errorf("%s: exit after SIGTERM: %v", p.name, p.err)
		}
	case <-time.After(d):
		t.Errorf("%s did not stop within %v of SIGTERM", p.name, d)
	}
}

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
	bin := mpBuild(t)
	run := fmt.Sprintf("mp%d", time.Now().UnixNano()%1e9)
	common := []string{"--bus", "kafka", "--brokers", brokers, "--topic-prefix", run + ".",
		"--history", "clickhouse", "--clickhouse", chAddr, "--presence", "redis", "--redis", redisAddr,
		"--jwt-secret", testSecret, "--log-level", "info", "--drain-timeout", "2s"}
	start := func(name, role string, extra ...string) *mpProc {
		h := freeAddr(t)
		args := append(append([]string{role, "--http", h}, common...), extra...)
		return mpStart(t, bin, name, h, args...)
	}
	logic1 := start("logic-1", "logic")
	logic1.waitReady(t, 30*time.Second) // creates the topics
	logic2 := start("logic-2", "logic")
	disp := start("dispatch", "dispatch")
	ws1, ws2 := freeAddr(t), freeAddr(t)
	gw1 := start("gateway-1", "gateway", "--ws", ws1, "--id", run+"-gw1")
	gw2 := start("gateway-2", "gateway", "--ws", ws2, "--id", run+"-gw2")
	for _, p := range []*mpProc{logic2, disp, gw1, gw2} {
		p.waitReady(t, 30*time.Second)
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
				mu.Unlock()
				nAcked.Add(1)
				time.Sleep(5 * time.Millisecond)
			}
		}()
	}

	// Midway, once both workers have taken partitions, SIGKILL logic-1.
	deadline := time.Now().Add(30 * time.Second)
	for nAcked.Load() < senders*perSender/2 || !strings.Contains(logic1.out.String(), "took over partition") ||
		!strings.Contains(logic2.out.String(), "took over partition") {
		if time.Now().After(deadline) {
			t.Fatalf("no midway point: %d acks; both workers active: %v %v", nAcked.Load(),
				strings.Contains(logic1.out.String(), "took over partition"), strings.Contains(logic2.out.String(), "took over partition"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	killedAt := nAcked.Load()
	if err := logic1.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-logic1.done
	t.Logf("killed logic-1 (pid %d) after %d of %d acks", logic1.cmd.Process.Pid, killedAt, senders*perSender)
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
	if n := strings.Count(logic2.out.String(), "took over partition"); n < 6 {
		t.Errorf("logic-2 took over partitions %d times; want its own and logic-1's", n)
	}
	if testing.Verbose() {
		for _, line := range strings.Split(logic2.out.String(), "\n") {
			if strings.Contains(line, "took over") {
				t.Log("logic-2: " + line)
			}
		}
	}

	// The survivors drain and exit cleanly on SIGTERM.
	for _, p := range []*mpProc{gw1, gw2, disp, logic2} {
		p.stop(t, 20*time.Second)
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
	bin := mpBuild(t)
	run := fmt.Sprintf("rp%d", time.Now().UnixNano()%1e9)
	ws := freeAddr(t)
	var gws []*mpProc
	for i := range 2 {
		h := freeAddr(t)
		gws = append(gws, mpStart(t, bin, fmt.Sprintf("gateway-%d", i+1), h, "gateway", "--http", h, "--ws", ws,
			"--reuseport", "--id", fmt.Sprintf("%s-gw%d", run, i+1), "--bus", "kafka", "--brokers", brokers,
			"--topic-prefix", run+".", "--jwt-secret", testSecret, "--drain-timeout", "1s"))
	}
	for _, p := range gws {
		p.waitReady(t, 30*time.Second)
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
	gws[0].stop(t, 15*time.Second)
	dial(20) // only gateway-2 listens now
	gws[1].stop(t, 15*time.Second)
}
