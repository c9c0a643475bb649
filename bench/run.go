package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/bus/kafkabus"
	"github.com/danmaku-live/danmaku/pkg/route"
)

// workerHandle is the coordinator's side of one worker.
type workerHandle struct {
	id   int
	send func(Command) error
	done chan struct{}

	mu    sync.Mutex
	last  Report
	final *Report
	lat   Hist // deltas not yet taken by the coordinator
	total Hist
	conn  Hist
	ack   Hist
	err   error
	cmd   *exec.Cmd
	stdin io.WriteCloser
}

func (h *workerHandle) take(r Report) {
	h.mu.Lock()
	defer h.mu.Unlock()
	lat := HistFrom(r.Lat)
	h.lat.Merge(lat)
	h.total.Merge(lat)
	h.conn.Merge(HistFrom(r.Conn))
	h.ack.Merge(HistFrom(r.Ack))
	h.last = r
	if r.Type == "final" {
		rr := r
		h.final = &rr
	}
}

// startWorker starts worker spec in a child process (or a goroutine).
func startWorker(ctx context.Context, o *Options, spec WorkerSpec, logPath string) (*workerHandle, error) {
	h := &workerHandle{id: spec.ID, done: make(chan struct{})}
	if o.InProcess {
		cmds := make(chan Command, 4)
		h.send = func(c Command) error {
			select {
			case cmds <- c:
				return nil
			case <-h.done:
				return fmt.Errorf("bench: worker %d gone", spec.ID)
			}
		}
		go func() {
			defer close(h.done)
			err := RunWorker(ctx, spec, cmds, h.take)
			h.mu.Lock()
			h.err = err
			h.mu.Unlock()
		}()
		return h, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe, "bench", "worker")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd.Stderr = logf
	stdin, err := cmd.StdinPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	logf.Close()
	h.cmd, h.stdin = cmd, stdin
	var wmu sync.Mutex
	h.send = func(c Command) error {
		b, _ := json.Marshal(c)
		wmu.Lock()
		defer wmu.Unlock()
		_, err := stdin.Write(append(b, '\n'))
		return err
	}
	b, _ := json.Marshal(spec)
	if _, err := stdin.Write(append(b, '\n')); err != nil {
		return nil, err
	}
	go func() {
		defer close(h.done)
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			var r Report
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				h.take(r)
			}
		}
		err := cmd.Wait()
		h.mu.Lock()
		if h.final == nil && err != nil {
			h.err = fmt.Errorf("bench: worker %d: %w (log: %s)", spec.ID, err, logPath)
		}
		h.mu.Unlock()
	}()
	return h, nil
}

// stop ends a worker process by pid if it did not finish on its own.
func (h *workerHandle) stop(timeout time.Duration) {
	if h.stdin != nil {
		_ = h.stdin.Close()
	}
	select {
	case <-h.done:
		return
	case <-time.After(timeout):
	}
	if h.cmd != nil && h.cmd.Process != nil {
		_ = h.cmd.Process.Kill()
		<-h.done
	}
}

// totals sums the latest reports of the workers.
type totals struct {
	Report
	rss int64
	cpu float64
}

func sumReports(ws []*workerHandle) totals {
	var t totals
	t.Rejects, t.FailedBy = map[string]int64{}, map[string]int64{}
	for _, h := range ws {
		h.mu.Lock()
		r := h.last
		if h.final != nil {
			r = *h.final
		}
		h.mu.Unlock()
		t.Open += r.Open
		t.Established += r.Established
		t.Failed += r.Failed
		t.Reconnects += r.Reconnects
		t.Resumed += r.Resumed
		t.Incomplete += r.Incomplete
		t.Deliveries += r.Deliveries
		t.Dups += r.Dups
		t.Marked += r.Marked
		t.Gaps += r.Gaps
		for k, v := range r.Rooms {
			if t.Rooms == nil {
				t.Rooms = map[string][2]int64{}
			}
			w := t.Rooms[k]
			t.Rooms[k] = [2]int64{w[0] + v[0], w[1] + v[1]}
		}
		t.Lost += r.Lost
		t.Frames += r.Frames
		t.Bytes += r.Bytes
		t.Sent += r.Sent
		t.Acks += r.Acks
		t.LastJoin = max(t.LastJoin, r.LastJoin)
		t.LastResume = max(t.LastResume, r.LastResume)
		for k, v := range r.Rejects {
			t.Rejects[k] += v
		}
		for k, v := range r.FailedBy {
			t.FailedBy[k] += v
		}
		t.rss += r.Self.RSS
		t.cpu += r.Self.CPU
	}
	return t
}

