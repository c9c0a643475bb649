package model

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
)

const usage = `usage: danmaku bench model [--preset NAME[,NAME...]] [flags]
       danmaku bench model --against RESULT.json[,RESULT.json...] [flags]
       danmaku bench model --fit RESULT.json,... [--fit-out COSTS.json]
       danmaku bench model --costs-list [--costs FILE]

Computes the gateways, logic workers, dispatch processes and brokers a
platform needs from unit costs measured on the bench machine
(bench/model/costs.json; --costs-list prints them with the command that
measures each). Flags after --preset override it. --against models bench
runs from their result files (the box, the viewers, rooms and accepted
rate they had) and prints the model's figures next to what they
measured, with the model's error. See docs/scaling.md.

presets: %s

`

// Main runs `danmaku bench model` with args (after "model").
func Main(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench model", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, usage, strings.Join(presetNames(), ", "))
		fs.PrintDefaults()
	}
	presets := fs.String("preset", "", "comma-separated presets, one table column each")
	costsFile := fs.String("costs", "", "a costs file (default: the embedded costs.json)")
	list := fs.Bool("costs-list", false, "print the unit costs, their commands and dates, and exit")
	markdown := fs.Bool("markdown", false, "print the table as markdown")
	against := fs.String("against", "", "comma-separated bench result files to model and compare with")
	fit := fs.String("fit", "", "comma-separated bench result files (--gateways K runs) to fit this box's unit costs to")
	fitOut := fs.String("fit-out", "", "with --fit: write the costs with the fitted ones to this file (for --costs)")
	var in Input
	box := Box{Harness: true}
	bindFlags(fs, &in, &box)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("model: unexpected argument %q", fs.Arg(0))
	}
	c, err := loadCosts(*costsFile)
	if err != nil {
		return err
	}
	if *list {
		c.Print(stdout)
		return nil
	}
	if *fit != "" {
		var runs []FitRun
		var bench []BenchRun
		for _, f := range strings.Split(*fit, ",") {
			r, err := ReadFitRun(f)
			if err != nil {
				return err
			}
			b, err := ReadRun(f)
			if err != nil {
				return err
			}
			runs, bench = append(runs, r), append(bench, b)
		}
		fitted, lines, err := Fit(runs, bench, c, today())
		if err != nil {
			return err
		}
		FitReport(stdout, runs, lines)
		if *fitOut == "" {
			return nil
		}
		f, err := os.Create(*fitOut)
		if err != nil {
			return err
		}
		if err := WriteCosts(f, fitted); err != nil {
			f.Close()
			return err
		}
		if err := f.Close(); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "costs with the fitted ones: %s (bench model --costs %s)\n", *fitOut, *fitOut)
		return nil
	}
	if *against != "" {
		if *presets != "" {
			return errors.New("model: --against and --preset: give one")
		}
		return compare(stdout, strings.Split(*against, ","), c, fs, in, box, *markdown)
	}
	inputs, err := resolve(*presets, fs, in, box)
	if err != nil {
		return err
	}
	var outs []*Output
	for _, x := range inputs {
		o, err := Run(x, c)
		if err != nil {
			return fmt.Errorf("%s: %w", x.Name, err)
		}
		outs = append(outs, o)
	}
	Table(stdout, outs, *markdown)
	return nil
}

// compare models each bench result file, with the flags given on top,
// and writes the model next to the measured figures.
func compare(w io.Writer, files []string, c Costs, fs *flag.FlagSet, in Input, box Box, md bool) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var runs []BenchRun
	var outs []*Output
	for _, f := range files {
		r, err := ReadRun(strings.TrimSpace(f))
		if err != nil {
			return err
		}
		if err := override(&r.In, in, box, given); err != nil {
			return err
		}
		o, err := Run(r.In, c)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		runs, outs = append(runs, r), append(outs, o)
	}
	Against(w, runs, outs, c, md)
	for _, o := range outs {
		for _, n := range o.Notes {
			fmt.Fprintf(w, "%s: %s\n", o.In.Name, n)
		}
	}
	return nil
}

func loadCosts(path string) (Costs, error) {
	if path == "" {
		return DefaultCosts()
	}
	return LoadCosts(path)
}

