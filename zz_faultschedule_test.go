package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/bench/checker"
	"github.com/danmaku-live/danmaku/pkg/client"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// fsConfig sizes one fault schedule.
type fsConfig struct {
	seed     uint64
	duration time.Duration // of the fault schedule, under traffic
	viewers  int           // honest viewers at the start
	chatters int           // viewer-role senders (rate limited: 1 msg/s, bursts of 3)
	bulk     int           // mod-role senders to the hot room
	bulkGap  time.Duration // between two sends of a bulk sender's loop
	inflight int           // send loops per bulk sender
	// faultGap bounds the pause between two faults.
	faultGapMin, faultGapMax time.Duration
	// sendWait bounds one send attempt (the client retries with the same
	// id until then).
	sendWait time.Duration
}

// The group session timeout of the logic workers (kafkabus default): a
// worker stopped longer than this is replaced while it sleeps.
const fsSessionTimeout = 10 * time.Second

// faultScheduleConfig reads DANMAKU_SEED and DANMAKU_DURATION; the short
// form (make test) is one fixed seed and 30 s of faults, the long form
// (DANMAKU_CHAOS=long, make chaos) a random seed, 3 minutes and more
// traffic.
func faultScheduleConfig(t *testing.T) fsConfig {
	c := fsConfig{seed: 1, duration: 30 * time.Second, viewers: 16, chatters: 8, bulk: 1, bulkGap: 25 * time.Millisecond, inflight: 2,
		faultGapMin: 1500 * time.Millisecond, faultGapMax: 4 * time.Second, sendWait: 30 * time.Second}
	if chaosLong() {
		c = fsConfig{seed: uint64(time.Now().UnixNano()%1e6) + 1, duration: 3 * time.Minute, viewers: 24, chatters: 12, bulk: 2,
			bulkGap: 15 * time.Millisecond, inflight: 4, faultGapMin: 2 * time.Second, faultGapMax: 6 * time.Second, sendWait: 90 * time.Second}
	}
	if s := os.Getenv("DANMAKU_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DANMAKU_SEED=%q: want a number", s)
		}
		c.seed = v
	}
	if s := os.Getenv("DANMAKU_DURATION"); s != "" {
		d, err := time.ParseDuration(s)
		if err != nil || d <= 0 {
			t.Fatalf("DANMAKU_DURATION=%q: want a positive duration such as 3m", s)
		}
		c.duration = d
	}
	return c
}

// TestFaultSchedule runs the multi-process deployment (its own broker and
// Redis, the test ClickHouse, logic workers, dispatch, two gateways) under
// a random schedule of faults drawn from one seed, with honest viewers and
// senders on pkg/client and hostile viewers on raw WebSockets, records
// every send, answer, delivery and the history read back at the end, and
// checks the delivery promises with bench/checker. On a violation it
// prints the seed and each violation's story. See docs/reliability.md,
// "Fault schedules".
//
// The file is named zz_ so that go test runs it after the package's timing
// tests (TestFloodsKeepViewerLatency measures a viewer's p99): its
// processes and proxies wind down while the next test runs, which made
// that test fail once (p99 1.76 s during the floods).
func TestFaultSchedule(t *testing.T) {
	cfg := faultScheduleConfig(t)
	e := newChaosEnvWith(t, chaosOptions{logic: 2, proxies: true})
	t.Logf("fault schedule: seed %d, %v of faults (repeat with DANMAKU_SEED=%d DANMAKU_DURATION=%v)",
		cfg.seed, cfg.duration, cfg.seed, cfg.duration)
	r := newFaultRun(t, e, cfg)
	r.startViewers()
	r.startSenders()
	r.schedule()
	r.finish()
}