// gwSample sums the cost of the gateway processes.
func gwSample(pids []int) ProcSample {
	var s ProcSample
	for _, p := range pids {
		ps, err := ReadProc(p)
		if err != nil {
			s.Missing++
		} else {
			s.CPU += ps.CPU
			s.RSS += ps.RSS
		}
	}
	return s
}

// pipelineCPU reads the CPU seconds of the logic and dispatch processes
// the harness started, by role (none with one danmaku all or --ws).
func (r *run) pipelineCPU() map[string]float64 {
	if r.cl == nil {
		return nil
	}
	out := map[string]float64{}
	for _, s := range r.pipeline() {
		if ps, err := ReadProc(s.pid()); err == nil {
			out[s.role] = ps.CPU
		}
	}
	return out
}

// pipeline is the logic and dispatch processes the harness started (none
// without --gateways K).
func (r *run) pipeline() []*server {
	if r.cl == nil {
		return nil
	}
	var out []*server
	for _, s := range r.cl.servers {
		if s.role == "logic" || s.role == "dispatch" {
			out = append(out, s)
		}
	}
	return out
}

// runnableKinds are the processes --sample-runnable counts, by kind:
// the gateways, the worker processes and the pipeline the harness started.
func (r *run) runnableKinds() map[string][]int {
	kinds := map[string][]int{"gateway": r.gwPIDs}
	for _, h := range r.workers {
		if h.cmd != nil && h.cmd.Process != nil {
			kinds["harness"] = append(kinds["harness"], h.cmd.Process.Pid)
		}
	}
	if r.cl != nil {
		kinds["pipeline"] = nil
		for _, s := range r.pipeline() {
			kinds["pipeline"] = append(kinds["pipeline"], s.pid())
		}
	}
	return kinds
}

