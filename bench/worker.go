package bench

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/route"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// RoomCount is a number of connections for one room.
type RoomCount struct {
	Room  string `json:"room"`
	Count int    `json:"count"`
}

// WorkerSpec tells one worker (a process or, in tests, a goroutine) which
// connections to open.
type WorkerSpec struct {
	// ID numbers the worker; it prefixes user ids.
	ID int `json:"id"`
	// Gateways are the WebSocket addresses (host:port); connection i goes to
	// Gateways[(i + ID) % len], so that with one port per gateway the
	// workers' remainders land on different gateways and none fills first.
	Gateways []string `json:"gateways"`
	// SourceIPs are the local addresses to dial from, round robin (empty:
	// the kernel's choice). Each holds at most ~28k connections to one
	// gateway address (the ephemeral port range).
	SourceIPs []string `json:"source_ips,omitempty"`
	// Viewers are the watching connections per room.
	Viewers []RoomCount `json:"viewers"`
	// Senders are connections that send messages (token role SenderRole).
	Senders []RoomCount `json:"senders,omitempty"`
	// SendRate is messages per second per sender.
	SendRate float64 `json:"send_rate,omitempty"`
	// SenderRole is the token role of senders: viewer (rate-limited) or mod.
	SenderRole string `json:"sender_role,omitempty"`
	// BadRatio is the fraction of sent texts that carry BadWord.
	BadRatio float64 `json:"bad_ratio,omitempty"`
	BadWord  string  `json:"bad_word,omitempty"`
	// Secret signs sender tokens (and viewer tokens when ViewerTokens).
	Secret       string `json:"secret,omitempty"`
	ViewerTokens bool   `json:"viewer_tokens,omitempty"`
	// ConnectRate caps new connections per second (0: no cap); Concurrency
	// caps dials in flight (0: 256).
	ConnectRate float64 `json:"connect_rate,omitempty"`
	Concurrency int     `json:"concurrency,omitempty"`
	// Reconnect makes connections come back (with resume) after a drain or
	// error; storms need it.
	Reconnect bool `json:"reconnect,omitempty"`
	// ReconnectJitter spreads the reconnects after a drop uniformly over
	// this long (0: all at once).
	ReconnectJitter time.Duration `json:"reconnect_jitter,omitempty"`
	// LatencyEvery records per-message latency on one viewer in every
	// LatencyEvery (1 or 0: all); the rest only count seqs.
	LatencyEvery int `json:"latency_every,omitempty"`
	// ViewerImpl is how viewers run: ImplEpoll (default: a few event loops)
	// or ImplGoroutine (one goroutine per connection). Senders always run
	// as goroutines.
	ViewerImpl string `json:"viewer_impl,omitempty"`
	// ReadPause is the epoll loops' pause between polls (Options.ReadPause;
	// 0 or negative: block).
	ReadPause time.Duration `json:"read_pause,omitempty"`
	// Deflate makes viewers offer permessage-deflate.
	Deflate bool `json:"deflate,omitempty"`
	// Compact makes viewers offer the danmaku.v1.compact subprotocol.
	Compact bool `json:"compact,omitempty"`
	// ByRoom places a connection where nginx's consistent hash
	// (route.Ring) puts route.Key: its room's dispatch partition (of
	// Partitions) and one of two slots, or one of the room's HotSlots, as
	// deploy/nginx/room-affinity.conf routes viewers for gateways with
	// --affinity, instead of round robin.
	ByRoom     bool `json:"by_room,omitempty"`
	Partitions int  `json:"partitions,omitempty"`
	// HotSlots are the rooms spread over slots of their own (route.Key),
	// with their slot counts.
	HotSlots map[string]int `json:"hot_slots,omitempty"`
	// HandshakeTimeout bounds one connect and its upgrade before the
	// attempt counts as failed and is retried (0: handshakeTimeout).
	HandshakeTimeout time.Duration `json:"handshake_timeout,omitempty"`
	// Tick is the report period (0: 1 s).
	Tick time.Duration `json:"tick,omitempty"`
}

