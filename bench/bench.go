// Package bench is the load harness of danmaku: `danmaku bench <scenario>`
// connects many lean WebSocket viewers (spread over worker processes and
// 127.0.0.x source addresses), publishes or sends messages, and measures
// connections, send → viewer latency, deliveries, loss, duplicates and the
// gateways' CPU and memory from /proc. It writes a JSON result and a
// self-contained HTML report; `danmaku bench compare` flags regressions
// between two results. See docs/bench.md.
package bench

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/danmaku-live/danmaku/bench/model"
)

const usage = `usage: danmaku bench <scenario> [flags]
       danmaku bench compare [--threshold 0.1] a.json b.json
       danmaku bench model [--preset NAME,...] [flags]   the scale model (docs/scaling.md)

scenarios:
  idle     N viewers connect and sit: gateway memory per connection
  fanout   one hot room, N viewers, R messages/s in
  rooms    many rooms with Zipf popularity
  storm    N viewers are dropped (or the gateways restarted) and resume
  send     many senders over WebSocket: acks/s and the reject mix
  soak     a long bounded fanout/rooms run with periodic summaries

Run "danmaku bench <scenario> -h" for the flags. See docs/bench.md.
`

// workerUsage is the -h of the hidden worker mode (WorkerMain).
const workerUsage = `usage: danmaku bench worker

Internal: a load worker that a bench run starts itself. It reads a worker
spec and commands as JSON lines on stdin and writes reports to stdout.
`

