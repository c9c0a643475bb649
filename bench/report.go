package bench

import (
	"fmt"
	"html/template"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// series is one line of a chart. A NaN in Y is a second without a sample:
// the line breaks there instead of dropping to the floor.
type series struct {
	Name  string
	Color string
	X, Y  []float64
}

// mark is a labelled vertical line on a time chart (a phase change).
type mark struct {
	X     float64
	Label string
}

// Chart geometry: the plot area is [plotL, chartW-plotR] × [plotT,
// chartH-plotB]; the x tick labels and the legend sit below it, the
// title, the phase labels and the clipping note above it.
const (
	chartW, chartH             = 860.0, 290.0
	plotL, plotR, plotT, plotB = 70.0, 20.0, 36.0, 58.0
)

// clipQuantile and clipFactor make the linear y axis robust to a spike:
// the axis ends at the nice value above clipFactor × the clipQuantile of
// all values when the largest value is beyond it; the points above are
// drawn at the top with a ▲ that carries their value.
const (
	clipQuantile = 0.9
	clipFactor   = 1.5
)

// svgLines draws line series on shared axes as an inline SVG: x in
// seconds, y linear (robust to spikes) or logarithmic (1-2-5 ticks).
func svgLines(title, yLabel string, ss []series, logY bool, marks []mark) template.HTML {
	const w, h, l, r, t = chartW, chartH, plotL, plotR, plotT
	bottom := h - plotB
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="100%%" font-family="system-ui,sans-serif">`, w, h)
	fmt.Fprintf(&sb, `<text class="title" x="%.0f" y="18" font-weight="bold">%s</text>`, l, template.HTMLEscapeString(title))
	minX, maxX, vals := chartExtent(ss, logY)
	if len(vals) == 0 {
		fmt.Fprintf(&sb, `<text x="%.0f" y="%.0f">no data</text></svg>`, w/2-30, h/2)
		return template.HTML(sb.String())
	}
	if maxX == minX {
		maxX = minX + 1
	}
	fmt.Fprintf(&sb, `<rect class="plot" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#bbb"/>`, l, t, w-r-l, bottom-t)
	ticks, fy, top := chartYAxis(vals, logY)
	fx := func(x float64) float64 { return l + (w-l-r)*(x-minX)/(maxX-minX) }
	drawAxes(&sb, ticks, fy, fx, minX, maxX, yLabel)
	drawMarks(&sb, marks, fx, minX, maxX)
	drawSeries(&sb, ss, logY, fx, fy, top)
	drawLegend(&sb, ss)
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String())
}

// chartExtent returns the x range of all series and the y values that can
// be drawn (finite, and positive on a log axis).
func chartExtent(ss []series, logY bool) (minX, maxX float64, vals []float64) {
	minX, maxX = math.Inf(1), math.Inf(-1)
	for _, s := range ss {
		for i := range s.X {
			minX, maxX = math.Min(minX, s.X[i]), math.Max(maxX, s.X[i])
			if y := s.Y[i]; !math.IsNaN(y) && !math.IsInf(y, 0) && (!logY || y > 0) {
				vals = append(vals, y)
			}
		}
	}
	return minX, maxX, vals
}

// chartYAxis returns the y axis: its ticks, the function placing a value
// and its top, above which values are clipped (+Inf on a log axis).
func chartYAxis(vals []float64, logY bool) (ticks []float64, fy func(float64) float64, top float64) {
	const t, bottom = plotT, chartH - plotB
	top = math.Inf(1)
	if logY {
		lo, hi := slices.Min(vals), slices.Max(vals)
		ticks = logTicks(lo, hi)
		llo, lhi := math.Log10(ticks[0]), math.Log10(ticks[len(ticks)-1])
		fy = func(y float64) float64 { return bottom - (bottom-t)*(math.Log10(y)-llo)/(lhi-llo) }
		return ticks, fy, top
	}
	hi := slices.Max(vals)
	sorted := slices.Sorted(slices.Values(vals))
	if q := sorted[int(clipQuantile*float64(len(sorted)-1))]; q > 0 && hi > clipFactor*q {
		hi = clipFactor * q
	}
	if hi <= 0 {
		hi = 1
	}
	step := niceStep(hi / 4)
	top = math.Ceil(hi/step-1e-9) * step
	for v := 0.0; v <= top+step/2; v += step {
		ticks = append(ticks, v)
	}
	fy = func(y float64) float64 { return bottom - (bottom-t)*math.Min(y, top)/top }
	return ticks, fy, top
}