// Command is an instruction from the coordinator to a running worker.
type Command struct {
	// Cmd is "drop" (close every connection at once; they reconnect and
	// resume), "send" (start sending: senders wait for it), "quiet" (stop
	// sending: the traffic phase ended), "finish" (stop sending, wait up
	// to Grace for every viewer to reach Final, then report and stop).
	Cmd   string            `json:"cmd"`
	Final map[string]uint64 `json:"final,omitempty"`
	Grace time.Duration     `json:"grace,omitempty"`
}

// Report is what a worker tells the coordinator: a "tick" every period
// with counters since the start and histograms since the previous tick, and
// one "final" at the end.
type Report struct {
	Type        string           `json:"type"`
	Worker      int              `json:"worker"`
	T           int64            `json:"t"`
	Open        int64            `json:"open"`
	Established int64            `json:"established"`
	Failed      int64            `json:"failed"`
	Reconnects  int64            `json:"reconnects"`
	Resumed     int64            `json:"resumed"`
	Incomplete  int64            `json:"incomplete"`
	Deliveries  int64            `json:"deliveries"`
	Dups        int64            `json:"dups"`
	Marked      int64            `json:"marked"` // seqs covered by from/to marks, not carried
	Gaps        int64            `json:"gaps"`
	Lost        int64            `json:"lost"`
	Frames      int64            `json:"frames"`
	Bytes       int64            `json:"bytes"`
	Sent        int64            `json:"sent"`
	Acks        int64            `json:"acks"`
	Rejects     map[string]int64 `json:"rejects,omitempty"`
	FailedBy    map[string]int64 `json:"failed_by,omitempty"` // Failed by kind (failKind)
	Lat         HistData         `json:"lat"`
	Conn        HistData         `json:"conn"`
	Ack         HistData         `json:"ack"`
	LastJoin    int64            `json:"last_join_ns"`
	LastResume  int64            `json:"last_resume_ns"`
	Self        ProcSample       `json:"self"`
	Err         string           `json:"err,omitempty"`
	// Rooms is, in the final report, each room's seqs delivered and
	// marked (left out by thinning or shedding) summed over its viewers.
	Rooms map[string][2]int64 `json:"rooms,omitempty"`
}

// RunWorker opens the connections of spec, reports on out every tick and
// obeys cmds until a finish command completes, cmds closes or ctx ends.
func RunWorker(ctx context.Context, spec WorkerSpec, cmds <-chan Command, out func(Report)) error {
	w, err := newWorker(spec, out)
	if err != nil {
		return err
	}
	if err := w.addConnections(); err != nil {
		return err
	}
	if g, ok := w.viewers.(*epollGroup); ok && spec.ByRoom {
		// A gateway of a room's pool that is full spills the viewer
		// over to the next, as the nginx router does.
		g.spillOver(spec.Gateways)
	}
	w.start()
	joinedAll := w.watchJoined()
	tick := time.NewTicker(w.spec.Tick)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			w.shutdown()
			w.report("final", 0)
			return ctx.Err()
		case <-tick.C:
			w.report("tick", 0)
		case <-joinedAll:
			joinedAll = nil
			w.report("tick", 0)
		case c, ok := <-cmds:
			if !ok {
				w.shutdown()
				w.report("final", 0)
				return nil
			}
			switch c.Cmd {
			case "send":
				w.startSending()
			case "quiet":
				w.stopSending()
			case "drop":
				w.viewers.drop()
			case "finish":
				w.finish(c, tick)
				return nil
			}
		}
	}
}