// isLoopback reports whether every address's host is a loopback IP.
func isLoopback(addrs []string) bool {
	for _, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		ip := net.ParseIP(host)
		if err != nil || ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

// Run executes one scenario and returns its result; progress goes to
// progress (nil: none).
func Run(ctx context.Context, o *Options, progress io.Writer) (*Result, error) {
	if err := os.MkdirAll(o.Out, 0o755); err != nil {
		return nil, err
	}
	r := &run{ctx: ctx, o: o, res: &Result{Name: o.Name, Scenario: o.Scenario, Options: *o, Started: time.Now().UTC().Format(time.RFC3339),
		Machine: machine(), Viewers: o.Viewers, Senders: o.Senders}}
	r.res.Load[0] = loadAvg()
	r.tcpBefore = tcpCounters()
	t0 := time.Now()
	if err := r.startServers(); err != nil {
		return nil, err
	}
	if r.cl != nil {
		defer r.cl.stop()
	}
	if o.Affinity {
		n, err := dispatchPartitions(ctx, o)
		if err != nil {
			return nil, err
		}
		r.dispatchParts = n
	}
	specs, err := r.plan()
	if err != nil {
		return nil, err
	}
	r.before = gwSample(r.gwPIDs)
	r.res.Gateway.PIDs = r.gwPIDs
	r.res.Gateway.RSSBefore = r.before.RSS

	wctx, cancelWorkers := context.WithCancel(ctx)
	defer cancelWorkers()
	defer func() {
		for _, h := range r.workers {
			h.stop(5 * time.Second)
		}
	}()
	for _, s := range specs {
		h, err := startWorker(wctx, o, s, filepath.Join(o.Out, fmt.Sprintf("%s-worker-%d.log", o.Name, s.ID)))
		if err != nil {
			return nil, err
		}
		r.workers = append(r.workers, h)
	}
	r.res.Harness.Workers = len(r.workers)

	// The monitor samples every second into the timeline and the progress line.
	r.mon = newMonitor(o, r.res, r.workers, r.gwPIDs, t0, progress)
	mctx, stopMon := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() { defer close(monDone); r.mon.run(mctx) }()
	defer func() { stopMon(); <-monDone }()

	r.connect()
	r.traffic()
	deliverEnd, gwEnd := r.drain()
	stopMon()
	<-monDone
	r.summarize(deliverEnd, gwEnd)
	return r.res, nil
}

// run is the state of one Run, phase to phase.
type run struct {
	ctx context.Context
	o   *Options
	res *Result

	// Servers: started here (cl) or given by the options.
	cl       *cluster
	wsAddrs  []string
	httpAddr string
	gwPIDs   []int
	service  string // a service token, to publish; "" without the secret
	mod      string // a moderator token, to install keywords
	// dispatchParts is the dispatch topic's partition count (--affinity).
	dispatchParts int

	rooms                  []string
	weights                []float64 // each room's share of viewers, senders and messages
	viewersPer, sendersPer []int
	workers                []*workerHandle
	mon                    *monitor

	before, settled ProcSample // the gateways before connecting, and connected after the warmup
	trafficStart    time.Time
	startDeliv      int64              // deliveries when traffic started
	cpuStart        float64            // gateway CPU when traffic started
	pipeStart       map[string]float64 // logic and dispatch CPU when traffic started
	runnable        *runnableSampler   // --sample-runnable, over the traffic phase
	pub             *publisher
	storm           *StormResult
	dropped         bool // the storm's drop (or restart) happened, at dropTime
	dropTime        time.Time
	resumedBase     int64            // resumes before the drop
	restartCPU      *float64         // the old gateways' traffic CPU, when they were restarted
	tcpBefore       map[string]int64 // the host's TCP counters at the start
}

// startServers starts the cluster the options describe, unless they name
// running gateways (--ws), and makes the tokens the run needs.
func (r *run) startServers() error {
	o := r.o
	r.wsAddrs, r.httpAddr, r.gwPIDs = strings.Split(o.WS, ","), o.HTTP, o.GatewayPIDs
	if o.WS == "" {
		if o.Secret == "" {
			o.Secret = fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), os.Getpid())
		}
		cl, err := startCluster(r.ctx, o, o.Out)
		if err != nil {
			return err
		}
		r.cl = cl
		r.wsAddrs, r.httpAddr, r.gwPIDs = cl.wsAddrs, cl.httpAddr, cl.gatewayPIDs()
		r.res.Gateway.IncludesPipeline = o.Gateways == 0
		if o.Gateways == 0 {
			r.res.Notes = append(r.res.Notes, "one danmaku all process: gateway CPU and RSS include logic, dispatch and the HTTP API")
		}
	}
	if o.Secret == "" && (o.Rate > 0 || o.Senders > 0 || o.Keywords > 0) {
		return fmt.Errorf("bench: publishing and sending need the deployment's JWT secret (--jwt-secret or DANMAKU_JWT_SECRET)")
	}
	if o.Secret != "" {
		s, err := auth.NewSigner(o.Secret)
		if err != nil {
			return err
		}
		r.service, _ = s.Sign("bench-service", "bench", auth.RoleService, nil, 24*time.Hour)
		r.mod, _ = s.Sign("bench-mod", "bench-mod", auth.RoleMod, []string{"*"}, 24*time.Hour)
	}
	return nil
}

