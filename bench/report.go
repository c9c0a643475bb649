package bench

import (
	"fmt"
	"html/template"
	"math"
	"os"
	"strings"
)

// series is one line of a chart.
type series struct {
	Name  string
	Color string
	X, Y  []float64
}

// svgLines draws line series on shared axes as an inline SVG.
func svgLines(title, yLabel string, ss []series, logY bool) template.HTML {
	const w, h, l, r, t, b = 860.0, 260.0, 70.0, 20.0, 28.0, 36.0
	var minX, maxX, maxY float64 = math.Inf(1), math.Inf(-1), 0
	minY := math.Inf(1)
	for _, s := range ss {
		for i := range s.X {
			minX, maxX = math.Min(minX, s.X[i]), math.Max(maxX, s.X[i])
			maxY = math.Max(maxY, s.Y[i])
			if s.Y[i] > 0 {
				minY = math.Min(minY, s.Y[i])
			}
		}
	}
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="100%%"><text x="%.0f" y="18" font-weight="bold">%s</text>`, w, h, l, template.HTMLEscapeString(title))
	if math.IsInf(minX, 1) || maxY <= 0 {
		sb.WriteString(`<text x="300" y="130">no data</text></svg>`)
		return template.HTML(sb.String())
	}
	if maxX == minX {
		maxX = minX + 1
	}
	fy := func(y float64) float64 { return h - b - (h-t-b)*y/maxY }
	if logY {
		lo, hi := math.Log10(math.Max(minY, 1e-3)), math.Log10(maxY)
		if hi <= lo {
			hi = lo + 1
		}
		fy = func(y float64) float64 {
			if y <= 0 {
				return h - b
			}
			return h - b - (h-t-b)*(math.Log10(y)-lo)/(hi-lo)
		}
		for e := math.Ceil(lo); e <= hi; e++ {
			y := fy(math.Pow(10, e))
			fmt.Fprintf(&sb, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" font-size="11" text-anchor="end">%g</text>`, l, w-r, y, y, l-4, y+4, math.Pow(10, e))
		}
	} else {
		for i := 0; i <= 4; i++ {
			v := maxY * float64(i) / 4
			y := fy(v)
			fmt.Fprintf(&sb, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#ddd"/><text x="%.0f" y="%.1f" font-size="11" text-anchor="end">%s</text>`, l, w-r, y, y, l-4, y+4, human(v))
		}
	}
	fx := func(x float64) float64 { return l + (w-l-r)*(x-minX)/(maxX-minX) }
	for i := 0; i <= 5; i++ {
		x := minX + (maxX-minX)*float64(i)/5
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.0f" font-size="11" text-anchor="middle">%.0fs</text>`, fx(x), h-b+16, x)
	}
	fmt.Fprintf(&sb, `<text x="12" y="%.0f" font-size="11" transform="rotate(-90 12 %.0f)" text-anchor="middle">%s</text>`, h/2, h/2, template.HTMLEscapeString(yLabel))
	for k, s := range ss {
		var pts strings.Builder
		for i := range s.X {
			fmt.Fprintf(&pts, "%.1f,%.1f ", fx(s.X[i]), fy(s.Y[i]))
		}
		fmt.Fprintf(&sb, `<polyline fill="none" stroke="%s" stroke-width="1.5" points="%s"/>`, s.Color, pts.String())
		fmt.Fprintf(&sb, `<rect x="%.0f" y="%d" width="10" height="10" fill="%s"/><text x="%.0f" y="%d" font-size="12">%s</text>`, w-r-150, 8+k*14, s.Color, w-r-136, 17+k*14, template.HTMLEscapeString(s.Name))
	}
	sb.WriteString(`</svg>`)
	return template.HTML(sb.String())
}