// Main runs `danmaku bench` with args (after "bench"). env holds what the
// command line read from the environment (cli.go): its Brokers and Secret
// serve where neither a flag nor a scenario file sets them, and its Quiet
// (CI=true) turns the progress line off.
func Main(ctx context.Context, args []string, env Options, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("bench: name a scenario")
	}
	cmd, args := args[0], args[1:]
	switch cmd {
	case "worker":
		if len(args) > 0 {
			if args[0] == "-h" || args[0] == "-help" || args[0] == "--help" {
				fmt.Fprint(stdout, workerUsage)
				return nil
			}
			return fmt.Errorf("bench worker: unexpected arguments %v (it takes none)", args)
		}
		return WorkerMain(ctx, os.Stdin, stdout)
	case "compare":
		return compareCmd(args, stdout, stderr)
	case "model":
		return model.Main(args, stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	if !slices.Contains(Scenarios, cmd) {
		// Before the flags: `bench nope -h` must not print a usage for
		// a scenario that does not exist and succeed.
		fmt.Fprint(stderr, usage)
		return fmt.Errorf("bench: unknown scenario %q (one of %s)", cmd, strings.Join(Scenarios, ", "))
	}
	o, err := parseOptions(cmd, args, env, stderr)
	if err != nil {
		return err
	}
	var progress io.Writer
	if !o.Quiet && isTerminal(stdout) {
		progress = stdout
	}
	res, err := Run(ctx, o, progress)
	if err != nil {
		return err
	}
	res.Command = "danmaku bench " + cmd + " " + strings.Join(args, " ")
	jp := filepath.Join(o.Out, o.Name+".json")
	hp := filepath.Join(o.Out, o.Name+".html")
	if err := res.WriteJSON(jp); err != nil {
		return err
	}
	if err := res.WriteHTML(hp); err != nil {
		return err
	}
	printSummary(stdout, res)
	fmt.Fprintf(stdout, "result: %s\nreport: %s\n", jp, hp)
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// printSummary prints the headline figures of r.
func printSummary(w io.Writer, r *Result) {
	var by string
	if len(r.FailedBy) > 0 {
		by = fmt.Sprint(" ", r.FailedBy)
	}
	fmt.Fprintf(w, "%s: %d/%d connections (viewers and senders) joined in %.2fs (%.0f/s, %d failures%s); load %.2f → %.2f\n",
		r.Scenario, r.Connected, r.Viewers+r.Senders, r.ConnectSecs, r.ConnectRate, r.Failed, by, r.Load[0], r.Load[1])
	fmt.Fprintf(w, "published %d (%d errors) in %.1fs; deliveries %d of %d (%s/s, %.1f msgs/frame); lost %d (gaps %d, rest undelivered at the end); dups %d\n",
		r.Published, r.PublishErrors, r.TrafficSecs, r.Deliveries, r.Expected, human(r.DeliveriesPS), r.MsgsPerFrame, r.Lost, r.Gaps, r.Dups)
	if p := r.PublishLat; p != nil {
		fmt.Fprintf(w, "publish API round trip ms (POST → logic's verdict): p50 %.2f p99 %.2f max %.2f\n", p.P50, p.P99, p.Max)
	}
	l := r.Latency
	fmt.Fprintf(w, "latency ms: p50 %.2f p90 %.2f p99 %.2f p999 %.2f max %.2f (%d samples)\n", l.P50, l.P90, l.P99, l.P999, l.Max, l.Count)
	g := r.Gateway
	fmt.Fprintf(w, "gateway: rss %s → %s (%.0f B/conn), peak %s; %.2f CPU-s traffic → %s deliveries/CPU-s; %.2f CPU-s connect → %s handshakes/CPU-s\n",
		humanBytes(g.RSSBefore), humanBytes(g.RSSConnected), g.BytesPerConn, humanBytes(g.RSSPeak), g.CPUTraffic,
		human(g.DeliveriesPerCPUSecond), g.CPUConnect, human(g.HandshakesPerCPUSecond))
	if g.LoopDelayP99Ms > 0 {
		past := ""
		if g.LoopDelayPastTop {
			past = " (past the top bucket: longer)"
		}
		fmt.Fprintf(w, "gateway loop delay ms (queued on a loop → written): p50 %.1f p99 %.1f%s\n", g.LoopDelayP50Ms, g.LoopDelayP99Ms, past)
	}
	if g.DispatchAgeP99Ms > 0 {
		fmt.Fprintf(w, "gateway reads of the bus (a batch's oldest message, accepted → read) ms: p50 %.1f p99 %.1f\n", g.DispatchAgeP50Ms, g.DispatchAgeP99Ms)
	}
	if g.Writes > 0 {
		fmt.Fprintf(w, "gateway writes to viewers: %s (%.1f msgs, %s per write)\n", human(g.Writes), float64(r.Deliveries)/g.Writes, humanBytes(int64(g.WriteBytes/g.Writes)))
	}
	h := r.Harness
	fmt.Fprintf(w, "harness: %d workers, %.1f CPU-s, rss %s (%.0f B/conn), %.2f CPU-s per million deliveries\n",
		h.Workers, h.CPU, humanBytes(h.RSS), h.BytesPerConn, h.CPUPerMillionDeliveries)
	if k := r.Kernel; k != nil {
		fmt.Fprintf(w, "kernel TCP (the host, net.ipv4.tcp_mem limit %s): %d memory-pressure entries, %d segments dropped on receive, %d retransmit timeouts\n",
			humanBytes(k.MemLimit), k.Pressures, k.RcvQDrops, k.Timeouts)
	}
	if p := r.PipelineCPU; len(p) > 0 {
		fmt.Fprintf(w, "pipeline: logic %.2f CPU-s, dispatch %.2f CPU-s (traffic and drain)\n", p["logic"], p["dispatch"])
	}
	if n := r.Runnable; len(n) > 0 {
		fmt.Fprintf(w, "threads running or waiting for a CPU over the traffic, on average: host %.1f, gateways %.1f, harness %.1f, logic and dispatch %.1f\n",
			n["host"], n["gateway"], n["harness"], n["pipeline"])
	}
	if s := r.Storm; s != nil {
		fmt.Fprintf(w, "storm: %d dropped, %d resumed, all resumed after %.2fs, %d incomplete histories\n", s.Dropped, s.Resumed, s.AllResumedAfter, s.Incomplete)
	}
	if s := r.Send; s != nil {
		fmt.Fprintf(w, "send: %d sent, %d acks (%.0f/s), rejects %v, ack p50 %.1fms p99 %.1fms\n", s.Sent, s.Acks, s.AcksPS, s.Rejects, s.AckLat.P50, s.AckLat.P99)
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}
