package main

import (
	"context"
	"encoding/json"
	"fmt"
	"go/ast"
	"go/parser"
	gotoken "go/token"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/histogram"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/model/rulefmt"
	promengine "github.com/prometheus/prometheus/promql"
	promql "github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/storage"
	"github.com/prometheus/prometheus/tsdb/chunkenc"
	"github.com/prometheus/prometheus/tsdb/chunks"
	"github.com/prometheus/prometheus/util/annotations"

	"github.com/danmaku-live/danmaku/app"
	"github.com/danmaku-live/danmaku/pkg/metric"
)

// The operator files: a Grafana dashboard and Prometheus alert rules over
// the metrics the processes export. TestOperatorFiles checks that they
// parse with Prometheus's own parsers and name only metrics that exist.

const (
	dashboardFile = "deploy/grafana/danmaku.json"
	alertsFile    = "deploy/prometheus/alerts.yml"
)

// exportedMetrics returns the names of the metrics danmaku exports: those
// the registry of a `danmaku all` process gathers (every stage, the Go and
// process collectors, the history writer's), and those declared in the
// code with literal Namespace, Subsystem and Name in prometheus.*Opts (a
// labelled vector shows up in Gather only after its first child).
func exportedMetrics(t *testing.T) map[string]bool {
	t.Helper()
	names := make(map[string]bool)
	cfg, err := parseConfig("all", []string{"--http", "127.0.0.1:0", "--ws", "127.0.0.1:0", "--jwt-secret", testSecret, "--demo=false"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	a, err := app.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	mfs, err := a.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		names[mf.GetName()] = true
	}
	fset := gotoken.NewFileSet()
	err = filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "node_modules" || strings.HasPrefix(d.Name(), ".")) && path != "." {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			lit, ok := n.(*ast.CompositeLit)
			if !ok {
				return true
			}
			sel, ok := lit.Type.(*ast.SelectorExpr)
			if !ok || !strings.HasSuffix(sel.Sel.Name, "Opts") {
				return true
			}
			fields := map[string]string{}
			for _, e := range lit.Elts {
				kv, ok := e.(*ast.KeyValueExpr)
				if !ok {
					continue
				}
				k, _ := kv.Key.(*ast.Ident)
				v, _ := kv.Value.(*ast.BasicLit)
				if k != nil && v != nil && v.Kind == gotoken.STRING {
					fields[k.Name], _ = strconv.Unquote(v.Value)
				}
			}
			if fields["Name"] != "" && fields["Namespace"] == "danmaku" {
				names[prometheus.BuildFQName(fields["Namespace"], fields["Subsystem"], fields["Name"])] = true
			}
			return true
		})
		for _, d := range f.Decls {
			for _, name := range setMetrics(d) {
				names[name] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
}

// setMetrics returns the names of the metrics a declaration makes through
// pkg/metric: in a function that calls metric.New(reg, "sub"), each call of
// a Set method (Counter, CounterVec, Gauge, CounterFunc, GaugeFunc) whose
// first argument is a string literal.
func setMetrics(d ast.Decl) []string {
	var sub string
	var made []string
	ast.Inspect(d, func(n ast.Node) bool {
		call, ok := n.(*ast.CallExpr)
		if !ok {
			return true
		}
		sel, ok := call.Fun.(*ast.SelectorExpr)
		if !ok || len(call.Args) == 0 {
			return true
		}
		lit, ok := call.Args[len(call.Args)-1].(*ast.BasicLit)
		if x, _ := sel.X.(*ast.Ident); x != nil && x.Name == "metric" && sel.Sel.Name == "New" && ok && lit.Kind == gotoken.STRING {
			sub, _ = strconv.Unquote(lit.Value)
			return true
		}
		switch sel.Sel.Name {
		case "Counter", "CounterVec", "Gauge", "CounterFunc", "GaugeFunc":
			if lit, ok := call.Args[0].(*ast.BasicLit); ok && lit.Kind == gotoken.STRING {
				name, _ := strconv.Unquote(lit.Value)
				made = append(made, name)
			}
		}
		return true
	})
	if sub == "" {
		return nil
	}
	for i, name := range made {
		made[i] = prometheus.BuildFQName(metric.Namespace, sub, name)
	}
	return made
}

// metricsOf returns the metric names an expression selects.
func metricsOf(expr promql.Expr) []string {
	var out []string
	promql.Inspect(expr, func(n promql.Node, _ []promql.Node) error {
		if vs, ok := n.(*promql.VectorSelector); ok {
			out = append(out, vs.Name)
		}
		return nil
	})
	return out
}

// grafanaVars stands in for the variables Grafana fills in before a query
// reaches Prometheus.
var grafanaVars = strings.NewReplacer("$__rate_interval", "1m", "$__interval", "1m", "$__range", "1h")

// checkExpr parses a PromQL expression and checks that every metric it
// selects exists.
func checkExpr(p promql.Parser, known map[string]bool, where, expr string) []error {
	e, err := p.ParseExpr(grafanaVars.Replace(expr))
	if err != nil {
		return []error{fmt.Errorf("%s: %w", where, err)}
	}
	var errs []error
	for _, name := range metricsOf(e) {
		base := name
		for _, suf := range []string{"_bucket", "_sum", "_count"} {
			if b, ok := strings.CutSuffix(name, suf); ok && known[b] {
				base = b
			}
		}
		if !known[base] {
			errs = append(errs, fmt.Errorf("%s: metric %s is not exported by danmaku", where, name))
		}
	}
	return errs
}

// checkAlerts validates a rule file with Prometheus's rule parser (the
// one `promtool check rules` uses) and checks the metrics of every rule
// and that every alert has a severity, a summary and a for or a window
// that makes one blip not page.
func checkAlerts(path string, known map[string]bool) []error {
	p := promql.NewParser(promql.Options{})
	groups, errs := rulefmt.ParseFile(path, false, model.UTF8Validation, p, slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		return errs
	}
	n := 0
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			n++
			where := fmt.Sprintf("%s: rule %s", path, r.Alert+r.Record)
			errs = append(errs, checkExpr(p, known, where, r.Expr)...)
			if r.Alert != "" && (r.Labels["severity"] == "" || r.Annotations["summary"] == "") {
				errs = append(errs, fmt.Errorf("%s: alert without a severity label or a summary", where))
			}
		}
	}
	if n == 0 {
		errs = append(errs, fmt.Errorf("%s: no rules", path))
	}
	return errs
}