// faultRun is one fault schedule in progress.
type faultRun struct {
	t     *testing.T
	e     *chaosEnv
	cfg   fsConfig
	rnd   *rand.Rand // the schedule's; used by the test goroutine only
	rooms []string
	hot   string
	ctx   context.Context
	rec   *fsRecorder

	mu        sync.Mutex // guards logic, stopped, outage, faults
	logic     []string   // logic workers started and not ended
	stopped   map[string]bool
	outage    map[string]bool // "redis", "clickhouse"
	faults    map[string]int  // injected, by kind
	nextLogic int

	viewers  []*fsViewer
	vmu      sync.Mutex // guards viewers, churned
	churned  []*fsViewer
	senders  []*fsSender
	hostile  []net.Conn
	hmu      sync.Mutex // guards hostile
	async    sync.WaitGroup
	bg       sync.WaitGroup
	sendWG   sync.WaitGroup
	stopBg   chan struct{}
	stopSend chan struct{}
}

func newFaultRun(t *testing.T, e *chaosEnv, cfg fsConfig) *faultRun {
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	rooms := mpRooms(e.run, 4)
	return &faultRun{t: t, e: e, cfg: cfg, rnd: rand.New(rand.NewPCG(cfg.seed, 0)), rooms: rooms, hot: rooms[0], ctx: ctx,
		rec: &fsRecorder{h: checker.History{Start: time.Now()}}, logic: []string{"logic-1", "logic-2"}, nextLogic: 3,
		stopped: map[string]bool{}, outage: map[string]bool{}, faults: map[string]int{},
		stopBg: make(chan struct{}), stopSend: make(chan struct{})}
}

// fsRecorder collects the history. Safe for concurrent use.
type fsRecorder struct {
	mu sync.Mutex
	h  checker.History
}

func (r *fsRecorder) note(room, format string, args ...any) {
	r.mu.Lock()
	r.h.Notes = append(r.h.Notes, checker.Note{At: time.Now(), Room: room, Text: fmt.Sprintf(format, args...)})
	r.mu.Unlock()
}

func (r *fsRecorder) event(e checker.Event) {
	r.mu.Lock()
	r.h.Events = append(r.h.Events, e)
	r.mu.Unlock()
}

func (r *fsRecorder) send(s checker.Send) {
	r.mu.Lock()
	r.h.Sends = append(r.h.Sends, s)
	r.mu.Unlock()
}

func (r *fsRecorder) answer(a checker.Answer) {
	r.mu.Lock()
	r.h.Answers = append(r.h.Answers, a)
	r.mu.Unlock()
}

// lastAcked returns the highest acked seq per room so far.
func (r *fsRecorder) lastAcked() map[string]uint64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := map[string]uint64{}
	for _, a := range r.h.Answers {
		if a.Kind == checker.Ack && a.Seq > out[a.Room] {
			out[a.Room] = a.Seq
		}
	}
	return out
}

func (r *faultRun) clientConfig(gw int) client.Config {
	urls := r.e.urls()
	return client.Config{URL: urls[gw%2], URLs: []string{urls[(gw+1)%2]},
		MinBackoff: 50 * time.Millisecond, MaxBackoff: time.Second, SendTimeout: 2 * time.Second}
}

// fsViewer is an honest viewer: pkg/client, fails over between the
// gateways, resumes by itself; every delivery, join and history frame is
// recorded.
type fsViewer struct {
	name  string
	rooms []string
	c     *client.Client
	rec   *fsRecorder
	mu    sync.Mutex
	last  map[string]uint64
	join  map[string]checker.Event
	left  bool
}