// worker is the state of one RunWorker: its connections, their counters
// and the goroutines that run them.
type worker struct {
	spec    WorkerSpec
	out     func(Report)
	signer  *auth.Signer // nil without spec.Secret
	srcs    []*net.TCPAddr
	st      *stats
	viewers viewerGroup
	// add adds viewer i of room on gateway addr to viewers.
	add      func(i int, room, addr string, src *net.TCPAddr, token string, latency bool)
	senders  *goGroup
	nviewers int
	next     int         // connections placed so far, for spreading them over gateways and sources
	ring     *route.Ring // ByRoom: the gateways on nginx's consistent-hash ring

	stop           chan struct{}
	wg             sync.WaitGroup // the connections' goroutines
	sent           sync.WaitGroup // the send loop
	sentN          atomicCounter
	startSend      chan struct{} // closed by the send command (or finish)
	endSend        chan struct{} // closed by the quiet command (or finish): the senders stop
	lat, conn, ack Hist          // report's scratch
}

// newWorker checks spec, fills its defaults and makes the viewer group of
// its implementation.
func newWorker(spec WorkerSpec, out func(Report)) (*worker, error) {
	if len(spec.Gateways) == 0 {
		return nil, fmt.Errorf("bench: worker %d: no gateways", spec.ID)
	}
	if spec.Tick <= 0 {
		spec.Tick = time.Second
	}
	if spec.Concurrency <= 0 {
		spec.Concurrency = 256
	}
	w := &worker{spec: spec, out: out, st: &stats{}, stop: make(chan struct{}), startSend: make(chan struct{}), endSend: make(chan struct{})}
	if spec.Secret != "" {
		s, err := auth.NewSigner(spec.Secret)
		if err != nil {
			return nil, err
		}
		w.signer = s
	}
	for _, ip := range spec.SourceIPs {
		a := net.ParseIP(ip)
		if a == nil {
			return nil, fmt.Errorf("bench: bad source address %q", ip)
		}
		w.srcs = append(w.srcs, &net.TCPAddr{IP: a})
	}
	impl := spec.ViewerImpl
	if impl == "" {
		impl = ImplEpoll
	}
	gate := make(chan struct{}, spec.Concurrency)
	timeout := cmp.Or(spec.HandshakeTimeout, handshakeTimeout)
	w.senders = &goGroup{gate: gate, rate: spec.ConnectRate, reconnect: spec.Reconnect, jitter: spec.ReconnectJitter, timeout: timeout}
	switch impl {
	case ImplEpoll:
		g, err := newEpollGroup(w.st, spec.Reconnect, spec.ReconnectJitter, spec.ConnectRate, spec.Concurrency)
		if err != nil {
			return nil, err
		}
		g.pause, g.timeout, g.deflate, g.compact = spec.ReadPause, timeout, spec.Deflate, spec.Compact
		w.viewers, w.add = g, g.add
	case ImplGoroutine:
		g := &goGroup{gate: gate, rate: spec.ConnectRate, reconnect: spec.Reconnect, jitter: spec.ReconnectJitter, timeout: timeout}
		w.viewers, w.add = g, func(i int, room, addr string, src *net.TCPAddr, token string, latency bool) {
			g.vs = append(g.vs, newViewer(w.st, i, room, addr, src, token, latency))
		}
	default:
		return nil, fmt.Errorf("bench: worker %d: unknown viewer implementation %q", spec.ID, impl)
	}
	return w, nil
}

// place returns the gateway and source address of the next connection, a
// connection of room: round robin from the worker's id, or with ByRoom
// where nginx's consistent hash puts route.Key (the room's dispatch
// partition and a slot, or one of a hot room's slots).
func (w *worker) place(room string) (string, *net.TCPAddr) {
	addr := w.spec.Gateways[(w.next+w.spec.ID)%len(w.spec.Gateways)]
	if w.spec.ByRoom {
		if w.ring == nil {
			w.ring = route.NewRing(w.spec.Gateways)
		}
		addr = w.spec.Gateways[w.ring.Get(route.Key(room, w.spec.Partitions, 2, w.spec.HotSlots[room], uint32(w.next)))]
	}
	var src *net.TCPAddr
	if len(w.srcs) > 0 {
		src = w.srcs[w.next%len(w.srcs)]
	}
	w.next++
	return addr, src
}