// plan names the rooms, installs the keyword list, and deals the viewers
// and senders of each room over the workers evenly.
func (r *run) plan() ([]WorkerSpec, error) {
	o := r.o
	r.rooms = make([]string, o.Rooms)
	for i := range r.rooms {
		r.rooms[i] = roomName(i)
	}
	r.weights = zipfWeights(o.Rooms, o.Zipf)
	if o.Rooms == 1 {
		r.weights = []float64{1}
	}
	badWord := ""
	if o.Keywords > 0 && r.httpAddr != "" {
		var err error
		if badWord, err = installKeywords(r.ctx, r.httpAddr, r.mod, r.rooms, o.Keywords); err != nil {
			return nil, err
		}
	}
	r.viewersPer = apportion(o.Viewers, r.weights)
	r.sendersPer = apportion(o.Senders, r.weights)
	specs := make([]WorkerSpec, o.Workers)
	var srcIPs []string
	if isLoopback(r.wsAddrs) {
		for i := range o.SourceIPs {
			srcIPs = append(srcIPs, sourceIP(i))
		}
	}
	for w := range specs {
		specs[w] = WorkerSpec{ID: w, Gateways: r.wsAddrs, SourceIPs: srcIPs, SendRate: o.SendRate, SenderRole: o.SenderRole,
			BadRatio: o.BadRatio, BadWord: badWord, Secret: o.Secret, ConnectRate: o.ConnectRate, Concurrency: o.Concurrency,
			Reconnect: true, LatencyEvery: o.LatencyEvery, ReconnectJitter: o.Jitter, ViewerImpl: o.ViewerImpl, ReadPause: o.ReadPause, HandshakeTimeout: o.HandshakeTimeout,
			Deflate: o.Deflate, Compact: o.Compact, ByRoom: o.Affinity, Partitions: r.dispatchParts}
	}
	if o.AffinityHot > 0 {
		hot := map[string]int{}
		for i, room := range r.rooms {
			if n := route.HotSlots(r.viewersPer[i]+r.sendersPer[i], o.AffinityHot); n > 0 {
				hot[room] = n
			}
		}
		for w := range specs {
			specs[w].HotSlots = hot
		}
	}
	spread := func(per []int, add func(*WorkerSpec, RoomCount)) {
		for i, counts := range deal(per, len(specs)) {
			for w, c := range counts {
				if c > 0 {
					add(&specs[w], RoomCount{Room: r.rooms[i], Count: c})
				}
			}
		}
	}
	spread(r.viewersPer, func(s *WorkerSpec, rc RoomCount) { s.Viewers = append(s.Viewers, rc) })
	spread(r.sendersPer, func(s *WorkerSpec, rc RoomCount) { s.Senders = append(s.Senders, rc) })
	return specs, nil
}

// deal splits each room's per[i] connections over workers as evenly as
// possible: every worker gets per[i]/workers, and the remainders go round
// the workers where the previous room's stopped, so a thousand rooms of
// one sender each land on all workers rather than all on worker 0.
func deal(per []int, workers int) [][]int {
	out := make([][]int, len(per))
	next := 0
	for i, n := range per {
		out[i] = make([]int, workers)
		for k := range workers {
			out[i][(next+k)%workers] = n / workers
			if k < n%workers {
				out[i][(next+k)%workers]++
			}
		}
		next = (next + n%workers) % workers
	}
	return out
}

