package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
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
	res := &Result{Name: o.Name, Scenario: o.Scenario, Options: *o, Started: time.Now().UTC().Format(time.RFC3339),
		Machine: machine(), Viewers: o.Viewers, Senders: o.Senders}
	res.Load[0] = loadAvg()
	t0 := time.Now()

	// Servers.
	var cl *cluster
	wsAddrs := strings.Split(o.WS, ",")
	httpAddr := o.HTTP
	gwPIDs := o.GatewayPIDs
	if o.WS == "" {
		if o.Secret == "" {
			o.Secret = fmt.Sprintf("bench-%d-%d", time.Now().UnixNano(), os.Getpid())
		}
		var err error
		cl, err = startCluster(ctx, o, o.Out)
		if err != nil {
			return nil, err
		}
		defer cl.stop()
		wsAddrs, httpAddr, gwPIDs = cl.wsAddrs, cl.httpAddr, cl.gatewayPIDs()
		res.Gateway.IncludesPipeline = o.Gateways == 0
		if o.Gateways == 0 {
			res.Notes = append(res.Notes, "one danmaku all process: gateway CPU and RSS include logic, dispatch and the HTTP API")
		}
	}
	if o.Secret == "" && (o.Rate > 0 || o.Senders > 0 || o.Keywords > 0) {
		return nil, fmt.Errorf("bench: publishing and sending need the deployment's JWT secret (--jwt-secret or DANMAKU_JWT_SECRET)")
	}
	var signer *auth.Signer
	var service, mod string
	if o.Secret != "" {
		s, err := auth.NewSigner(o.Secret)
		if err != nil {
			return nil, err
		}
		signer = s
		service, _ = s.Sign("bench-service", "bench", auth.RoleService, nil, 24*time.Hour)
		mod, _ = s.Sign("bench-mod", "bench-mod", auth.RoleMod, []string{"*"}, 24*time.Hour)
	}
	_ = signer

	// Rooms and who goes where.
	rooms := make([]string, o.Rooms)
	for i := range rooms {
		rooms[i] = roomName(i)
	}
	weights := zipfWeights(o.Rooms, o.Zipf)
	if o.Rooms == 1 {
		weights = []float64{1}
	}
	badWord := ""
	if o.Keywords > 0 && httpAddr != "" {
		var err error
		badWord, err = installKeywords(ctx, httpAddr, mod, rooms, o.Keywords)
		if err != nil {
			return nil, err
		}
	}
	viewersPer := apportion(o.Viewers, weights)
	sendersPer := apportion(o.Senders, weights)
	specs := make([]WorkerSpec, o.Workers)
	var srcIPs []string
	if isLoopback(wsAddrs) {
		for i := range o.SourceIPs {
			srcIPs = append(srcIPs, sourceIP(i))
		}
	}
	for w := range specs {
		specs[w] = WorkerSpec{ID: w, Gateways: wsAddrs, SourceIPs: srcIPs, SendRate: o.SendRate, SenderRole: o.SenderRole,
			BadRatio: o.BadRatio, BadWord: badWord, Secret: o.Secret, ConnectRate: o.ConnectRate, Concurrency: o.Concurrency,
			Reconnect: true, LatencyEvery: o.LatencyEvery, ReconnectJitter: o.Jitter, ViewerImpl: o.ViewerImpl, ReadPause: o.ReadPause, HandshakeTimeout: o.HandshakeTimeout,
			Deflate: o.Deflate}
	}
	spread := func(per []int, add func(*WorkerSpec, RoomCount)) {
		// Deal each room's connections over the workers evenly.
		for i, n := range per {
			for w := range specs {
				c := n / len(specs)
				if w < n%len(specs) {
					c++
				}
				if c > 0 {
					add(&specs[w], RoomCount{Room: rooms[i], Count: c})
				}
			}
		}
	}
	spread(viewersPer, func(s *WorkerSpec, rc RoomCount) { s.Viewers = append(s.Viewers, rc) })
	spread(sendersPer, func(s *WorkerSpec, rc RoomCount) { s.Senders = append(s.Senders, rc) })

	before := gwSample(gwPIDs)
	res.Gateway.PIDs = gwPIDs
	res.Gateway.RSSBefore = before.RSS

	wctx, cancelWorkers := context.WithCancel(ctx)
	defer cancelWorkers()
	var workers []*workerHandle
	defer func() {
		for _, h := range workers {
			h.stop(5 * time.Second)
		}
	}()
	for _, s := range specs {
		h, err := startWorker(wctx, o, s, filepath.Join(o.Out, fmt.Sprintf("%s-worker-%d.log", o.Name, s.ID)))
		if err != nil {
			return nil, err
		}
		workers = append(workers, h)
	}
	res.Harness.Workers = len(workers)

	// The monitor samples every second into the timeline and the progress line.
	mon := newMonitor(o, res, workers, gwPIDs, t0, progress)
	mctx, stopMon := context.WithCancel(context.Background())
	monDone := make(chan struct{})
	go func() { defer close(monDone); mon.run(mctx) }()
	defer func() { stopMon(); <-monDone }()

	// Phase 1: connect.
	mon.setPhase("connect")
	want := int64(o.Viewers + o.Senders)
	connStart := time.Now()
	deadline := connStart.Add(o.ConnectTimeout)
	for {
		t := sumReports(workers)
		if t.Established >= want {
			break
		}
		if time.Now().After(deadline) || ctx.Err() != nil || allDone(workers) {
			res.Notes = append(res.Notes, fmt.Sprintf("connect phase ended with %d of %d connected (%d failures)", t.Established, want, t.Failed))
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	connSecs := time.Since(connStart).Seconds()
	t := sumReports(workers)
	if t.LastJoin > 0 && t.Established >= want {
		connSecs = time.Unix(0, t.LastJoin).Sub(connStart).Seconds()
	}
	res.Connected, res.Failed, res.FailedBy, res.ConnectSecs = t.Established, t.Failed, t.FailedBy, connSecs
	if connSecs > 0 {
		res.ConnectRate = float64(t.Established) / connSecs
	}
	afterConnect := gwSample(gwPIDs)
	res.Gateway.CPUConnect = afterConnect.CPU - before.CPU
	if res.Gateway.CPUConnect > 0 {
		res.Gateway.HandshakesPerCPUSecond = float64(t.Established) / res.Gateway.CPUConnect
	}
	mon.setPhase("warmup")
	sleepCtx(ctx, o.Warmup)
	settled := gwSample(gwPIDs)
	res.Gateway.RSSConnected = settled.RSS
	if t.Established > 0 && len(gwPIDs) > 0 {
		res.Gateway.BytesPerConn = float64(settled.RSS-before.RSS) / float64(t.Established)
	}

	// Phase 2: traffic.
	mon.setPhase("traffic")
	trafficStart := time.Now()
	startDeliv := sumReports(workers).Deliveries
	cpuStart := gwSample(gwPIDs).CPU
	var pub *publisher
	pctx, stopPub := context.WithCancel(ctx)
	pubDone := make(chan struct{})
	if o.Rate > 0 && service != "" {
		pub = newPublisher(httpAddr, service, rooms, weights, o.Rate)
		pub.corpus = o.Corpus
		if o.AsViewers {
			pub.role = "viewer"
		}
		mon.pub = pub
		go func() { defer close(pubDone); pub.run(pctx) }()
	} else {
		close(pubDone)
	}
	for _, h := range workers {
		_ = h.send(Command{Cmd: "send"})
	}
	var storm *StormResult
	if o.Scenario == "storm" {
		storm = &StormResult{AllResumedAfter: -1, Restart: o.Restart}
		res.Storm = storm
	}
	end := trafficStart.Add(o.Duration)
	nextSoak := trafficStart.Add(o.ReportEvery)
	dropped := false
	var dropTime time.Time
	var resumedBase int64
	var restartCPU *float64
	for time.Now().Before(end) && ctx.Err() == nil {
		time.Sleep(20 * time.Millisecond)
		now := time.Now()
		if storm != nil && !dropped && now.Sub(trafficStart) >= o.DropAt {
			dropped = true
			t := sumReports(workers)
			storm.Dropped, resumedBase = t.Open, t.Resumed
			dropTime = time.Now()
			mon.setPhase("storm")
			if o.Restart && cl != nil {
				// The restarted processes count CPU from zero: keep what the
				// old ones used since the start of traffic.
				cpuBefore := gwSample(gwPIDs).CPU - cpuStart
				restartCPU = &cpuBefore
				go func() {
					if err := cl.restartGateways(ctx); err != nil {
						mon.note("gateway restart: " + err.Error())
					}
					mon.setPIDs(cl.gatewayPIDs())
				}()
			} else {
				for _, h := range workers {
					_ = h.send(Command{Cmd: "drop"})
				}
			}
		}
		if storm != nil && dropped && storm.AllResumedAfter < 0 {
			if t := sumReports(workers); t.Resumed-resumedBase >= storm.Dropped {
				storm.AllResumedAfter = time.Since(dropTime).Seconds()
				mon.setPhase("traffic")
			}
		}
		if o.Scenario == "soak" && now.After(nextSoak) {
			nextSoak = nextSoak.Add(o.ReportEvery)
			mon.soakLine()
		}
	}
	stopPub()
	<-pubDone
	if cl != nil && o.Restart {
		gwPIDs = cl.gatewayPIDs()
	}
	res.TrafficSecs = time.Since(trafficStart).Seconds()

	// Phase 3: final seqs, then let the viewers catch up.
	mon.setPhase("drain")
	final := map[string]uint64{}
	if service != "" && httpAddr != "" {
		fp := newPublisher(httpAddr, service, rooms, weights, 0)
		for i, r := range rooms {
			if viewersPer[i] > 0 || (o.Senders > 0 && sendersPer[i] > 0) {
				fp.post(r)
			}
		}
		final = fp.finals()
		if n := fp.errs.Load(); n > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("the final marker failed for %d rooms: their loss is not counted", n))
		}
	}
	for _, h := range workers {
		_ = h.send(Command{Cmd: "finish", Final: final, Grace: o.Grace})
	}
	for _, h := range workers {
		select {
		case <-h.done:
		case <-time.After(o.Grace + 60*time.Second):
			res.Notes = append(res.Notes, fmt.Sprintf("worker %d did not finish", h.id))
		}
	}
	deliverEnd := time.Now()
	gwEnd := gwSample(gwPIDs)
	if gwEnd.Missing > 0 {
		res.Notes = append(res.Notes, "a gateway process was gone before the end: gateway CPU and RSS figures are incomplete")
	}
	stopMon()
	<-monDone

	t = sumReports(workers)
	for _, h := range workers {
		h.mu.Lock()
		if h.err != nil {
			res.Notes = append(res.Notes, h.err.Error())
		}
		h.mu.Unlock()
	}
	if pub != nil {
		res.Published = pub.n.Load() - pub.errs.Load()
		res.PublishErrors = pub.errs.Load()
		if b := pub.behind.Load(); b > 0 {
			res.Notes = append(res.Notes, fmt.Sprintf("the publisher fell behind the rate by %d messages", b))
		}
	}
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
	d := t.Deliveries - startDeliv
	secs := deliverEnd.Sub(trafficStart).Seconds()
	if secs > 0 {
		res.DeliveriesPS = float64(d) / secs
	}
	res.Gateway.CPUTraffic = gwEnd.CPU - cpuStart
	if restartCPU != nil {
		res.Gateway.CPUTraffic = *restartCPU + gwEnd.CPU
		res.Notes = append(res.Notes, "gateway CPU across the restart leaves out the old processes' drain")
	}
	if gwEnd.Missing > 0 && restartCPU == nil {
		res.Gateway.CPUTraffic = 0
	}
	if res.Gateway.CPUTraffic > 0 {
		res.Gateway.DeliveriesPerCPUSecond = float64(d) / res.Gateway.CPUTraffic
	}
	res.Gateway.RSSEnd = gwEnd.RSS
	res.Gateway.RSSPeak = max(mon.peakRSS, gwEnd.RSS, settled.RSS)
	var lat, conn, ack Hist
	for _, h := range workers {
		h.mu.Lock()
		lat.Merge(&h.total)
		conn.Merge(&h.conn)
		ack.Merge(&h.ack)
		h.mu.Unlock()
	}
	res.Latency, res.LatencyHist, res.ConnectLat = quantiles(&lat), lat.Data(), quantiles(&conn)
	res.Harness.CPU, res.Harness.RSS = t.cpu, t.rss
	if o.InProcess {
		// Every in-process worker reports the same process.
		res.Harness.CPU, res.Harness.RSS = t.cpu/float64(len(workers)), t.rss/int64(len(workers))
	}
	if res.Connected > 0 {
		res.Harness.BytesPerConn = float64(res.Harness.RSS) / float64(res.Connected)
	}
	if t.Deliveries > 0 {
		res.Harness.CPUPerMillionDeliveries = res.Harness.CPU / float64(t.Deliveries) * 1e6
	}
	if storm != nil {
		storm.Resumed = t.Resumed - resumedBase
		storm.Incomplete = t.Incomplete
		if dropped && storm.Resumed >= storm.Dropped && t.LastResume > 0 {
			// The last resume may come after the traffic phase.
			storm.AllResumedAfter = time.Unix(0, t.LastResume).Sub(dropTime).Seconds()
		}
	}
	if o.Senders > 0 {
		res.Send = &SendResult{Sent: t.Sent, Acks: t.Acks, Rejects: t.Rejects, AckLat: quantiles(&ack)}
		if res.TrafficSecs > 0 {
			res.Send.AcksPS = float64(t.Acks) / res.TrafficSecs
		}
	}
	res.Timeline = mon.points()
	res.Load[1] = loadAvg()
	return res, nil
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