// addConnections adds the viewers and the senders of spec (not connected
// yet).
func (w *worker) addConnections() error {
	spec := w.spec
	every := max(spec.LatencyEvery, 1)
	for _, rc := range spec.Viewers {
		for range rc.Count {
			tok := ""
			if spec.ViewerTokens && w.signer != nil {
				uid := "bv" + strconv.Itoa(spec.ID) + "-" + strconv.Itoa(w.nviewers)
				tok, _ = w.signer.Sign(uid, uid, auth.RoleViewer, nil, 24*time.Hour)
			}
			n := w.next
			addr, src := w.place(rc.Room)
			w.add(n, rc.Room, addr, src, tok, w.nviewers%every == 0)
			w.nviewers++
		}
	}
	for _, rc := range spec.Senders {
		for range rc.Count {
			if w.signer == nil {
				return fmt.Errorf("bench: worker %d: senders need the JWT secret", spec.ID)
			}
			role := spec.SenderRole
			if role == "" {
				role = auth.RoleViewer
			}
			uid := "bs" + strconv.Itoa(spec.ID) + "-" + strconv.Itoa(len(w.senders.vs))
			var rooms []string
			if role == auth.RoleMod {
				rooms = []string{"*"}
			}
			tok, err := w.signer.Sign(uid, uid, role, rooms, 24*time.Hour)
			if err != nil {
				return err
			}
			n := w.next
			addr, src := w.place(rc.Room)
			w.senders.vs = append(w.senders.vs, newViewer(w.st, n, rc.Room, addr, src, tok, false))
		}
	}
	return nil
}

// start connects every connection, and starts the send loop, which waits
// for the send command.
func (w *worker) start() {
	w.viewers.start(w.stop, &w.wg)
	w.senders.start(w.stop, &w.wg)
	if len(w.senders.vs) > 0 && w.spec.SendRate > 0 {
		w.sent.Add(1)
		go func() {
			defer w.sent.Done()
			select {
			case <-w.startSend:
			case <-w.stop:
				return
			}
			sendLoop(w.endSend, w.senders.vs, w.spec, &w.sentN)
		}()
	}
}

// stopSending ends the send loop (once): the traffic phase is over, and
// what the senders sent must reach the viewers before the final marker.
func (w *worker) stopSending() {
	select {
	case <-w.endSend:
	default:
		close(w.endSend)
	}
}

// startSending lets the send loop go (once).
func (w *worker) startSending() {
	select {
	case <-w.startSend:
	default:
		close(w.startSend)
	}
}

// watchJoined returns a channel closed as soon as every connection has
// joined, so that the coordinator measures the connect phase to the
// millisecond.
func (w *worker) watchJoined() <-chan struct{} {
	total := int64(w.nviewers + len(w.senders.vs))
	joinedAll := make(chan struct{})
	go func() {
		for {
			sum := &stats{}
			w.st.addTo(sum)
			w.viewers.addTo(sum)
			if sum.established.Load() >= total {
				break
			}
			if !sleepOrStop(w.stop, 5*time.Millisecond) {
				return
			}
		}
		close(joinedAll)
	}()
	return joinedAll
}