// connect is phase 1: wait until every connection has joined (or the
// connect timeout), measure the connect rate and the gateways' handshake
// CPU, then the warmup and the memory per connection.
func (r *run) connect() {
	o, res := r.o, r.res
	r.mon.setPhase("connect")
	want := int64(o.Viewers + o.Senders)
	connStart := time.Now()
	deadline := connStart.Add(o.ConnectTimeout)
	for {
		t := sumReports(r.workers)
		if t.Established >= want {
			break
		}
		if time.Now().After(deadline) || r.ctx.Err() != nil || allDone(r.workers) {
			res.Notes = append(res.Notes, fmt.Sprintf("connect phase ended with %d of %d connected (%d failures)", t.Established, want, t.Failed))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	connSecs := time.Since(connStart).Seconds()
	t := sumReports(r.workers)
	if t.LastJoin > 0 && t.Established >= want {
		connSecs = time.Unix(0, t.LastJoin).Sub(connStart).Seconds()
	}
	res.Connected, res.Failed, res.FailedBy, res.ConnectSecs = t.Established, t.Failed, t.FailedBy, connSecs
	if connSecs > 0 {
		res.ConnectRate = float64(t.Established) / connSecs
	}
	afterConnect := gwSample(r.gwPIDs)
	res.Gateway.CPUConnect = afterConnect.CPU - r.before.CPU
	if res.Gateway.CPUConnect > 0 {
		res.Gateway.HandshakesPerCPUSecond = float64(t.Established) / res.Gateway.CPUConnect
	}
	r.mon.setPhase("warmup")
	sleepCtx(r.ctx, o.Warmup)
	r.settled = gwSample(r.gwPIDs)
	res.Gateway.RSSConnected = r.settled.RSS
	if t.Established > 0 && len(r.gwPIDs) > 0 {
		res.Gateway.BytesPerConn = float64(r.settled.RSS-r.before.RSS) / float64(t.Established)
	}
}

// traffic is phase 2: publish at the rate, let the senders send, drop
// every connection (or restart the gateways) at DropAt in a storm, and
// print the soak lines, for the duration.
func (r *run) traffic() {
	o := r.o
	r.mon.setPhase("traffic")
	r.trafficStart = time.Now()
	r.startDeliv = sumReports(r.workers).Deliveries
	r.cpuStart = gwSample(r.gwPIDs).CPU
	r.pipeStart = r.pipelineCPU()
	if o.SampleRunnable {
		r.runnable = startRunnable(r.runnableKinds(), runnableEvery)
	}
	pctx, stopPub := context.WithCancel(r.ctx)
	pubDone := make(chan struct{})
	if o.Rate > 0 && r.service != "" {
		r.pub = newPublisher(r.httpAddr, r.service, r.rooms, r.weights, o.Rate)
		r.pub.corpus = o.Corpus
		if o.AsViewers {
			r.pub.role = "viewer"
		}
		r.mon.pub = r.pub
		go func() { defer close(pubDone); r.pub.run(pctx) }()
	} else {
		close(pubDone)
	}
	for _, h := range r.workers {
		_ = h.send(Command{Cmd: "send"})
	}
	if o.Scenario == "storm" {
		r.storm = &StormResult{AllResumedAfter: -1, Restart: o.Restart}
		r.res.Storm = r.storm
	}
	end := r.trafficStart.Add(o.Duration)
	nextSoak := r.trafficStart.Add(o.ReportEvery)
	for time.Now().Before(end) && r.ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		now := time.Now()
		if r.storm != nil && !r.dropped && now.Sub(r.trafficStart) >= o.DropAt {
			r.drop()
		}
		if r.storm != nil && r.dropped && r.storm.AllResumedAfter < 0 {
			if t := sumReports(r.workers); t.Resumed-r.resumedBase >= r.storm.Dropped {
				r.storm.AllResumedAfter = time.Since(r.dropTime).Seconds()
				r.mon.setPhase("traffic")
			}
		}
		if o.Scenario == "soak" && now.After(nextSoak) {
			nextSoak = nextSoak.Add(o.ReportEvery)
			r.mon.soakLine()
		}
	}
	stopPub()
	<-pubDone
	for _, h := range r.workers {
		_ = h.send(Command{Cmd: "quiet"}) // the senders stop with the publisher
	}
	if r.cl != nil && o.Restart {
		r.gwPIDs = r.cl.gatewayPIDs()
	}
	r.res.TrafficSecs = time.Since(r.trafficStart).Seconds()
}

// drop starts the storm: every connection dropped at once, or the
// gateways restarted (--restart).
func (r *run) drop() {
	r.dropped = true
	t := sumReports(r.workers)
	r.storm.Dropped, r.resumedBase = t.Open, t.Resumed
	r.dropTime = time.Now()
	r.mon.setPhase("storm")
	if r.o.Restart && r.cl != nil {
		// The restarted processes count CPU from zero: keep what the
		// old ones used since the start of traffic.
		cpuBefore := gwSample(r.gwPIDs).CPU - r.cpuStart
		r.restartCPU = &cpuBefore
		go func() {
			if err := r.cl.restartGateways(r.ctx); err != nil {
				r.mon.note("gateway restart: " + err.Error())
			}
			r.mon.setPIDs(r.cl.gatewayPIDs())
		}()
		return
	}
	for _, h := range r.workers {
		_ = h.send(Command{Cmd: "drop"})
	}
}

// drain is phase 3: publish each room's final marker, then let the
// viewers catch up with it and the workers finish. It returns when
// delivery ended and the gateways' last sample.
func (r *run) drain() (deliverEnd time.Time, gwEnd ProcSample) {
	o, res := r.o, r.res
	r.mon.setPhase("drain")
	if r.runnable != nil {
		res.Runnable = r.runnable.finish()
	}
	final := map[string]uint64{}
	if r.service != "" && r.httpAddr != "" {
		fp := newPublisher(r.httpAddr, r.service, r.rooms, r.weights, 0)
		for i, room := range r.rooms {
			if r.viewersPer[i] > 0 || (o.Senders > 0 && r.sendersPer[i] > 0) {
				fp.post(room)
			}
		}
		final = fp.finals()
		if n := fp.errs.Load(); n > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("the final marker failed for %d rooms: their loss is not counted", n))
		}
	}
	for _, h := range r.workers {
		_ = h.send(Command{Cmd: "finish", Final: final, Grace: o.Grace})
	}
	for _, h := range r.workers {
		select {
		case <-h.done:
		case <-time.After(o.Grace + 60*time.Second):
			res.Notes = append(res.Notes, fmt.Sprintf("worker %d did not finish", h.id))
		}
	}
	deliverEnd = time.Now()
	gwEnd = gwSample(r.gwPIDs)
	for role, cpu := range r.pipelineCPU() {
		if start, ok := r.pipeStart[role]; ok {
			if r.res.PipelineCPU == nil {
				r.res.PipelineCPU = map[string]float64{}
			}
			r.res.PipelineCPU[role] = cpu - start
		}
	}
	if gwEnd.Missing > 0 {
		res.Notes = append(res.Notes, "a gateway process was gone before the end: gateway CPU and RSS figures are incomplete")
	}
	return deliverEnd, gwEnd
}