func (r *faultRun) dialViewer(name string, gw int, rooms []string) (*fsViewer, error) {
	v := &fsViewer{name: name, rooms: rooms, rec: r.rec, last: map[string]uint64{}, join: map[string]checker.Event{}}
	c := r.clientConfig(gw)
	c.OnMessage = func(room string, m protocol.Message) {
		v.mu.Lock()
		v.last[room] = max(v.last[room], m.Seq)
		v.mu.Unlock()
		v.rec.event(checker.Event{Viewer: name, Room: room, At: time.Now(), Kind: checker.Delivered, Seq: m.Seq,
			Msg: checker.Msg{UID: m.UID, ID: m.ID, Text: m.Text}})
	}
	c.OnThinned = func(room string, from, to uint64) {
		v.rec.event(checker.Event{Viewer: name, Room: room, At: time.Now(), Kind: checker.Thinned, From: from, To: to})
	}
	c.OnFrame = func(f protocol.ServerFrame) {
		switch f.Op {
		case protocol.OpJoined:
			v.mu.Lock()
			ev := checker.Event{Viewer: name, Room: f.Room, At: time.Now(), Kind: checker.Joined, Seq: f.Seq, Resume: v.last[f.Room]}
			v.join[f.Room] = ev
			v.mu.Unlock()
			v.rec.event(ev)
		case protocol.OpHistory:
			v.mu.Lock()
			j := v.join[f.Room]
			v.mu.Unlock()
			v.rec.event(checker.Event{Viewer: name, Room: f.Room, At: time.Now(), Kind: checker.HistoryFrame,
				From: j.Resume + 1, To: j.Seq, Complete: f.Complete})
		}
	}
	ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, c)
	if err != nil {
		return nil, err
	}
	v.c = cl
	r.t.Cleanup(func() { cl.Close() })
	for _, room := range rooms {
		if err := cl.Join(ctx, room, 0); err != nil {
			return v, fmt.Errorf("%s join %s: %w", name, room, err)
		}
	}
	return v, nil
}

// leave records that v leaves its rooms on purpose, then closes it.
func (v *fsViewer) leave() {
	v.mu.Lock()
	v.left = true
	v.mu.Unlock()
	for _, room := range v.rooms {
		v.rec.event(checker.Event{Viewer: v.name, Room: room, At: time.Now(), Kind: checker.Left})
	}
	v.c.Close()
}