// bindFlags defines the Input's flags (given ones override a preset's
// fields: see override).
func bindFlags(fs *flag.FlagSet, in *Input, box *Box) {
	fs.Float64Var(&in.Viewers, "viewers", 0, "concurrent viewers")
	fs.IntVar(&in.Rooms, "rooms", 0, "live rooms")
	fs.Float64Var(&in.Zipf, "zipf", 1, "room popularity: room k holds viewers ∝ k^-zipf")
	fs.Float64Var(&in.Rate, "rate", 0, "accepted messages/s (0: from --msgs-per-viewer-min)")
	fs.Float64Var(&in.MsgsPerViewerMin, "msgs-per-viewer-min", 0, "accepted messages per viewer per minute")
	fs.Float64Var(&in.RateExp, "rate-exp", 1, "a room's message rate ∝ viewers^rate-exp")
	fs.Float64Var(&in.ThinBudget, "thin-budget", 0, "messages/s shown per room (0: no thinning)")
	fs.Float64Var(&in.Deflate, "deflate", 0, "share of viewers with permessage-deflate, 0..1")
	fs.Float64Var(&in.Protected, "protected", 0, "share of messages shedding never leaves out (paid, highlight, mods', the service's), 0..1")
	fs.Float64Var(&in.GatewayConns, "gateway-conns", 19680, "viewers per gateway at most")
	fs.IntVar(&in.GatewayCores, "gateway-cores", 2, "cores (event loops) per gateway")
	fs.IntVar(&in.Gateways, "gateways", 0, "fix the gateway count (0: size it)")
	fs.IntVar(&in.Partitions, "partitions", 8, "dispatch partitions")
	fs.StringVar(&in.Affinity, "affinity", "off", "room-affine dispatch: off, room (LB hashes the room) or partition (LB routes by partition)")
	fs.Float64Var(&in.AffinitySlots, "affinity-slots", 1, "under affinity, the fewest gateways a room is spread over")
	fs.Float64Var(&in.AffinityHot, "affinity-hot", 0, "under affinity, the router's viewers per slot of a hot room's own (room-route.js $room_viewers_per_slot; 0: none)")
	fs.Float64Var(&in.SessionMin, "session-min", 0, "mean minutes a viewer stays (0: no handshakes)")
	fs.Float64Var(&in.HeartbeatS, "heartbeat", 0, "seconds of silence before a ping (0: none)")
	fs.Float64Var(&in.Target, "target", 0.6, "CPU utilisation the tiers are sized to")
	fs.Float64Var(&in.FlushRate, "flush-rate", 250000, "gateway --flush-rate")
	fs.Float64Var(&in.MinTickMs, "min-tick-ms", 5, "dispatch's shortest merge window, ms (dispatch.Config MinTick)")
	fs.Float64Var(&box.Cores, "box-cores", 0, "model one shared box of this many cores (0: a deployment)")
	fs.Float64Var(&box.Load, "box-load", 0, "the box's load from other work (uptime before the run)")
	fs.Float64Var(&box.DurationS, "box-duration", 20, "the run's traffic phase in seconds")
	fs.BoolVar(&box.Harness, "box-harness", true, "the bench harness shares the box's cores")
}

// resolve returns the inputs to run: the presets named, each with the
// flags given on top, or the flags alone.
func resolve(names string, fs *flag.FlagSet, in Input, box Box) ([]Input, error) {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if names == "" {
		in.Name = "flags"
		if box.Cores > 0 {
			in.Box = &box
		} else if given["box-load"] || given["box-duration"] || given["box-harness"] {
			return nil, errNoBox
		}
		return []Input{in}, nil
	}
	var out []Input
	for _, n := range strings.Split(names, ",") {
		p, ok := presets[strings.TrimSpace(n)]
		if !ok {
			return nil, fmt.Errorf("model: no preset %q (have %s)", n, strings.Join(presetNames(), ", "))
		}
		x := p
		if x.Box != nil {
			b := *x.Box
			x.Box = &b
		}
		if err := override(&x, in, box, given); err != nil {
			return nil, err
		}
		out = append(out, x)
	}
	return out, nil
}

func presetNames() []string {
	var n []string
	for k := range presets {
		n = append(n, k)
	}
	sort.Strings(n)
	return n
}

// override copies the fields of the flags given from in and box onto x.
func override(x *Input, in Input, box Box, given map[string]bool) error {
	fields := map[string]func(){
		"viewers": func() { x.Viewers = in.Viewers }, "rooms": func() { x.Rooms = in.Rooms },
		"zipf": func() { x.Zipf = in.Zipf }, "rate": func() { x.Rate = in.Rate },
		"msgs-per-viewer-min": func() { x.MsgsPerViewerMin, x.Rate = in.MsgsPerViewerMin, in.Rate },
		"rate-exp":            func() { x.RateExp = in.RateExp }, "thin-budget": func() { x.ThinBudget = in.ThinBudget },
		"deflate": func() { x.Deflate = in.Deflate }, "protected": func() { x.Protected = in.Protected }, "gateway-conns": func() { x.GatewayConns = in.GatewayConns },
		"gateway-cores": func() { x.GatewayCores = in.GatewayCores }, "gateways": func() { x.Gateways = in.Gateways },
		"partitions": func() { x.Partitions = in.Partitions }, "affinity": func() { x.Affinity = in.Affinity },
		"affinity-slots": func() { x.AffinitySlots = in.AffinitySlots }, "affinity-hot": func() { x.AffinityHot = in.AffinityHot },
		"session-min": func() { x.SessionMin = in.SessionMin }, "heartbeat": func() { x.HeartbeatS = in.HeartbeatS },
		"target": func() { x.Target = in.Target }, "flush-rate": func() { x.FlushRate = in.FlushRate },
		"min-tick-ms": func() { x.MinTickMs = in.MinTickMs },
	}
	if given["box-cores"] {
		// A box preset with other cores, a deployment preset on a box, or
		// (0) a box preset as a deployment; before the other box flags.
		switch {
		case box.Cores <= 0:
			x.Box = nil
		case x.Box == nil:
			b := box
			x.Box = &b
		default:
			x.Box.Cores = box.Cores
		}
	}
	for name := range given {
		if f, ok := fields[name]; ok {
			f()
			continue
		}
		if !strings.HasPrefix(name, "box-") || name == "box-cores" {
			continue
		}
		if x.Box == nil {
			return errNoBox
		}
		switch name {
		case "box-load":
			x.Box.Load = box.Load
		case "box-duration":
			x.Box.DurationS = box.DurationS
		case "box-harness":
			x.Box.Harness = box.Harness
		}
	}
	return nil
}

// errNoBox is returned for box flags on a deployment preset.
var errNoBox = errors.New("model: --box-load, --box-duration and --box-harness apply to box presets or --box-cores")