// summarize fills the result from the workers' final reports, the
// publisher and the gateways' samples.
func (r *run) summarize(deliverEnd time.Time, gwEnd ProcSample) {
	res := r.res
	t := sumReports(r.workers)
	for _, h := range r.workers {
		h.mu.Lock()
		if h.err != nil {
			res.Notes = append(res.Notes, h.err.Error())
		}
		h.mu.Unlock()
	}
	if r.pub != nil {
		res.Published = r.pub.n.Load() - r.pub.errs.Load()
		res.PublishErrors = r.pub.errs.Load()
		r.pub.mu.Lock()
		if r.pub.rtt.Count() > 0 {
			q := quantiles(&r.pub.rtt)
			res.PublishLat = &q
		}
		r.pub.mu.Unlock()
		if b := r.pub.behind.Load(); b > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("the publisher fell behind the rate by %d messages", b))
		}
	}
	r.summarizeDelivery(t, deliverEnd)
	r.summarizeGateway(t, gwEnd)
	var lat, conn, ack Hist
	for _, h := range r.workers {
		h.mu.Lock()
		lat.Merge(&h.total)
		conn.Merge(&h.conn)
		ack.Merge(&h.ack)
		h.mu.Unlock()
	}
	res.Latency, res.LatencyHist, res.ConnectLat = quantiles(&lat), lat.Data(), quantiles(&conn)
	res.Harness.CPU, res.Harness.RSS = t.cpu, t.rss
	if r.o.InProcess {
		// Every in-process worker reports the same process.
		res.Harness.CPU, res.Harness.RSS = t.cpu/float64(len(r.workers)), t.rss/int64(len(r.workers))
	}
	if res.Connected > 0 {
		res.Harness.BytesPerConn = float64(res.Harness.RSS) / float64(res.Connected)
	}
	if t.Deliveries > 0 {
		res.Harness.CPUPerMillionDeliveries = res.Harness.CPU / float64(t.Deliveries) * 1e6
	}
	if storm := r.storm; storm != nil {
		storm.Resumed = t.Resumed - r.resumedBase
		storm.Incomplete = t.Incomplete
		if r.dropped && storm.Resumed >= storm.Dropped && t.LastResume > 0 {
			// The last resume may come after the traffic phase.
			storm.AllResumedAfter = time.Unix(0, t.LastResume).Sub(r.dropTime).Seconds()
		}
	}
	if r.o.Senders > 0 {
		res.Send = &SendResult{Sent: t.Sent, Acks: t.Acks, Rejects: t.Rejects, AckLat: quantiles(&ack)}
		if res.TrafficSecs > 0 {
			res.Send.AcksPS = float64(t.Acks) / res.TrafficSecs
		}
	}
	res.Timeline = r.mon.points()
	res.Load[1] = loadAvg()
	k := kernelTCPSince(r.tcpBefore, tcpCounters())
	k.MemLimit = tcpMemLimit()
	res.Kernel = &k
	if n := k.note(); n != "" {
		res.Notes = append(res.Notes, n)
	}
}