func (r *faultRun) startViewers() {
	t := r.t
	var wg sync.WaitGroup
	errs := make([]error, r.cfg.viewers)
	r.viewers = make([]*fsViewer, r.cfg.viewers)
	for i := range r.cfg.viewers {
		rooms := []string{r.rooms[i%len(r.rooms)]}
		if i%4 == 3 {
			rooms = append(rooms, r.rooms[(i+1)%len(r.rooms)])
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.viewers[i], errs[i] = r.dialViewer(fmt.Sprintf("v%d@gw%d", i, i%2+1), i, rooms)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// fsSender sends messages and now and then re-sends an old acked one with
// its id, as a client retrying much later would.
type fsSender struct {
	name  string
	uid   string
	rooms []string
	gap   func(*rand.Rand) time.Duration
	// home is the index of the room most sends go to (4 of 5).
	home int
	// inflight is how many send loops share the connection.
	inflight int
	seed     uint64
	// resend is the chance that a send re-sends an old acked message.
	resend float64
	c      *client.Client
	mu     sync.Mutex // guards acked
	acked  []checker.Send
}

func (r *faultRun) startSenders() {
	t := r.t
	n := 0
	add := func(role string, rooms []string, inflight int, gap func(*rand.Rand) time.Duration, resend float64) {
		n++
		s := &fsSender{name: fmt.Sprintf("s%d-%s", n, role), uid: fmt.Sprintf("%s-s%d", r.e.run, n), rooms: rooms, resend: resend,
			gap: gap, inflight: inflight, seed: uint64(n) * 100, home: n % len(rooms)}
		c := r.clientConfig(n)
		c.Token = token(t, s.uid, role, "*")
		c.OnFrame = func(f protocol.ServerFrame) {
			a := checker.Answer{Sender: s.name, Room: f.Room, UID: s.uid, ID: f.ID, At: time.Now()}
			switch {
			case f.Op == protocol.OpAck && f.Held:
				a.Kind = checker.Held
			case f.Op == protocol.OpAck:
				a.Kind, a.Seq = checker.Ack, f.Seq
			case f.Op == protocol.OpReject:
				a.Kind, a.Code = checker.Reject, string(f.Code)
			default:
				return
			}
			r.rec.answer(a)
		}
		ctx, cancel := context.WithTimeout(r.ctx, 30*time.Second)
		defer cancel()
		cl, err := client.Dial(ctx, c)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cl.Close() })
		for _, room := range rooms {
			if err := cl.Join(ctx, room, 0); err != nil {
				t.Fatal(err)
			}
		}
		s.c = cl
		r.senders = append(r.senders, s)
	}
	for range r.cfg.chatters {
		// About 1.7 msg/s, most to one room, against a limit of 1/s per
		// room with bursts of 3: often rate limited, so two owners of a
		// partition can disagree.
		add("viewer", r.rooms, 1, func(rnd *rand.Rand) time.Duration {
			return 150*time.Millisecond + time.Duration(rnd.Int64N(int64(900*time.Millisecond)))
		}, 0.05)
	}
	for range r.cfg.bulk {
		add("mod", []string{r.hot}, r.cfg.inflight, func(rnd *rand.Rand) time.Duration {
			return r.cfg.bulkGap/2 + time.Duration(rnd.Int64N(int64(r.cfg.bulkGap)))
		}, 0.01)
	}
	for _, s := range r.senders {
		for loop := range s.inflight {
			r.sendWG.Add(1)
			go func() {
				defer r.sendWG.Done()
				r.sendLoop(s, loop)
			}()
		}
	}
}

// sendLoop is one of a sender's send loops; each has its own random
// source and message ids.
func (r *faultRun) sendLoop(s *fsSender, loop int) {
	rnd := rand.New(rand.NewPCG(r.cfg.seed, s.seed+uint64(loop)))
	for i := 0; ; i++ {
		select {
		case <-r.stopSend:
			return
		default:
		}
		room := s.rooms[s.home]
		if rnd.Float64() < 0.2 {
			room = s.rooms[rnd.IntN(len(s.rooms))]
		}
		n := fmt.Sprintf("%d", i)
		if s.inflight > 1 {
			n = fmt.Sprintf("%d.%d", loop, i)
		}
		m := checker.Msg{UID: s.uid, ID: s.name + "-" + n, Text: s.name + " says " + n}
		resend := false
		s.mu.Lock()
		if len(s.acked) > 0 && rnd.Float64() < s.resend {
			// Re-send one of the older half of the acked messages.
			old := s.acked[rnd.IntN(len(s.acked)/2+1)]
			room, m, resend = old.Room, old.Msg, true
		}
		s.mu.Unlock()
		at := time.Now()
		r.rec.send(checker.Send{Sender: s.name, Room: room, Msg: m, At: at})
		ctx, cancel := context.WithTimeout(r.ctx, r.cfg.sendWait)
		send := s.c.SendID
		if resend {
			send = s.c.Resend // a client re-sending a message whose answer it lost
		}
		f, err := send(ctx, room, m.ID, m.Text)
		cancel()
		if err == nil && f.Op == protocol.OpAck && f.Seq > 0 && !resend {
			s.mu.Lock()
			s.acked = append(s.acked, checker.Send{Sender: s.name, Room: room, Msg: m, At: at})
			s.mu.Unlock()
		}
		select {
		case <-r.stopSend:
			return
		case <-time.After(s.gap(rnd)):
		}
	}
}

// churn adds honest viewers that join late and removes some, until
// stopBg.
func (r *faultRun) churn() {
	rnd := rand.New(rand.NewPCG(r.cfg.seed, 1000))
	for n := 0; ; n++ {
		select {
		case <-r.stopBg:
			return
		case <-time.After(2*time.Second + time.Duration(rnd.Int64N(int64(3*time.Second)))):
		}
		r.vmu.Lock()
		if len(r.churned) > 0 && rnd.IntN(3) == 0 {
			i := rnd.IntN(len(r.churned))
			v := r.churned[i]
			r.churned = slices.Delete(r.churned, i, i+1)
			r.vmu.Unlock()
			v.leave()
			continue
		}
		r.vmu.Unlock()
		gw := rnd.IntN(2)
		rooms := []string{r.rooms[rnd.IntN(len(r.rooms))]}
		v, err := r.dialViewer(fmt.Sprintf("late%d@gw%d", n, gw+1), gw, rooms)
		if err != nil {
			// A join cut off by a fault: the viewer gave up, so it is owed
			// nothing more.
			r.rec.note(rooms[0], "late viewer %d could not join: %v", n, err)
			if v != nil {
				v.leave()
			}
			continue
		}
		r.vmu.Lock()
		r.churned = append(r.churned, v)
		r.viewers = append(r.viewers, v)
		r.vmu.Unlock()
	}
}

// hostileLoop connects anonymous raw WebSocket clients that misbehave,
// until stopBg: bogus resume values, resume 0, many rooms, garbage frames.
func (r *faultRun) hostileLoop() {
	rnd := rand.New(rand.NewPCG(r.cfg.seed, 2000))
	for n := 0; ; n++ {
		select {
		case <-r.stopBg:
			return
		case <-time.After(500*time.Millisecond + time.Duration(rnd.Int64N(int64(2*time.Second)))):
		}
		gw := rnd.IntN(2)
		room := r.rooms[rnd.IntN(len(r.rooms))]
		var frames []string
		var what string
		switch k := rnd.IntN(6); {
		case k < 3:
			resume := uint64(1_000_000) + rnd.Uint64N(1<<40)
			frames = []string{fmt.Sprintf(`{"op":"join","room":%q,"resume":%d}`, room, resume)}
			what = fmt.Sprintf("joins %s with resume %d", room, resume)
		case k == 3:
			frames = []string{fmt.Sprintf(`{"op":"join","room":%q,"resume":0}`, room)}
			what = fmt.Sprintf("joins %s with resume 0", room)
		case k == 4:
			for i := range 100 {
				frames = append(frames, fmt.Sprintf(`{"op":"join","room":"%s-x%d-%d"}`, r.e.run, n, i))
			}
			frames = append(frames, fmt.Sprintf(`{"op":"join","room":%q}`, room))
			what = "joins 100 fresh rooms and " + room
		default:
			frames = []string{`{"op":"join","room":` + strconv.Quote(room) + `,"resume":-5}`, `{"op":"join","room":"` + room + `","resume":"x"}`,
				`not json`, `{"op":"nope"}`, `{"op":"send","room":"` + room + `","id":"h","text":"hi"}`,
				`{"op":"join","room":"` + strings.Repeat("r", 200) + `"}`, `{"op":"join","room":` + strconv.Quote(room) + `,"resume":18446744073709551615}`}
			what = "sends garbage frames about " + room
		}
		c, err := r.rawConn(gw)
		if err != nil {
			continue // the gateway is restarting
		}
		r.rec.note(room, "hostile viewer %d on gateway-%d %s", n, gw+1, what)
		for _, f := range frames {
			if _, err := c.Write(ws.AppendClientFrame(nil, ws.OpText, []byte(f), ws.NewMask())); err != nil {
				break
			}
		}
		hold := time.Duration(rnd.Int64N(int64(60 * time.Second)))
		time.AfterFunc(hold, func() { c.Close() })
	}
}

// rawConn opens an anonymous WebSocket connection to a gateway whose
// frames are read and thrown away.
func (r *faultRun) rawConn(gw int) (net.Conn, error) {
	addr := r.e.ws[fmt.Sprintf("gateway-%d", gw+1)]
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(3 * time.Second))
	key := ws.NewKey()
	if _, err := c.Write(ws.AppendClientHandshake(nil, addr, "/ws", key, "")); err != nil {
		c.Close()
		return nil, err
	}
	br := bufio.NewReader(c)
	var buf []byte
	for !strings.HasSuffix(string(buf), "\r\n\r\n") {
		b, err := br.ReadByte()
		if err != nil {
			c.Close()
			return nil, err
		}
		buf = append(buf, b)
	}
	if _, _, err := ws.ParseHandshakeResponse(buf, key); err != nil {
		c.Close()
		return nil, err
	}
	_ = c.SetDeadline(time.Time{})
	go func() { _, _ = io.Copy(io.Discard, br) }()
	r.hmu.Lock()
	r.hostile = append(r.hostile, c)
	r.hmu.Unlock()
	return c, nil
}