// grafanaPanel is the part of a Grafana panel the checks read.
type grafanaPanel struct {
	ID         int    `json:"id"`
	Type       string `json:"type"`
	Title      string `json:"title"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	GridPos struct{ H, W, X, Y int } `json:"gridPos"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []grafanaPanel `json:"panels"`
}

// checkDashboard checks a Grafana dashboard: every panel has a title, a
// unique id, the datasource variable, a place on the 24-column grid that
// no other panel takes, and queries that parse and name existing metrics.
func checkDashboard(path string, known map[string]bool) []error {
	data, err := os.ReadFile(path)
	if err != nil {
		return []error{err}
	}
	var d struct {
		Title      string         `json:"title"`
		UID        string         `json:"uid"`
		Panels     []grafanaPanel `json:"panels"`
		Templating struct {
			List []struct{ Name, Type string } `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(data, &d); err != nil {
		return []error{fmt.Errorf("%s: %w", path, err)}
	}
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(path+": "+format, a...)) }
	if d.Title == "" || d.UID == "" {
		bad("no title or uid")
	}
	if !slices.ContainsFunc(d.Templating.List, func(v struct{ Name, Type string }) bool {
		return v.Name == "datasource" && v.Type == "datasource"
	}) {
		bad("no datasource variable")
	}
	p := promql.NewParser(promql.Options{})
	ids := map[int]bool{}
	type cell struct{ x, y int }
	taken := map[cell]string{}
	var all []grafanaPanel
	for _, pn := range d.Panels {
		all = append(all, pn)
		all = append(all, pn.Panels...) // a collapsed row's panels
	}
	queries := 0
	for _, pn := range all {
		if pn.Title == "" || ids[pn.ID] {
			bad("panel %d: no title, or its id is not unique", pn.ID)
		}
		ids[pn.ID] = true
		g := pn.GridPos
		if g.W <= 0 || g.H <= 0 || g.X < 0 || g.X+g.W > 24 {
			bad("panel %q: gridPos %+v is off the 24-column grid", pn.Title, g)
		}
		for x := g.X; x < g.X+g.W; x++ {
			for y := g.Y; y < g.Y+g.H; y++ {
				if other, ok := taken[cell{x, y}]; ok {
					bad("panel %q overlaps panel %q", pn.Title, other)
					x, y = g.X+g.W, g.Y+g.H
					continue
				}
				taken[cell{x, y}] = pn.Title
			}
		}
		if pn.Type == "row" {
			continue
		}
		if pn.Datasource == nil || pn.Datasource.UID != "${datasource}" {
			bad("panel %q does not use the datasource variable", pn.Title)
		}
		if len(pn.Targets) == 0 {
			bad("panel %q has no query", pn.Title)
		}
		for i, tg := range pn.Targets {
			queries++
			errs = append(errs, checkExpr(p, known, fmt.Sprintf("%s: panel %q query %d", path, pn.Title, i+1), tg.Expr)...)
		}
	}
	if queries == 0 {
		bad("no queries")
	}
	return errs
}

// TestOperatorFiles checks the shipped dashboard and alert rules, and that
// the checks reject the broken copies in deploy/testdata.
func TestOperatorFiles(t *testing.T) {
	known := exportedMetrics(t)
	for _, want := range []string{"danmaku_gateway_slow_consumer_closes_total", "danmaku_gateway_send_rejects_total",
		"danmaku_history_writer_buffered", "danmaku_logic_publish_errors_total", "process_open_fds", "go_goroutines"} {
		if !known[want] {
			t.Fatalf("metric %s not found in the code or the registry: the scan is broken (found %d)", want, len(known))
		}
	}
	for _, err := range checkAlerts(alertsFile, known) {
		t.Error(err)
	}
	for _, err := range checkDashboard(dashboardFile, known) {
		t.Error(err)
	}

	broken, _ := filepath.Glob("deploy/testdata/alerts-broken-*.yml")
	dashes, _ := filepath.Glob("deploy/testdata/grafana-broken-*.json")
	if len(broken) < 2 || len(dashes) < 2 {
		t.Fatalf("want broken alert and dashboard copies in deploy/testdata, got %v %v", broken, dashes)
	}
	for _, f := range broken {
		errs := checkAlerts(f, known)
		if len(errs) == 0 {
			t.Errorf("%s passes", f)
		}
		t.Logf("%s rejected: %v", f, errs)
	}
	for _, f := range dashes {
		errs := checkDashboard(f, known)
		if len(errs) == 0 {
			t.Errorf("%s passes", f)
		}
		t.Logf("%s rejected: %v", f, errs)
	}
}

// TestAlertsFire evaluates alert expressions of deploy/prometheus/alerts.yml
// with Prometheus's engine over synthetic series (15 s scrapes): each must
// fire in its failure mode and stay quiet in a healthy run. The "for"
// durations are not evaluated here, only the conditions.
func TestAlertsFire(t *testing.T) {
	groups, errs := rulefmt.ParseFile(alertsFile, false, model.UTF8Validation, promql.NewParser(promql.Options{}), slog.New(slog.DiscardHandler))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	exprs := map[string]string{}
	for _, g := range groups.Groups {
		for _, r := range g.Rules {
			exprs[r.Alert] = r.Expr
		}
	}
	// Counters below grow by N per 15 s scrape: 0+Nx80 is N/15 per second
	// for 20 minutes. Evaluated at 15 min.
	for _, c := range []struct {
		alert, name, series string
		fire                bool
	}{
		{"DanmakuAcksPaused", "logic stopped consuming", `
			danmaku_gateway_sends_total{instance="gw"} 0+150x80
			danmaku_logic_messages_in_total{instance="lg"} 0+150x40 6000x40`, true},
		{"DanmakuAcksPaused", "healthy", `
			danmaku_gateway_sends_total{instance="gw"} 0+150x80
			danmaku_logic_messages_in_total{instance="lg"} 0+150x80`, false},
		{"DanmakuAcksPaused", "no logic series at all", `
			danmaku_gateway_sends_total{instance="gw"} 0+150x80`, true},
		{"DanmakuIngestConsumerLag", "logic takes half, no gateway rejects yet", `
			danmaku_gateway_sends_total{instance="gw"} 0+300x80
			danmaku_logic_messages_in_total{instance="lg"} 0+150x80`, true},
		{"DanmakuIngestConsumerLag", "gateway rejects explain the difference", `
			danmaku_gateway_sends_total{instance="gw"} 0+300x80
			danmaku_gateway_send_rejects_total{instance="gw",code="rate_limited"} 0+150x80
			danmaku_logic_messages_in_total{instance="lg"} 0+150x80`, false},
		{"DanmakuDispatchConsumerLag", "dispatch behind", `
			danmaku_logic_messages_accepted_total{instance="lg"} 0+300x80
			danmaku_dispatch_messages_total{instance="dp"} 0+100x80`, true},
		{"DanmakuDispatchConsumerLag", "thinning explains the difference", `
			danmaku_logic_messages_accepted_total{instance="lg"} 0+300x80
			danmaku_dispatch_messages_total{instance="dp"} 0+100x80
			danmaku_dispatch_thinned_total{instance="dp"} 0+200x80`, false},
		{"DanmakuHistoryWriterStuck", "store down", `
			danmaku_history_writer_buffered{instance="lg"} 8000x80
			danmaku_history_writer_inserted_total{instance="lg"} 0+150x40 6000x40`, true},
		{"DanmakuHistoryWriterStuck", "storing", `
			danmaku_history_writer_buffered{instance="lg"} 200x80
			danmaku_history_writer_inserted_total{instance="lg"} 0+150x80`, false},
		{"DanmakuHistoryWriterBehind", "writer at half speed", `
			danmaku_logic_messages_accepted_total{instance="lg"} 0+300x80
			danmaku_history_writer_inserted_total{instance="lg"} 0+150x80`, true},
		{"DanmakuHistoryWriterBehind", "keeping up", `
			danmaku_logic_messages_accepted_total{instance="lg"} 0+300x80
			danmaku_history_writer_inserted_total{instance="lg"} 0+300x80`, false},
		{"DanmakuSlowConsumerCloses", "one a second", `
			danmaku_gateway_slow_consumer_closes_total{instance="gw"} 0+15x80`, true},
		{"DanmakuSlowConsumerCloses", "a few a minute", `
			danmaku_gateway_slow_consumer_closes_total{instance="gw"} 0+1x80`, false},
		{"DanmakuGatewayLoopLate", "passes of about a second", `
			danmaku_gateway_loop_delay_seconds_bucket{instance="gw",le="0.5"} 0+1x80
			danmaku_gateway_loop_delay_seconds_bucket{instance="gw",le="1"} 0+5x80
			danmaku_gateway_loop_delay_seconds_bucket{instance="gw",le="+Inf"} 0+5x80`, true},
		{"DanmakuGatewayLoopLate", "passes in time, one slow in a hundred", `
			danmaku_gateway_loop_delay_seconds_bucket{instance="gw",le="0.05"} 0+1980x80
			danmaku_gateway_loop_delay_seconds_bucket{instance="gw",le="0.5"} 0+1999x80
			danmaku_gateway_loop_delay_seconds_bucket{instance="gw",le="1"} 0+2000x80
			danmaku_gateway_loop_delay_seconds_bucket{instance="gw",le="+Inf"} 0+2000x80`, false},
		{"DanmakuLogicPublishErrors", "failing", `
			danmaku_logic_publish_errors_total{instance="lg"} 0+3x80`, true},
		{"DanmakuLogicPublishErrors", "recovered", `
			danmaku_logic_publish_errors_total{instance="lg"} 0+3x20 60x60`, false},
		{"DanmakuFileDescriptorsNearLimit", "gateway near its limit", `
			process_open_fds{instance="gw",job="danmaku"} 19000x80
			process_max_fds{instance="gw",job="danmaku"} 20000x80
			danmaku_gateway_connections{instance="gw",job="danmaku"} 18000x80`, true},
		{"DanmakuFileDescriptorsNearLimit", "another process near its limit", `
			process_open_fds{instance="db",job="other"} 19000x80
			process_max_fds{instance="db",job="other"} 20000x80
			danmaku_gateway_connections{instance="gw",job="danmaku"} 18000x80`, false},
	} {
		t.Run(c.alert+"/"+c.name, func(t *testing.T) {
			expr, ok := exprs[c.alert]
			if !ok {
				t.Fatalf("no alert %s", c.alert)
			}
			st := loadSeries(t, 15*time.Second, c.series)
			eng := promengine.NewEngine(promengine.EngineOpts{MaxSamples: 1e6, Timeout: time.Minute, LookbackDelta: 5 * time.Minute})
			q, err := eng.NewInstantQuery(context.Background(), st, nil, expr, time.Unix(0, 0).Add(15*time.Minute))
			if err != nil {
				t.Fatal(err)
			}
			res := q.Exec(context.Background())
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			v, err := res.Vector()
			if err != nil {
				t.Fatal(err)
			}
			if fired := len(v) > 0; fired != c.fire {
				t.Errorf("%s fired=%v, want %v (result %v)", c.alert, fired, c.fire, v)
			}
		})
	}
}

// memSeries is an in-memory storage.Queryable for TestAlertsFire: the
// series of a promtool-style description, one per line ("name{labels}
// 0+150x80": 81 samples from 0 growing by 150), a sample every step from
// time 0.
type memSeries []storage.Series

func loadSeries(t *testing.T, step time.Duration, desc string) memSeries {
	t.Helper()
	p := promql.NewParser(promql.Options{})
	var out memSeries
	for _, line := range strings.Split(desc, "\n") {
		if line = strings.TrimSpace(line); line == "" {
			continue
		}
		lbls, vals, err := p.ParseSeriesDesc(line)
		if err != nil {
			t.Fatalf("series %q: %v", line, err)
		}
		var ss []chunks.Sample
		for i, v := range vals {
			if !v.Omitted {
				ss = append(ss, fsample{t: int64(i) * step.Milliseconds(), f: v.Value})
			}
		}
		out = append(out, storage.NewListSeries(lbls, ss))
	}
	return out
}

func (m memSeries) Querier(int64, int64) (storage.Querier, error) { return m, nil }

func (m memSeries) Select(_ context.Context, _ bool, _ *storage.SelectHints, ms ...*labels.Matcher) storage.SeriesSet {
	var sel []storage.Series
	for _, s := range m {
		if slices.IndexFunc(ms, func(x *labels.Matcher) bool { return !x.Matches(s.Labels().Get(x.Name)) }) < 0 {
			sel = append(sel, s)
		}
	}
	slices.SortFunc(sel, func(a, b storage.Series) int { return labels.Compare(a.Labels(), b.Labels()) })
	return &seriesSet{list: sel, i: -1}
}

func (memSeries) LabelValues(context.Context, string, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (memSeries) LabelNames(context.Context, *storage.LabelHints, ...*labels.Matcher) ([]string, annotations.Annotations, error) {
	return nil, nil, nil
}

func (memSeries) Close() error { return nil }

type seriesSet struct {
	list []storage.Series
	i    int
}

func (s *seriesSet) Next() bool                        { s.i++; return s.i < len(s.list) }
func (s *seriesSet) At() storage.Series                { return s.list[s.i] }
func (s *seriesSet) Err() error                        { return nil }
func (s *seriesSet) Warnings() annotations.Annotations { return nil }

// fsample is a float sample.
type fsample struct {
	t int64
	f float64
}

func (s fsample) T() int64                      { return s.t }
func (s fsample) ST() int64                     { return 0 }
func (s fsample) F() float64                    { return s.f }
func (s fsample) H() *histogram.Histogram       { return nil }
func (s fsample) FH() *histogram.FloatHistogram { return nil }
func (s fsample) Type() chunkenc.ValueType      { return chunkenc.ValFloat }
func (s fsample) Copy() chunks.Sample           { return s }