// summarizeDelivery fills the delivery counts and ratios of the result.
func (r *run) summarizeDelivery(t totals, deliverEnd time.Time) {
	res := r.res
	res.Deliveries, res.Dups, res.Lost, res.Gaps = t.Deliveries, t.Dups, t.Lost, t.Gaps
	res.Frames, res.Bytes = t.Frames, t.Bytes
	res.Reconnects, res.Marked = t.Reconnects, t.Marked
	if t.Deliveries+t.Marked > 0 {
		res.ShedFraction = float64(t.Marked) / float64(t.Deliveries+t.Marked)
	}
	if t.Deliveries > 0 {
		res.BytesPerDelivery = float64(t.Bytes) / float64(t.Deliveries)
	}
	for room, v := range t.Rooms {
		if v[0]+v[1] > 0 && v[1] > 0 {
			if res.ShedByRoom == nil {
				res.ShedByRoom = map[string]float64{}
			}
			res.ShedByRoom[room] = float64(v[1]) / float64(v[0]+v[1])
		}
	}
	if t.Frames > 0 {
		res.MsgsPerFrame = float64(t.Deliveries) / float64(t.Frames)
	}
	res.Expected = t.Deliveries + t.Lost
	if secs := deliverEnd.Sub(r.trafficStart).Seconds(); secs > 0 {
		res.DeliveriesPS = float64(t.Deliveries-r.startDeliv) / secs
	}
}

// summarizeGateway fills the gateways' CPU and memory figures.
func (r *run) summarizeGateway(t totals, gwEnd ProcSample) {
	res := r.res
	res.Gateway.CPUTraffic = gwEnd.CPU - r.cpuStart
	if r.restartCPU != nil {
		res.Gateway.CPUTraffic = *r.restartCPU + gwEnd.CPU
		res.Notes = append(res.Notes, "gateway CPU across the restart leaves out the old processes' drain")
	}
	if gwEnd.Missing > 0 && r.restartCPU == nil {
		res.Gateway.CPUTraffic = 0
	}
	if res.Gateway.CPUTraffic > 0 {
		res.Gateway.DeliveriesPerCPUSecond = float64(t.Deliveries-r.startDeliv) / res.Gateway.CPUTraffic
	}
	res.Gateway.RSSEnd = gwEnd.RSS
	res.Gateway.RSSPeak = max(r.mon.peakRSS, gwEnd.RSS, r.settled.RSS)
	gwHTTP := []string{r.httpAddr} // danmaku all: one process serves everything
	if r.cl != nil {
		gwHTTP = gwHTTP[:0]
		for _, g := range r.cl.gateways {
			gwHTTP = append(gwHTTP, g.http)
		}
	}
	for _, addr := range gwHTTP {
		if m := scrapeMetrics(r.ctx, addr, "danmaku_gateway_stream_writes_total", "danmaku_gateway_stream_write_bytes_total", "danmaku_gateway_write_pass_seconds_total"); m[0] >= 0 && m[1] >= 0 {
			res.Gateway.Writes += m[0]
			res.Gateway.WriteBytes += m[1]
			res.Gateway.PassSeconds += max(m[2], 0)
		}
	}
	if h := scrapeHistograms(r.ctx, gwHTTP, "danmaku_gateway_dispatch_age_seconds"); h.total() > 0 {
		res.Gateway.DispatchAgeP50Ms, res.Gateway.DispatchAgeP99Ms = 1e3*h.quantile(0.5), 1e3*h.quantile(0.99)
	}
	if h := scrapeHistograms(r.ctx, gwHTTP, "danmaku_gateway_loop_delay_seconds"); h.total() > 0 {
		res.Gateway.LoopDelayP50Ms, res.Gateway.LoopDelayP99Ms = 1e3*h.quantile(0.5), 1e3*h.quantile(0.99)
		res.Gateway.LoopDelayPastTop = h.pastTop(0.99)
	}
	if r.cl != nil {
		for _, sv := range r.cl.servers {
			if sv.role == "dispatch" {
				res.Gateway.DispatchPublished = scrapeMetrics(r.ctx, sv.http, "danmaku_dispatch_batches_total")[0]
			}
		}
		for _, g := range r.cl.gateways {
			m := scrapeMetrics(r.ctx, g.http, "danmaku_gateway_dispatch_read_bytes_total", "danmaku_gateway_dispatch_records_total")
			res.Gateway.DispatchBytes = append(res.Gateway.DispatchBytes, m[0])
			res.Gateway.DispatchRecords = append(res.Gateway.DispatchRecords, m[1])
		}
	}
}