// report sends a report of type typ ("tick" or "final") with lost seqs.
func (w *worker) report(typ string, lost int64) {
	st, viewers := w.st, w.viewers
	lat, conn, ack := &w.lat, &w.conn, &w.ack
	lat.Reset()
	conn.Reset()
	ack.Reset()
	for i := range st.lat {
		st.lat[i].take(lat)
	}
	st.conn.take(conn)
	st.ack.take(ack)
	viewers.take(lat, conn)
	var gaps int64
	viewers.each(func(s *session) bool {
		gaps += int64(s.tr.Gaps())
		return true
	})
	sum := &stats{}
	st.addTo(sum)
	viewers.addTo(sum)
	r := Report{Type: typ, Worker: w.spec.ID, T: time.Now().UnixMilli(), Open: sum.open.Load(),
		Established: sum.established.Load(), Failed: sum.failed.Load(), Reconnects: sum.reconnects.Load(),
		Resumed: sum.resumed.Load(), Incomplete: sum.incomplete.Load(), Deliveries: sum.deliveries.Load(),
		Dups: sum.dups.Load(), Marked: sum.marked.Load(), Gaps: gaps, Lost: lost, Frames: sum.frames.Load(), Bytes: sum.bytes.Load(),
		LastJoin: sum.lastJoin.Load(), LastResume: sum.lastResume.Load(), Sent: w.sentN.Load(), Acks: sum.acks.Load(), Lat: lat.Data(), Conn: conn.Data(), Ack: ack.Data()}
	r.Rejects, r.FailedBy = sum.rejects.snapshot(), sum.failedBy.snapshot()
	r.Self, _ = ReadProc(os.Getpid())
	if typ == "final" {
		r.Rooms = map[string][2]int64{}
		viewers.each(func(s *session) bool {
			v := r.Rooms[s.room]
			v[0] += int64(s.tr.Delivered)
			v[1] += int64(s.tr.Marked)
			r.Rooms[s.room] = v
			return true
		})
	}
	w.out(r)
}

// shutdown closes every connection and waits for the worker's goroutines.
func (w *worker) shutdown() {
	w.stopSending()
	close(w.stop)
	w.viewers.close()
	w.senders.close()
	w.sent.Wait()
	w.wg.Wait()
}

// finish obeys the finish command: it lets the viewers catch up with
// c.Final for up to c.Grace (reporting on tick meanwhile), counts what
// they lost, shuts down and sends the final report.
func (w *worker) finish(c Command, tick *time.Ticker) {
	w.startSending() // let the sender loop see stop
	w.stopSending()
	deadline := time.Now().Add(c.Grace)
	for time.Now().Before(deadline) && !caughtUp(w.viewers, c.Final) {
		select {
		case <-tick.C:
			w.report("tick", 0) // keep the timeline going while viewers catch up
		case <-time.After(20 * time.Millisecond):
		}
	}
	var lost int64
	w.viewers.each(func(s *session) bool {
		lost += int64(s.tr.Lost(c.Final[s.room]))
		return true
	})
	w.shutdown()
	w.report("final", lost)
}

// caughtUp reports whether every viewer has seen its room's final seq.
func caughtUp(viewers viewerGroup, final map[string]uint64) bool {
	ok := true
	viewers.each(func(s *session) bool {
		ok = s.tr.Last() >= final[s.room]
		return ok
	})
	return ok
}

// viewerGroup is one implementation's set of watching connections.
type viewerGroup interface {
	// start connects them, paced, and keeps them connected until stop is
	// closed; its goroutines are counted in wg.
	start(stop <-chan struct{}, wg *sync.WaitGroup)
	// drop closes every connection at once; they reconnect and resume.
	drop()
	// close ends every connection for good.
	close()
	// each calls f with every session, locked, until f returns false.
	each(f func(*session) bool)
	// take merges the latency histograms kept outside the worker's
	// shared shards into lat (send → viewer) and conn (dial → joined).
	take(lat, conn *Hist)
	// addTo adds the counters kept outside the worker's shared stats.
	addTo(sum *stats)
}

var (
	_ viewerGroup = (*goGroup)(nil)
	_ viewerGroup = (*epollGroup)(nil)
)

// goGroup runs one goroutine per connection (viewer.run).
type goGroup struct {
	vs        []*viewer
	gate      chan struct{} // dials in flight
	rate      float64       // new connections/s, 0: no cap
	reconnect bool
	jitter    time.Duration
	timeout   time.Duration // of a connect and its upgrade
}