// fsFault is one kind of fault the schedule draws.
type fsFault struct {
	name   string
	weight int
	ok     func() bool
	run    func()
}

func (r *faultRun) running() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, n := range r.logic {
		if !r.stopped[n] {
			out = append(out, n)
		}
	}
	return out
}

func (r *faultRun) count(kind string) {
	r.mu.Lock()
	r.faults[kind]++
	r.mu.Unlock()
}

func (r *faultRun) pick(names []string) string { return names[r.rnd.IntN(len(names))] }

func (r *faultRun) between(lo, hi time.Duration) time.Duration {
	return lo + time.Duration(r.rnd.Int64N(int64(hi-lo)+1))
}

func (r *faultRun) removeLogic(name string) {
	r.mu.Lock()
	r.logic = slices.DeleteFunc(r.logic, func(n string) bool { return n == name })
	r.mu.Unlock()
}

func (r *faultRun) logicJoin() {
	r.mu.Lock()
	name := fmt.Sprintf("logic-%d", r.nextLogic)
	r.nextLogic++
	r.mu.Unlock()
	r.rec.note("", "start %s (joins the group)", name)
	r.e.prepare(name, "logic")
	r.launch(name)
	r.mu.Lock()
	r.logic = append(r.logic, name)
	r.mu.Unlock()
}