// drawAxes writes the y grid lines with their labels, the x ticks in
// seconds and the rotated y axis label.
func drawAxes(sb *strings.Builder, ticks []float64, fy, fx func(float64) float64, minX, maxX float64, yLabel string) {
	const w, l, r, t, bottom = chartW, plotL, plotR, plotT, chartH - plotB
	for _, v := range ticks {
		y := fy(v)
		fmt.Fprintf(sb, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#e3e3e3"/><text class="ytick" x="%.0f" y="%.1f" font-size="11" text-anchor="end">%s</text>`,
			l, w-r, y, y, l-5, y+4, tickLabel(v))
	}
	xstep := niceStep((maxX - minX) / 6)
	for x := math.Ceil(minX/xstep) * xstep; x <= maxX+1e-9; x += xstep {
		fmt.Fprintf(sb, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#999"/><text class="xtick" x="%.1f" y="%.0f" font-size="11" text-anchor="middle">%ss</text>`,
			fx(x), fx(x), bottom, bottom+4, fx(x), bottom+16, tickLabel(x))
	}
	fmt.Fprintf(sb, `<text x="14" y="%.0f" font-size="11" transform="rotate(-90 14 %.0f)" text-anchor="middle">%s</text>`,
		(t+bottom)/2, (t+bottom)/2, template.HTMLEscapeString(yLabel))
}

// drawMarks writes the labelled vertical phase lines inside the x range.
func drawMarks(sb *strings.Builder, marks []mark, fx func(float64) float64, minX, maxX float64) {
	const w, r, t, bottom = chartW, plotR, plotT, chartH - plotB
	for _, m := range marks {
		if m.X < minX || m.X > maxX {
			continue
		}
		x, lx, anchor := fx(m.X), fx(m.X)+3, "start"
		if x > w-r-60 { // near the right edge: label to the left of the line
			lx, anchor = x-3, "end"
		}
		fmt.Fprintf(sb, `<line class="mark" x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#888" stroke-dasharray="2,3"/><text x="%.1f" y="%.0f" font-size="10" fill="#666" text-anchor="%s">%s</text>`,
			x, x, t, bottom, lx, t-4, anchor, template.HTMLEscapeString(m.Label))
	}
}

// drawSeries writes the lines, broken at seconds without a sample, the
// clipped points above top and the note that counts them.
func drawSeries(sb *strings.Builder, ss []series, logY bool, fx, fy func(float64) float64, top float64) {
	const w, r, t = chartW, plotR, plotT
	var clipped int
	var clippedMax float64
	for _, s := range ss {
		var pts strings.Builder
		flush := func() {
			if pts.Len() > 0 {
				fmt.Fprintf(sb, `<polyline fill="none" stroke="%s" stroke-width="1.5" stroke-linejoin="round" points="%s"/>`, s.Color, strings.TrimSpace(pts.String()))
				pts.Reset()
			}
		}
		for i := range s.X {
			y := s.Y[i]
			if math.IsNaN(y) || math.IsInf(y, 0) || (logY && y <= 0) {
				flush()
				continue
			}
			fmt.Fprintf(&pts, "%.1f,%.1f ", fx(s.X[i]), fy(y))
		}
		flush()
		for i := range s.X {
			if y := s.Y[i]; y > top {
				clipped++
				clippedMax = math.Max(clippedMax, y)
				x := fx(s.X[i])
				fmt.Fprintf(sb, `<path class="clipped" d="M%.1f,%.1f l-4,7 h8 z" fill="%s"><title>%s at %.0fs: %s (above the axis)</title></path>`,
					x, t, s.Color, template.HTMLEscapeString(s.Name), s.X[i], tickLabel(y))
			}
		}
	}
	if clipped > 0 {
		fmt.Fprintf(sb, `<text class="clipnote" x="%.0f" y="18" font-size="11" text-anchor="end" fill="#555">▲ %d point%s above %s drawn at the top (max %s)</text>`,
			w-r, clipped, plural(clipped), tickLabel(top), tickLabel(clippedMax))
	}
}

