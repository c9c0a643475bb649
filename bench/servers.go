package bench

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// server is one danmaku process the harness started.
type server struct {
	role string
	args []string
	env  []string
	log  string
	cmd  *exec.Cmd
	http string // its HTTP address, for readiness
	nice int    // run under nice(1) at this niceness (0: as the harness)
}

func (s *server) start(bin string) error {
	f, err := os.OpenFile(s.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, s.args...)
	if s.nice != 0 {
		// Every thread of the process at that niceness (setpriority on a
		// started process would reach its first thread alone).
		cmd = exec.Command("nice", append([]string{"-n", strconv.Itoa(s.nice), bin}, s.args...)...)
	}
	cmd.Env = append(os.Environ(), s.env...)
	cmd.Stdout, cmd.Stderr = f, f
	if err := cmd.Start(); err != nil {
		f.Close()
		return fmt.Errorf("bench: start %s: %w", s.role, err)
	}
	f.Close() // the child holds its own copy
	s.cmd = cmd
	go func() { _ = cmd.Wait() }()
	return nil
}

func (s *server) pid() int {
	if s.cmd == nil || s.cmd.Process == nil {
		return 0
	}
	return s.cmd.Process.Pid
}

// stop sends SIGTERM to the process, waits up to timeout for it to exit,
// then kills it.
func (s *server) stop(timeout time.Duration) {
	pid := s.pid()
	if pid == 0 {
		return
	}
	_ = syscall.Kill(pid, syscall.SIGTERM)
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if !alive(pid) {
			s.cmd = nil
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	_ = syscall.Kill(pid, syscall.SIGKILL)
	for i := 0; i < 40 && alive(pid); i++ {
		time.Sleep(50 * time.Millisecond)
	}
	s.cmd = nil
}

// alive reports whether pid exists and is not a zombie.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	for i := len(b) - 1; i > 0; i-- {
		if b[i] == ')' && i+2 < len(b) {
			return b[i+2] != 'Z'
		}
	}
	return true
}

// waitReady polls http://addr/readyz until it answers 200.
func waitReady(ctx context.Context, addr string, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/readyz", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bench: %s not ready: %w", addr, ctx.Err())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// freePort asks the kernel for a free loopback port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// cluster is the set of local processes a run started.
type cluster struct {
	bin      string
	servers  []*server
	gateways []*server
	httpAddr string
	wsAddrs  []string
}

// startCluster starts either one `danmaku all` (o.Gateways == 0) or logic,
// dispatch and o.Gateways gateway processes on the Kafka bus.
func startCluster(ctx context.Context, o *Options, dir string) (*cluster, error) {
	bin := o.ServerBin
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		bin = exe
	}
	env := append([]string{"DANMAKU_JWT_SECRET=" + o.Secret}, strings.Fields(o.ServerEnv)...)
	cl := &cluster{bin: bin}
	common := append([]string{"--log-level", "warn", "--drain-timeout", o.DrainTimeout.String()}, strings.Fields(o.ServerArgs)...)
	port := distinctPorts()
	var err error
	if o.Gateways <= 0 {
		err = cl.planAll(o, dir, env, common, port)
	} else {
		err = cl.planSplit(o, dir, env, common, port)
	}
	if err != nil {
		return nil, err
	}
	if err := cl.launch(ctx); err != nil {
		return nil, err
	}
	return cl, nil
}

// distinctPorts returns a source of free ports that never repeats one.
// freePort closes its probe, so the kernel may hand the same port out
// again: with 52 gateways (105 ports) that happened, a gateway failed
// to bind and the first one answered its readiness probe. Keep the
// ports of this cluster distinct.
func distinctPorts() func() (int, error) {
	taken := make(map[int]bool)
	return func() (int, error) {
		for {
			p, err := freePort()
			if err != nil || !taken[p] {
				taken[p] = true
				return p, err
			}
		}
	}
}

// planAll describes one `danmaku all` process serving HTTP and WebSocket.
func (cl *cluster) planAll(o *Options, dir string, env, common []string, port func() (int, error)) error {
	hp, err := port()
	if err != nil {
		return err
	}
	wp, err := port()
	if err != nil {
		return err
	}
	s := &server{role: "all", env: env, log: filepath.Join(dir, o.Name+"-all.log"),
		http: "127.0.0.1:" + strconv.Itoa(hp),
		args: append([]string{"all", "--demo=false", "--guests=false", "--http", "127.0.0.1:" + strconv.Itoa(hp),
			"--ws", "127.0.0.1:" + strconv.Itoa(wp), "--max-conns-per-ip", "-1", "--id", "bench-gw-0"}, common...)}
	cl.servers, cl.gateways = []*server{s}, []*server{s}
	cl.httpAddr, cl.wsAddrs = s.http, []string{"127.0.0.1:" + strconv.Itoa(wp)}
	return nil
}