// dispatchPartitions asks the brokers for the dispatch topic's partition
// count, by which --affinity routes viewers.
func dispatchPartitions(ctx context.Context, o *Options) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	kb, err := kafkabus.New(ctx, kafkabus.Config{Brokers: strings.Split(o.Brokers, ","), TopicPrefix: o.TopicPrefix})
	if err != nil {
		return 0, err
	}
	defer kb.Close()
	return kb.Partitions(ctx, bus.StreamDispatch)
}

// scrapeMetrics reads the values of the named metrics (no labels) from a
// process's /metrics; -1 for one it could not read.
func scrapeMetrics(ctx context.Context, httpAddr string, names ...string) []float64 {
	out := make([]float64, len(names))
	for i := range out {
		out[i] = -1
	}
	for _, line := range strings.Split(scrapeBody(ctx, httpAddr), "\n") {
		for i, n := range names {
			if v, ok := strings.CutPrefix(line, n+" "); ok {
				out[i], _ = strconv.ParseFloat(strings.TrimSpace(v), 64)
			}
		}
	}
	return out
}

// scrapeBody is a process's /metrics text; empty when it does not answer
// within 5 s.
func scrapeBody(ctx context.Context, httpAddr string) string {
	if httpAddr == "" {
		return ""
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+httpAddr+"/metrics", nil)
	if err != nil {
		return ""
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return string(body)
}

// histogram is a Prometheus histogram read from /metrics: its buckets'
// upper bounds, ascending (+Inf last), and cumulative counts.
type histogram struct {
	le     []float64
	counts []float64
}

func (h histogram) total() float64 {
	if len(h.counts) == 0 {
		return 0
	}
	return h.counts[len(h.counts)-1]
}

// quantile interpolates the q quantile linearly within its bucket (from
// 0 in the first); in the +Inf bucket it is the last finite bound.
func (h histogram) quantile(q float64) float64 {
	rank := q * h.total()
	lo, below := 0.0, 0.0
	for i, c := range h.counts {
		if c >= rank && c > below {
			if math.IsInf(h.le[i], 1) {
				return lo
			}
			return lo + (h.le[i]-lo)*(rank-below)/(c-below)
		}
		lo, below = h.le[i], c
	}
	return lo
}

// pastTop reports whether the q quantile is in the +Inf bucket: quantile
// then gives the last finite bound, and the true value is longer.
func (h histogram) pastTop(q float64) bool {
	n := len(h.counts)
	return n >= 2 && h.total() > 0 && q*h.total() > h.counts[n-2]
}

// scrapeHistograms reads the histogram name (no labels) from each
// process's /metrics and adds them up; processes that do not answer, or
// whose buckets differ from the first's, are left out.
func scrapeHistograms(ctx context.Context, httpAddrs []string, name string) histogram {
	var sum histogram
	prefix := name + `_bucket{le="`
	for _, addr := range httpAddrs {
		body := scrapeBody(ctx, addr)
		var h histogram
		for _, line := range strings.Split(body, "\n") {
			rest, ok := strings.CutPrefix(line, prefix)
			if !ok {
				continue
			}
			le, count, ok := strings.Cut(rest, `"} `)
			if !ok {
				continue
			}
			b, err1 := strconv.ParseFloat(le, 64)
			c, err2 := strconv.ParseFloat(strings.TrimSpace(count), 64)
			if err1 != nil || err2 != nil {
				continue
			}
			h.le, h.counts = append(h.le, b), append(h.counts, c)
		}
		switch {
		case len(h.le) == 0:
		case sum.le == nil:
			sum = h
		case slices.Equal(sum.le, h.le):
			for i := range h.counts {
				sum.counts[i] += h.counts[i]
			}
		}
	}
	return sum
}

func allDone(ws []*workerHandle) bool {
	for _, h := range ws {
		select {
		case <-h.done:
		default:
			return false
		}
	}
	return true
}

func sleepCtx(ctx context.Context, d time.Duration) {
	select {
	case <-ctx.Done():
	case <-time.After(d):
	}
}

// sourceIP is the i-th local address the viewers dial from on loopback:
// 127.0.0.2 to 127.0.0.251, then 127.0.1.2 and on (all of 127/8 is local).
func sourceIP(i int) string {
	return fmt.Sprintf("127.0.%d.%d", i/250, 2+i%250)
}