// svgHist draws the latency histogram as bars on a log-scale x axis.
func svgHist(h *Hist) template.HTML {
	const w, ht, l, r, t, b = 860.0, 260.0, 70.0, 20.0, 28.0, 36.0
	bars := h.Bars(60)
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 %.0f %.0f" width="100%%"><text x="%.0f" y="18" font-weight="bold">latency histogram (send → viewer, log scale)</text>`, w, ht, l)
	if len(bars) == 0 {
		sb.WriteString(`<text x="300" y="130">no data</text></svg>`)
		return template.HTML(sb.String())
	}
	lo, hi := math.Log10(float64(bars[0].Low)+1), math.Log10(float64(bars[len(bars)-1].High)+2)
	var maxC uint64
	for _, br := range bars {
		maxC = max(maxC, br.Count)
	}
	fx := func(v float64) float64 { return l + (w-l-r)*(math.Log10(v+1)-lo)/(hi-lo) }
	for _, br := range bars {
		x0, x1 := fx(float64(br.Low)), fx(float64(br.High)+1)
		y := ht - b - (ht-t-b)*float64(br.Count)/float64(maxC)
		fmt.Fprintf(&sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#4a78c2"><title>%s–%s: %d</title></rect>`,
			x0, y, math.Max(x1-x0-0.5, 0.5), ht-b-y, usLabel(br.Low), usLabel(br.High), br.Count)
	}
	for e := math.Ceil(lo); e <= hi; e++ {
		x := fx(math.Pow(10, e))
		fmt.Fprintf(&sb, `<text x="%.1f" y="%.0f" font-size="11" text-anchor="middle">%s</text>`, x, ht-b+16, usLabel(uint64(math.Pow(10, e))))
	}
	for _, q := range []struct {
		n string
		v float64
	}{{"p50", 0.5}, {"p99", 0.99}, {"p999", 0.999}} {
		x := fx(float64(h.Quantile(q.v)))
		fmt.Fprintf(&sb, `<line x1="%.1f" x2="%.1f" y1="%.0f" y2="%.0f" stroke="#c33" stroke-dasharray="3,3"/><text x="%.1f" y="%.0f" font-size="11" fill="#c33">%s</text>`, x, x, t, ht-b, x+2, t+10, q.n)
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
{{.Conns}}
{{.Cost}}
{{.Hist}}
<p>Latency is measured from the publisher's clock before the HTTP publish to each viewer's clock when the frame is parsed (same machine, same clock). Deliveries count distinct seqs per viewer; lost counts seqs up to the room's final seq a viewer never got; duplicates count seqs seen twice.</p>
</body></html>
`))

// WriteHTML writes the self-contained HTML report of r to path.
func (r *Result) WriteHTML(path string) error {
	var x []float64
	var p50, p99, mx, del, pub, open, failed, resumed, gcpu, hcpu []float64
	for _, p := range r.Timeline {
		x = append(x, p.T)
		p50, p99, mx = append(p50, p.P50), append(p99, p.P99), append(mx, p.Max)
		del, pub, open = append(del, p.Deliveries), append(pub, p.Published), append(open, float64(p.Open))
		gcpu, hcpu = append(gcpu, p.GatewayCPU*100), append(hcpu, p.HarnessCPU*100)
		failed, resumed = append(failed, float64(p.Failed)), append(resumed, float64(p.Resumed))
	}
	data := struct {
		R                           *Result
		Lat, Thr, Conns, Cost, Hist template.HTML
	}{R: r,
		Lat: svgLines("latency over time (per second)", "ms", []series{{"p50", "#2a7", x, p50}, {"p99", "#c60", x, p99}, {"max", "#c33", x, mx}}, true),
		Thr: svgLines("throughput over time", "per second", []series{{"deliveries/s", "#4a78c2", x, del}, {"published/s", "#c60", x, pub}}, false),
		Conns: svgLines("connections over time", "connections", []series{{"open", "#4a78c2", x, open},
			{"failed attempts (total)", "#c33", x, failed}, {"resumed (total)", "#2a7", x, resumed}}, false),
		Cost: svgLines("CPU over time", "% of one core", []series{{"gateway", "#4a78c2", x, gcpu}, {"harness", "#c60", x, hcpu}}, false),
		Hist: svgHist(HistFrom(r.LatencyHist)),
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if err := reportTmpl.Execute(f, data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