// planSplit describes logic, dispatch and o.Gateways gateway processes on
// the Kafka bus; it needs o.Brokers.
func (cl *cluster) planSplit(o *Options, dir string, env, common []string, port func() (int, error)) error {
	if o.Brokers == "" {
		return fmt.Errorf("bench: --gateways %d needs --brokers (env DANMAKU_BROKERS) for the Kafka bus", o.Gateways)
	}
	busArgs := []string{"--bus", "kafka", "--brokers", o.Brokers, "--topic-prefix", o.TopicPrefix}
	for _, role := range []string{"logic", "dispatch"} {
		hp, err := port()
		if err != nil {
			return err
		}
		s := &server{role: role, env: env, log: filepath.Join(dir, o.Name+"-"+role+".log"),
			http: "127.0.0.1:" + strconv.Itoa(hp),
			// Memory history unless --server-args (in common, after it)
			// name a store: logic on Kafka refuses the default.
			args: append(append([]string{role, "--http", "127.0.0.1:" + strconv.Itoa(hp), "--history", "memory"}, busArgs...), common...)}
		cl.servers = append(cl.servers, s)
	}
	shared, err := port()
	if err != nil {
		return err
	}
	for k := range o.Gateways {
		wp := shared
		if !o.ReusePort {
			if wp, err = port(); err != nil {
				return err
			}
		}
		hp, err := port()
		if err != nil {
			return err
		}
		ws := "127.0.0.1:" + strconv.Itoa(wp)
		args := append([]string{"gateway", "--http", "127.0.0.1:" + strconv.Itoa(hp), "--ws", ws,
			"--max-conns-per-ip", "-1", "--id", "bench-gw-" + strconv.Itoa(k), "--guests=false"}, busArgs...)
		if o.ReusePort {
			args = append(args, "--reuseport")
		}
		if o.Affinity {
			args = append(args, "--affinity")
		}
		s := &server{role: "gateway-" + strconv.Itoa(k), env: env, http: "127.0.0.1:" + strconv.Itoa(hp), nice: o.GatewayNice,
			log: filepath.Join(dir, o.Name+"-gateway-"+strconv.Itoa(k)+".log"), args: append(args, common...)}
		cl.servers = append(cl.servers, s)
		cl.gateways = append(cl.gateways, s)
		if k == 0 || !o.ReusePort {
			cl.wsAddrs = append(cl.wsAddrs, ws)
		}
	}
	cl.httpAddr = cl.gateways[0].http
	return nil
}

// launch starts every planned process and waits until each is ready; on
// failure it stops them all.
func (cl *cluster) launch(ctx context.Context) error {
	for _, s := range cl.servers {
		if err := s.start(cl.bin); err != nil {
			cl.stop()
			return err
		}
	}
	for _, s := range cl.servers {
		if err := waitReady(ctx, s.http, 60*time.Second); err != nil {
			cl.stop()
			return fmt.Errorf("%w (log: %s)", err, s.log)
		}
	}
	return nil
}

// restartGateways stops every gateway and starts it again.
func (cl *cluster) restartGateways(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, g := range cl.gateways {
		wg.Add(1)
		go func() { defer wg.Done(); g.stop(30 * time.Second) }()
	}
	wg.Wait()
	for _, g := range cl.gateways {
		if err := g.start(cl.bin); err != nil {
			return err
		}
	}
	for _, g := range cl.gateways {
		if err := waitReady(ctx, g.http, 60*time.Second); err != nil {
			return err
		}
	}
	return nil
}

// stop stops gateways first, then the pipeline.
func (cl *cluster) stop() {
	for i := len(cl.servers) - 1; i >= 0; i-- {
		cl.servers[i].stop(20 * time.Second)
	}
}

func (cl *cluster) gatewayPIDs() []int {
	var pids []int
	for _, g := range cl.gateways {
		if p := g.pid(); p != 0 {
			pids = append(pids, p)
		}
	}
	return pids
}