func (r *faultRun) faultList() []fsFault {
	e := r.e
	twoRunning := func() bool { return len(r.running()) >= 2 }
	return []fsFault{
		{"logic join", 2, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return len(r.logic) < 3 }, r.logicJoin},
		{"logic leave (SIGTERM)", 2, twoRunning, func() {
			name := r.pick(r.running())
			r.rec.note("", "SIGTERM %s (leaves the group)", name)
			e.term(name)
			r.removeLogic(name)
		}},
		{"logic SIGKILL", 2, twoRunning, func() {
			name := r.pick(r.running())
			r.rec.note("", "SIGKILL %s", name)
			e.kill(name)
			r.removeLogic(name)
		}},
		{"logic SIGSTOP past the session timeout", 3, twoRunning, func() {
			name := r.pick(r.running())
			p := e.procs[name]
			d := r.between(fsSessionTimeout+time.Second, fsSessionTimeout+4*time.Second)
			r.rec.note("", "SIGSTOP %s for %v", name, d.Round(time.Millisecond))
			r.mu.Lock()
			r.stopped[name] = true
			r.mu.Unlock()
			_ = p.Signal(syscall.SIGSTOP)
			r.async.Add(1)
			go func() {
				defer r.async.Done()
				time.Sleep(d)
				_ = p.Signal(syscall.SIGCONT)
				r.rec.note("", "SIGCONT %s", name)
				r.mu.Lock()
				delete(r.stopped, name)
				r.mu.Unlock()
			}()
		}},
		{"dispatch restart", 1, nil, func() { r.restart("dispatch") }},
		{"gateway restart", 2, nil, func() { r.restart(r.pick([]string{"gateway-1", "gateway-2"})) }},
		{"broker restart", 1, nil, func() {
			r.rec.note("", "broker: SIGTERM, restart on its data dir")
			e.broker.Stop(r.t, 20*time.Second)
			time.Sleep(r.between(0, 2*time.Second))
			e.startBroker()
			r.rec.note("", "broker back")
		}},
		{"Redis outage", 1, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return !r.outage["redis"] }, func() {
			r.cutFor(e.redisProxy, "redis", r.between(2*time.Second, 8*time.Second))
		}},
		{"ClickHouse outage", 1, func() bool { r.mu.Lock(); defer r.mu.Unlock(); return !r.outage["clickhouse"] }, func() {
			r.cutFor(e.chProxy, "clickhouse", r.between(3*time.Second, 12*time.Second))
		}},
		{"sender reconnect", 2, nil, func() {
			s := r.senders[r.rnd.IntN(len(r.senders))]
			r.rec.note("", "drop the connection of sender %s", s.name)
			s.c.Drop()
		}},
	}
}

// restart stops a process (SIGKILL or SIGTERM) and starts it again.
func (r *faultRun) restart(name string) {
	how := "SIGTERM"
	if r.rnd.IntN(2) == 0 {
		how = "SIGKILL"
	}
	r.rec.note("", "%s %s, restart", how, name)
	if how == "SIGKILL" {
		r.e.kill(name)
	} else {
		r.e.term(name)
	}
	time.Sleep(r.between(0, 2*time.Second))
	r.launch(name)
	r.rec.note("", "%s back", name)
}

