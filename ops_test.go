package main

import (
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

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/rulefmt"
	promql "github.com/prometheus/prometheus/promql/parser"
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
	app, err := NewApp(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer app.closeBackends()
	mfs, err := app.reg.Gather()
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
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return names
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