// drawLegend writes the legend: one row under the x axis, outside the plot.
func drawLegend(sb *strings.Builder, ss []series) {
	const h, l = chartH, plotL
	x := l
	sb.WriteString(`<g class="legend">`)
	for _, s := range ss {
		fmt.Fprintf(sb, `<rect x="%.0f" y="%.0f" width="10" height="10" fill="%s"/><text x="%.0f" y="%.0f" font-size="12">%s</text>`,
			x, h-20, s.Color, x+14, h-11, template.HTMLEscapeString(s.Name))
		x += 14 + 7*float64(len([]rune(s.Name))) + 22
	}
	sb.WriteString(`</g>`)
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// niceStep returns the 1-2-5 × 10^k step nearest above raw.
func niceStep(raw float64) float64 {
	if raw <= 0 || math.IsNaN(raw) || math.IsInf(raw, 0) {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= raw*(1-1e-9) {
			return m * p
		}
	}
	return 10 * p
}

// logTicks returns the ticks of a log axis over [lo, hi] (both > 0): the
// 1-2-5 values from the one at or below lo to the one at or above hi, or
// only the powers of ten when that makes more than 10 ticks. There are
// always at least two, so the axis always reads.
func logTicks(lo, hi float64) []float64 {
	var all []float64
	for e := math.Floor(math.Log10(lo)) - 1; e <= math.Ceil(math.Log10(hi))+1; e++ {
		for _, m := range []float64{1, 2, 5} {
			all = append(all, m*math.Pow(10, e))
		}
	}
	first, last := 0, len(all)-1
	for i, v := range all {
		if v <= lo*(1+1e-9) {
			first = i
		}
	}
	for i := len(all) - 1; i >= 0; i-- {
		if all[i] >= hi*(1-1e-9) {
			last = i
		}
	}
	if last <= first {
		last = first + 1
	}
	ticks := all[first : last+1]
	if len(ticks) > 10 {
		var decades []float64
		lo10 := math.Pow(10, math.Floor(math.Log10(ticks[0])))
		for v := lo10; v < ticks[len(ticks)-1]*10; v *= 10 {
			decades = append(decades, v)
			if v >= ticks[len(ticks)-1] {
				break
			}
		}
		ticks = decades
	}
	return ticks
}

// tickLabel prints an axis value compactly: 0.2, 5, 250, 2.5k, 1.2M.
func tickLabel(v float64) string {
	switch a := math.Abs(v); {
	case a >= 1e6:
		return strconvG(v/1e6) + "M"
	case a >= 1e4:
		return strconvG(v/1e3) + "k"
	}
	return strconvG(v)
}

func strconvG(v float64) string { return strconv.FormatFloat(math.Round(v*1000)/1000, 'g', 4, 64) }

// svgHist draws the latency histogram as bars on a log-scale x axis.
func svgHist(h *Hist) template.HTML {
	const w, ht, l, r, t, b = chartW, chartH - 20, plotL, plotR, plotT, 36.0
	bars := h.Bars(60)
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="100%%" font-family="system-ui,sans-serif"><text class="title" x="%.0f" y="18" font-weight="bold">latency histogram (send → viewer, log scale)</text>`, w, ht, l)
	if len(bars) == 0 {
		fmt.Fprintf(&sb, `<text x="%.0f" y="%.0f">no data</text></svg>`, w/2-30, ht/2)
		return template.HTML(sb.String())
	}
	fmt.Fprintf(&sb, `<rect class="plot" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#bbb"/>`, l, t, w-r-l, ht-b-t)
	ticks := logTicks(float64(bars[0].Low)+1, float64(bars[len(bars)-1].High)+1)
	lo, hi := math.Log10(ticks[0]), math.Log10(ticks[len(ticks)-1])
	var maxC uint64
	for _, br := range bars {
		maxC = max(maxC, br.Count)
	}
	fx := func(v float64) float64 { return l + (w-l-r)*(math.Log10(v+1)-lo)/(hi-lo) }
	step := niceStep(float64(maxC) / 4)
	topC := math.Ceil(float64(maxC)/step) * step
	fy := func(c float64) float64 { return ht - b - (ht-t-b)*c/topC }
	for c := 0.0; c <= topC+step/2; c += step {
		fmt.Fprintf(&sb, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#e3e3e3"/><text class="ytick" x="%.0f" y="%.1f" font-size="11" text-anchor="end">%s</text>`,
			l, w-r, fy(c), fy(c), l-5, fy(c)+4, tickLabel(c))
	}
	fmt.Fprintf(&sb, `<text x="14" y="%.0f" font-size="11" transform="rotate(-90 14 %.0f)" text-anchor="middle">samples</text>`, (t+ht-b)/2, (t+ht-b)/2)
	for _, br := range bars {
		x0, x1 := fx(float64(br.Low)), fx(float64(br.High)+1)
		y := fy(float64(br.Count))
		fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#4a78c2"><title>%s–%s: %d</title></rect>`,
			x0, y, math.Max(x1-x0-0.5, 0.5), ht-b-y, usLabel(br.Low), usLabel(br.High), br.Count)
	}
	for _, v := range ticks {
		x := fx(v - 1)
		fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#999"/><text class="xtick" x="%.1f" y="%.0f" font-size="11" text-anchor="middle">%s</text>`,
			x, x, ht-b, ht-b+4, x, ht-b+16, usLabel(uint64(v)))
	}
	// Quantile lines, labelled above the plot; a label that would run into
	// the previous one moves up a line.
	lastX, row := math.Inf(-1), 0
	for _, q := range []struct {
		n string
		v float64
	}{{"p50", 0.5}, {"p99", 0.99}, {"p999", 0.999}} {
		x := fx(float64(h.Quantile(q.v)))
		if x-lastX < 34 {
			row++
		} else {
			row = 0
		}
		lastX = x
		fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#c33" stroke-dasharray="3,3"/><text class="qlabel" x="%.1f" y="%.0f" font-size="11" fill="#c33" text-anchor="middle">%s</text>`,
			x, x, t, ht-b, x, t-4-11*float64(row), q.n)
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String())
}

