package bench

import (
	"context"
	"encoding/xml"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// svgNode is an element of a rendered chart.
type svgNode struct {
	XMLName  xml.Name
	Attrs    []xml.Attr `xml:",any,attr"`
	Text     string     `xml:",chardata"`
	Children []svgNode  `xml:",any"`
}

func (n *svgNode) attr(name string) string {
	for _, a := range n.Attrs {
		if a.Name.Local == name {
			return a.Value
		}
	}
	return ""
}

func (n *svgNode) num(name string) float64 {
	v, _ := strconv.ParseFloat(n.attr(name), 64)
	return v
}

// all returns the elements under n (n included) that match f.
func (n *svgNode) all(f func(*svgNode) bool) []*svgNode {
	var out []*svgNode
	if f(n) {
		out = append(out, n)
	}
	for i := range n.Children {
		out = append(out, n.Children[i].all(f)...)
	}
	return out
}

func byClass(c string) func(*svgNode) bool {
	return func(n *svgNode) bool { return n.attr("class") == c }
}

func byTag(tag string) func(*svgNode) bool {
	return func(n *svgNode) bool { return n.XMLName.Local == tag }
}

// text returns the text of n and its children.
func (n *svgNode) text() string {
	s := n.Text
	for i := range n.Children {
		s += n.Children[i].text()
	}
	return s
}

// parseCharts parses every inline SVG of a report, keyed by its title.
func parseCharts(t *testing.T, html string) map[string]*svgNode {
	t.Helper()
	charts := map[string]*svgNode{}
	for rest := html; ; {
		i := strings.Index(rest, "<svg")
		if i < 0 {
			break
		}
		j := strings.Index(rest[i:], "</svg>")
		if j < 0 {
			t.Fatal("unterminated svg")
		}
		var n svgNode
		if err := xml.Unmarshal([]byte(rest[i:i+j+len("</svg>")]), &n); err != nil {
			t.Fatalf("chart is not well-formed SVG: %v", err)
		}
		titles := n.all(byClass("title"))
		if len(titles) != 1 {
			t.Fatalf("chart with %d titles", len(titles))
		}
		charts[titles[0].Text] = &n
		rest = rest[i+j:]
	}
	return charts
}

// syntheticResult is a run with 3 seconds of connecting (no latency
// samples), 15 of traffic with latency within one decade (8–45 ms) and one
// spike of deliveries, and 2 of drain.
func syntheticResult() *Result {
	r := &Result{Name: "synthetic", Scenario: "fanout", Load: [2]float64{0.1, 0.2}}
	for s := 1; s <= 20; s++ {
		p := Point{T: float64(s) + 0.2, Phase: "traffic", Open: 200}
		switch {
		case s <= 3:
			p.Phase = "connect"
			p.Open = int64(s * 60)
		case s >= 19:
			p.Phase = "drain"
		default:
			p.Deliveries, p.Published = 4000+float64(s%3)*50, 20
			p.P50, p.P99, p.Max = 8+float64(s%4), 20+float64(s%5)*4, 45
			p.GatewayCPU, p.HarnessCPU = 0.1, 0.08
		}
		if s == 12 {
			p.Deliveries = 40000 // one spike
		}
		r.Timeline = append(r.Timeline, p)
	}
	var h Hist
	for v := uint64(5000); v <= 40000; v += 100 {
		h.RecordN(v, 1+(40000-v)/1000)
	}
	r.LatencyHist = h.Data()
	return r
}

// TestReportCharts checks the rendered charts: a log axis with tick labels
// even over less than a decade, no latency drawn for seconds without
// samples, published/s on its own chart, a y axis that one spike does not
// set (the spike marked as clipped), and every legend outside its plot.
func TestReportCharts(t *testing.T) {
	r := syntheticResult()
	var sb strings.Builder
	if err := reportTmpl.Execute(&sb, r.reportData()); err != nil {
		t.Fatal(err)
	}
	charts := parseCharts(t, sb.String())
	get := func(prefix string) *svgNode {
		t.Helper()
		for title, n := range charts {
			if strings.HasPrefix(title, prefix) {
				return n
			}
		}
		t.Fatalf("no chart %q in %v", prefix, slices.Collect(func(yield func(string) bool) {
			for k := range charts {
				if !yield(k) {
					return
				}
			}
		}))
		return nil
	}
	ticks := func(n *svgNode, class string) []float64 {
		var vs []float64
		for _, tk := range n.all(byClass(class)) {
			s := strings.TrimSuffix(strings.TrimSuffix(tk.Text, "s"), "k")
			v, err := strconv.ParseFloat(s, 64)
			if err == nil && strings.HasSuffix(strings.TrimSuffix(tk.Text, "s"), "k") {
				v *= 1000
			}
			vs = append(vs, v)
		}
		return vs
	}

	lat := get("latency over time")
	if yt := ticks(lat, "ytick"); len(yt) < 3 || yt[0] > 8 || yt[len(yt)-1] < 45 {
		t.Errorf("latency axis ticks %v: want at least 3 labels spanning 8–45 ms", yt)
	}
	plot := lat.all(byClass("plot"))[0]
	floor := plot.num("y") + plot.num("height")
	npts := 0
	for _, pl := range lat.all(byTag("polyline")) {
		for _, pt := range strings.Fields(pl.attr("points")) {
			npts++
			if y, _ := strconv.ParseFloat(pt[strings.Index(pt, ",")+1:], 64); y >= floor-0.5 {
				t.Errorf("latency point %s drawn at the floor", pt)
			}
		}
	}
	if npts != 3*15 {
		t.Errorf("latency chart draws %d points, want 45 (3 series × 15 seconds with samples)", npts)
	}
	if marks := lat.all(byClass("mark")); len(marks) != 2 {
		t.Errorf("%d phase marks, want traffic and drain", len(marks))
	}

	del := get("deliveries")
	if yt := ticks(del, "ytick"); len(yt) < 3 || yt[len(yt)-1] < 4050 || yt[len(yt)-1] > 10000 {
		t.Errorf("deliveries axis %v: want its top near 4k, not set by the 40k spike", yt)
	}
	clipped := del.all(byClass("clipped"))
	if len(clipped) != 1 || !strings.Contains(clipped[0].text(), "40k") || len(del.all(byClass("clipnote"))) != 1 {
		t.Errorf("the spike is not marked as clipped: %d markers", len(clipped))
	}
	if strings.Contains(del.all(byClass("legend"))[0].text(), "published") {
		t.Error("published/s shares the deliveries chart")
	}
	pub := get("messages published")
	if yt := ticks(pub, "ytick"); len(yt) < 3 || yt[len(yt)-1] < 20 || yt[len(yt)-1] > 50 {
		t.Errorf("published axis %v: want its top near 20/s", yt)
	}

	hist := get("latency histogram")
	if xt := hist.all(byClass("xtick")); len(xt) < 3 {
		t.Errorf("histogram has %d x tick labels, want at least 3", len(xt))
	}

	for title, n := range charts {
		plot := n.all(byClass("plot"))
		if len(plot) != 1 {
			t.Errorf("%s: %d plot areas", title, len(plot))
			continue
		}
		bottom := plot[0].num("y") + plot[0].num("height")
		for _, g := range n.all(byClass("legend")) {
			for _, e := range g.Children {
				if e.num("y") <= bottom+16 { // below the x tick labels too
					t.Errorf("%s: legend %s at y=%v inside or against the plot (bottom %v)", title, e.XMLName.Local, e.num("y"), bottom)
				}
			}
		}
	}
}

// TestLogTicks checks the log axis ticks: 1-2-5 steps over a narrow range,
// decades over a wide one, at least two always.
func TestLogTicks(t *testing.T) {
	for _, c := range []struct {
		lo, hi float64
		want   []float64
	}{
		{8, 45, []float64{5, 10, 20, 50}},
		{10, 10, []float64{10, 20}},
		{0.5, 50000, []float64{0.1, 1, 10, 100, 1000, 10000, 100000}},
		{3, 900, []float64{2, 5, 10, 20, 50, 100, 200, 500, 1000}},
	} {
		got := logTicks(c.lo, c.hi)
		if len(got) != len(c.want) {
			t.Errorf("logTicks(%v, %v) = %v, want %v", c.lo, c.hi, got, c.want)
			continue
		}
		for i := range got {
			if math.Abs(got[i]-c.want[i]) > 1e-9*c.want[i] {
				t.Errorf("logTicks(%v, %v) = %v, want %v", c.lo, c.hi, got, c.want)
				break
			}
		}
	}
}

// TestReportScreenshot renders the synthetic report in headless Chromium
// and keeps the screenshot with the test's artifacts, for a person to look
// at.
func TestReportScreenshot(t *testing.T) {
	chromium := testenv.Chromium(t)
	dir := testenv.Artifacts(t)
	html := filepath.Join(dir, "bench-report.html")
	if err := syntheticResult().WriteHTML(html); err != nil {
		t.Fatal(err)
	}
	png := filepath.Join(dir, "bench-report.png")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := testenv.Run(t, ctx, dir, nil, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
		"--window-size=980,2400", "--screenshot="+png, "file://"+html); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(png)
	if err != nil || st.Size() < 10_000 {
		t.Fatalf("screenshot %s: %v (%d bytes)", png, err, sizeOf(st))
	}
	t.Logf("report %s, screenshot %s", html, png)
}

func sizeOf(st os.FileInfo) int64 {
	if st == nil {
		return 0
	}
	return st.Size()
}