func newViewer(st *stats, i int, room, addr string, src *net.TCPAddr, token string, latency bool) *viewer {
	return &viewer{idx: i, addr: addr, src: src, token: token, st: st,
		rec: shardRecorder{lat: &st.lat[i%len(st.lat)], conn: &st.conn},
		s:   session{room: room, latency: latency}}
}

func (g *goGroup) start(stop <-chan struct{}, wg *sync.WaitGroup) {
	wg.Add(1)
	go func() { // start connections, paced
		defer wg.Done()
		paced(stop, g.rate, len(g.vs), func(i int) bool {
			select {
			case <-stop:
				return false
			default:
			}
			wg.Add(1)
			go func(v *viewer) {
				defer wg.Done()
				v.run(stop, g.reconnect, g.gate, g.jitter, g.timeout)
			}(g.vs[i])
			return true
		})
	}()
}

func (g *goGroup) drop() {
	for _, v := range g.vs {
		v.drop()
	}
}

func (g *goGroup) close() {
	for _, v := range g.vs {
		v.close()
	}
}

func (g *goGroup) each(f func(*session) bool) {
	for _, v := range g.vs {
		v.mu.Lock()
		ok := f(&v.s)
		v.mu.Unlock()
		if !ok {
			return
		}
	}
}

func (g *goGroup) take(lat, conn *Hist) {}

func (g *goGroup) addTo(sum *stats) {}

// sendLoop paces send frames over the senders every 10 ms.
func sendLoop(stop <-chan struct{}, senders []*viewer, spec WorkerSpec, n *atomicCounter) {
	const step = 10 * time.Millisecond
	perStep := spec.SendRate * float64(len(senders)) * step.Seconds()
	t := time.NewTicker(step)
	defer t.Stop()
	var credit float64
	next := 0
	rng := rand.New(rand.NewPCG(uint64(spec.ID), uint64(time.Now().UnixNano())))
	buf := make([]byte, 0, 512)
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		credit += perStep
		for ; credit >= 1; credit-- {
			v := senders[next%len(senders)]
			next++
			v.mu.Lock()
			c := v.c
			v.mu.Unlock()
			if c == nil {
				continue
			}
			ns := time.Now().UnixNano()
			k := n.Add(1)
			text := benchText(ns, uint64(k))
			if spec.BadRatio > 0 && rng.Float64() < spec.BadRatio {
				text += " " + spec.BadWord
			}
			payload := fmt.Appendf(buf[:0], `{"op":"send","room":%q,"id":"s%d-%d","text":%q}`, v.s.room, ns, k, text)
			frame := ws.AppendClientFrame(nil, ws.OpText, payload, ws.NewMask())
			_ = c.SetWriteDeadline(time.Now().Add(2 * time.Second))
			_, _ = c.Write(frame)
		}
	}
}

// WorkerMain is the hidden "bench worker" mode of the binary: it reads a
// WorkerSpec as the first JSON line of stdin and Commands after it, and
// writes Reports as JSON lines to stdout.
func WorkerMain(ctx context.Context, stdin io.Reader, stdout io.Writer) error {
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	if !sc.Scan() {
		return fmt.Errorf("bench worker: no spec on stdin")
	}
	var spec WorkerSpec
	if err := json.Unmarshal(sc.Bytes(), &spec); err != nil {
		return fmt.Errorf("bench worker: spec: %w", err)
	}
	cmds := make(chan Command, 4)
	go func() {
		defer close(cmds)
		for sc.Scan() {
			var c Command
			if json.Unmarshal(sc.Bytes(), &c) == nil {
				cmds <- c
			}
		}
	}()
	w := bufio.NewWriter(stdout)
	enc := json.NewEncoder(w)
	var mu sync.Mutex
	return RunWorker(ctx, spec, cmds, func(r Report) {
		mu.Lock()
		defer mu.Unlock()
		_ = enc.Encode(r)
		_ = w.Flush()
	})
}