func usLabel(us uint64) string {
	switch {
	case us >= 1e6:
		return fmt.Sprintf("%.3gs", float64(us)/1e6)
	case us >= 1e3:
		return fmt.Sprintf("%.3gms", float64(us)/1e3)
	}
	return fmt.Sprintf("%dµs", us)
}

var reportTmpl = template.Must(template.New("report").Funcs(template.FuncMap{
	"mib":   func(v int64) string { return humanBytes(v) },
	"human": human,
}).Parse(`<!doctype html>
<html><head><meta charset="utf-8"><title>danmaku bench {{.R.Name}}</title>
<style>body{font:14px system-ui,sans-serif;margin:24px;max-width:920px;color:#222}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:3px 8px;text-align:left}
th{background:#f3f3f3}code{background:#f3f3f3;padding:1px 4px}.bad{color:#b00;font-weight:bold}</style></head><body>
<h1>danmaku bench: {{.R.Scenario}} <small>{{.R.Name}}</small></h1>
<p>{{.R.Started}} · {{.R.Machine.CPU}} × {{.R.Machine.Cores}} · {{printf "%.0f" .R.Machine.MemGB}} GiB · {{.R.Machine.OS}} · {{.R.Machine.Go}} · open files {{.R.Machine.NoFile}} · load {{printf "%.2f" (index .R.Load 0)}} → {{printf "%.2f" (index .R.Load 1)}}</p>
<p><code>{{.R.Command}}</code></p>
<table>
<tr><th>connections</th><td>{{.R.Connected}} joined of {{.R.Viewers}} viewers + {{.R.Senders}} senders{{if .R.Failed}} <span class="bad">({{.R.Failed}} failures{{with .R.FailedBy}} {{.}}{{end}})</span>{{end}}, in {{printf "%.1f" .R.ConnectSecs}} s = {{printf "%.0f" .R.ConnectRate}}/s</td></tr>
<tr><th>connect (dial → joined)</th><td>p50 {{printf "%.1f" .R.ConnectLat.P50}} ms · p99 {{printf "%.1f" .R.ConnectLat.P99}} ms · max {{printf "%.1f" .R.ConnectLat.Max}} ms</td></tr>
<tr><th>published</th><td>{{.R.Published}} ({{.R.PublishErrors}} errors) over {{printf "%.1f" .R.TrafficSecs}} s</td></tr>
<tr><th>deliveries</th><td>{{.R.Deliveries}} of {{.R.Expected}} expected · {{human .R.DeliveriesPS}}/s</td></tr>
<tr><th>frames</th><td>{{.R.Frames}} ({{printf "%.1f" .R.MsgsPerFrame}} messages per frame, {{mib .R.Bytes}})</td></tr>
<tr><th>lost / duplicates</th><td {{if or .R.Lost .R.Dups}}class="bad"{{end}}>{{.R.Lost}} lost ({{.R.Gaps}} skipped seqs never filled, the rest not delivered by the end) / {{.R.Dups}} duplicates</td></tr>
<tr><th>latency send → viewer</th><td>p50 {{printf "%.2f" .R.Latency.P50}} ms · p90 {{printf "%.2f" .R.Latency.P90}} · p99 {{printf "%.2f" .R.Latency.P99}} · p999 {{printf "%.2f" .R.Latency.P999}} · max {{printf "%.2f" .R.Latency.Max}} ms ({{.R.Latency.Count}} samples)</td></tr>
<tr><th>gateway</th><td>pids {{.R.Gateway.PIDs}} · RSS {{mib .R.Gateway.RSSBefore}} → {{mib .R.Gateway.RSSConnected}} (peak {{mib .R.Gateway.RSSPeak}}) = {{printf "%.0f" .R.Gateway.BytesPerConn}} B/connection · {{printf "%.2f" .R.Gateway.CPUTraffic}} CPU-s in traffic = {{human .R.Gateway.DeliveriesPerCPUSecond}} deliveries/CPU-s · {{human .R.Gateway.HandshakesPerCPUSecond}} handshakes/CPU-s{{if .R.Gateway.IncludesPipeline}} (process also runs logic and dispatch){{end}}</td></tr>
<tr><th>harness</th><td>{{.R.Harness.Workers}} workers · {{printf "%.1f" .R.Harness.CPU}} CPU-s · RSS {{mib .R.Harness.RSS}} = {{printf "%.0f" .R.Harness.BytesPerConn}} B/connection · {{printf "%.2f" .R.Harness.CPUPerMillionDeliveries}} CPU-s per million deliveries</td></tr>
{{with .R.Storm}}<tr><th>storm</th><td>{{.Dropped}} dropped{{if .Restart}} (gateway restart){{end}} · {{.Resumed}} resumed · all resumed after {{printf "%.2f" .AllResumedAfter}} s · {{.Incomplete}} incomplete histories</td></tr>{{end}}
{{with .R.Send}}<tr><th>send</th><td>{{.Sent}} sent · {{.Acks}} acks ({{printf "%.0f" .AcksPS}}/s) · rejects {{.Rejects}} · ack p50 {{printf "%.1f" .AckLat.P50}} ms p99 {{printf "%.1f" .AckLat.P99}} ms</td></tr>{{end}}
</table>
{{range .R.Notes}}<p class="bad">{{.}}</p>{{end}}
{{.Lat}}
{{.Thr}}
{{.Pub}}
{{.Conns}}
{{.Cost}}
{{.Hist}}
<p>Latency is measured from the publisher's clock before the HTTP publish to each viewer's clock when the frame is parsed (same machine, same clock). Deliveries count distinct seqs per viewer; lost counts seqs up to the room's final seq a viewer never got; duplicates count seqs seen twice.</p>
</body></html>
`))