// launch starts a prepared process and waits until it is ready; one that
// exits first (it cannot reach ClickHouse or Redis during an outage) is
// started again a second later, as a supervisor would, for up to 2
// minutes.
func (r *faultRun) launch(name string) {
	e, t := r.e, r.t
	deadline := time.Now().Add(2 * time.Minute)
	for {
		p := testenv.Spawn(t, e.bin, name, e.http[name], mpEnv, e.args[name]...)
		err := waitReady(p, e.http[name], 30*time.Second)
		if err == nil {
			e.procs[name] = p
			return
		}
		lines := strings.Split(strings.TrimSpace(p.Log()), "\n")
		r.rec.note("", "%s did not start (%v: %s); start it again", name, err, lines[len(lines)-1])
		if time.Now().After(deadline) {
			t.Fatalf("%s did not start within 2 minutes: %v\n%s", name, err, p.Log())
		}
		time.Sleep(time.Second)
	}
}

// waitReady polls a process's /readyz until it answers 200; an exit or
// d passing is an error (the process is then killed).
func waitReady(p *testenv.Process, httpAddr string, d time.Duration) error {
	deadline := time.Now().Add(d)
	for {
		if res, err := http.Get("http://" + httpAddr + "/readyz"); err == nil {
			res.Body.Close()
			if res.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-p.Done():
			return fmt.Errorf("exited: %v", p.Err())
		default:
		}
		if time.Now().After(deadline) {
			_ = p.Signal(syscall.SIGKILL)
			<-p.Done()
			return fmt.Errorf("not ready within %v", d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cutFor cuts a proxy for d, in the background.
func (r *faultRun) cutFor(p *cutProxy, what string, d time.Duration) {
	hang := r.rnd.IntN(2) == 0
	mode := "refused"
	if hang {
		mode = "hanging"
	}
	r.mu.Lock()
	r.outage[what] = true
	r.mu.Unlock()
	r.rec.note("", "%s down (%s) for %v", what, mode, d.Round(time.Millisecond))
	p.Cut(hang)
	r.async.Add(1)
	go func() {
		defer r.async.Done()
		time.Sleep(d)
		p.Restore()
		r.rec.note("", "%s back", what)
		r.mu.Lock()
		r.outage[what] = false
		r.mu.Unlock()
	}()
}

// schedule runs faults drawn from the seed for cfg.duration.
func (r *faultRun) schedule() {
	r.bg.Add(2)
	go func() { defer r.bg.Done(); r.churn() }()
	go func() { defer r.bg.Done(); r.hostileLoop() }()
	faults := r.faultList()
	end := time.Now().Add(r.cfg.duration)
	for time.Now().Before(end) {
		time.Sleep(r.between(r.cfg.faultGapMin, r.cfg.faultGapMax))
		var can []fsFault
		total := 0
		for _, f := range faults {
			if f.ok == nil || f.ok() {
				can = append(can, f)
				total += f.weight
			}
		}
		x := r.rnd.IntN(total)
		for _, f := range can {
			if x < f.weight {
				r.count(f.name)
				f.run()
				break
			}
			x -= f.weight
		}
	}
}

// finish ends the faults, lets the deployment settle, stops the traffic,
// waits for viewers and history to catch up, and checks the history.
func (r *faultRun) finish() {
	t := r.t
	r.async.Wait() // every stopped worker continued, every outage over
	for len(r.running()) < 2 {
		r.logicJoin()
	}
	r.rec.note("", "faults over")
	close(r.stopBg)
	r.bg.Wait()
	r.hmu.Lock()
	for _, c := range r.hostile {
		c.Close()
	}
	r.hmu.Unlock()
	close(r.stopSend)
	r.sendWG.Wait()
	r.rec.note("", "senders stopped")

	// The quiet window: every viewer that stayed catches up.
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && !r.caughtUp() {
		time.Sleep(200 * time.Millisecond)
	}
	rows := r.readHistory()
	r.rec.mu.Lock()
	h := r.rec.h
	h.Rows, h.HistoryRooms = rows, r.rooms
	r.rec.mu.Unlock()

	rep := checker.Check(h)
	r.mu.Lock()
	var fl []string
	total := 0
	for k, n := range r.faults {
		fl = append(fl, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	r.mu.Unlock()
	slices.Sort(fl)
	t.Logf("seed %d: %d faults injected (%s)", r.cfg.seed, total, strings.Join(fl, ", "))
	t.Logf("seed %d: %s", r.cfg.seed, rep.Summary())
	if rep.OK() {
		return
	}
	var all strings.Builder
	fmt.Fprintf(&all, "seed %d, %v: %s\n\n", r.cfg.seed, r.cfg.duration, rep.Summary())
	shown := map[string]int{}
	var stories []string
	for _, v := range rep.Violations {
		all.WriteString(v.String() + "\n\n")
		if shown[v.Kind] < 2 {
			shown[v.Kind]++
			stories = append(stories, v.String())
		}
	}
	all.WriteString("every note of the runner:\n")
	for _, n := range h.Notes {
		room := ""
		if n.Room != "" {
			room = " [" + n.Room + "]"
		}
		fmt.Fprintf(&all, "t+%.3fs%s %s\n", n.At.Sub(h.Start).Seconds(), room, n.Text)
	}
	dir := os.Getenv("DANMAKU_TEST_ARTIFACTS")
	if dir == "" {
		dir = os.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("danmaku-fault-schedule-%s-seed-%d.txt", r.e.run, r.cfg.seed))
	if err := os.WriteFile(path, []byte(all.String()), 0o644); err != nil {
		path = err.Error()
	}
	t.Errorf("seed %d: %d violations (repeat with DANMAKU_SEED=%d DANMAKU_DURATION=%v; all in %s); up to two per kind:\n%s",
		r.cfg.seed, len(rep.Violations), r.cfg.seed, r.cfg.duration, path, strings.Join(stories, "\n"))
}

// caughtUp reports whether every honest viewer still in its rooms has
// reached each room's last acked seq.
func (r *faultRun) caughtUp() bool {
	last := r.rec.lastAcked()
	r.vmu.Lock()
	defer r.vmu.Unlock()
	for _, v := range r.viewers {
		if v == nil {
			continue
		}
		v.mu.Lock()
		for _, room := range v.rooms {
			if !v.left && v.last[room] < last[room] {
				v.mu.Unlock()
				return false
			}
		}
		v.mu.Unlock()
	}
	return true
}

// readHistory reads every room's history over the HTTP API, waiting up to
// 30 s for the history writer to store the last acked seq of each room.
func (r *faultRun) readHistory() []checker.Row {
	last := r.rec.lastAcked()
	deadline := time.Now().Add(30 * time.Second)
	var rows []checker.Row
	for _, room := range r.rooms {
		for {
			got, err := r.historyOf(room)
			top := uint64(0)
			for _, g := range got {
				top = max(top, g.Seq)
			}
			if err == nil && (top >= last[room] || time.Now().After(deadline)) {
				rows = append(rows, got...)
				break
			}
			if time.Now().After(deadline) {
				r.t.Errorf("history of %s: %v", room, err)
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	return rows
}

func (r *faultRun) historyOf(room string) ([]checker.Row, error) {
	var rows []checker.Row
	after := uint64(0)
	for {
		url := fmt.Sprintf("http://%s/api/rooms/%s/history?after_seq=%d&limit=1000", r.e.http["gateway-1"], room, after)
		res, err := http.Get(url)
		if err != nil {
			return nil, err
		}
		var page struct {
			Msgs []protocol.Message `json:"msgs"`
			Next uint64             `json:"next"`
		}
		err = json.NewDecoder(res.Body).Decode(&page)
		res.Body.Close()
		if res.StatusCode != http.StatusOK || err != nil {
			return nil, fmt.Errorf("GET %s: %s %v", url, res.Status, err)
		}
		for _, m := range page.Msgs {
			rows = append(rows, checker.Row{Room: room, Seq: m.Seq, Msg: checker.Msg{UID: m.UID, ID: m.ID, Text: m.Text}})
		}
		if page.Next == 0 {
			return rows, nil
		}
		after = page.Next
	}
}