// WriteHTML writes the self-contained HTML report of r to path.
func (r *Result) WriteHTML(path string) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := reportTmpl.Execute(f, r.reportData()); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// reportData draws the charts of the report.
func (r *Result) reportData() any {
	var x []float64
	var p50, p99, mx, del, pub, open, failed, resumed, gcpu, hcpu []float64
	var marks []mark
	phase := ""
	for _, p := range r.Timeline {
		x = append(x, p.T)
		if p.Max <= 0 { // no latency sample this second (before traffic)
			p50, p99, mx = append(p50, math.NaN()), append(p99, math.NaN()), append(mx, math.NaN())
		} else {
			p50, p99, mx = append(p50, p.P50), append(p99, p.P99), append(mx, p.Max)
		}
		del, pub, open = append(del, p.Deliveries), append(pub, p.Published), append(open, float64(p.Open))
		gcpu, hcpu = append(gcpu, p.GatewayCPU*100), append(hcpu, p.HarnessCPU*100)
		failed, resumed = append(failed, float64(p.Failed)), append(resumed, float64(p.Resumed))
		if p.Phase != phase && p.Phase != "" {
			if phase != "" { // the first phase starts the chart: no line
				marks = append(marks, mark{p.T, p.Phase})
			}
			phase = p.Phase
		}
	}
	return struct {
		R                                *Result
		Lat, Thr, Pub, Conns, Cost, Hist template.HTML
	}{R: r,
		Lat: svgLines("latency over time (per second, log scale)", "ms", []series{{"p50", "#2a7", x, p50}, {"p99", "#c60", x, p99}, {"max", "#c33", x, mx}}, true, marks),
		Thr: svgLines("deliveries to viewers over time", "deliveries per second", []series{{"deliveries/s", "#4a78c2", x, del}}, false, marks),
		Pub: svgLines("messages published over time", "messages per second", []series{{"published/s", "#c60", x, pub}}, false, marks),
		Conns: svgLines("connections over time", "connections", []series{{"open", "#4a78c2", x, open},
			{"failed attempts (total)", "#c33", x, failed}, {"resumed (total)", "#2a7", x, resumed}}, false, marks),
		Cost: svgLines("CPU over time", "% of one core", []series{{"gateway", "#4a78c2", x, gcpu}, {"harness", "#c60", x, hcpu}}, false, marks),
		Hist: svgHist(HistFrom(r.LatencyHist)),
	}
}
