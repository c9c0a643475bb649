package model

import (
	"fmt"
	"io"
	"strings"
)

// row is one line of the table: its label and each output's value.
type row struct {
	label string
	value func(o *Output) string
}

func f0(v float64) string { return fmt.Sprintf("%.0f", v) }
func f1(v float64) string { return fmt.Sprintf("%.1f", v) }
func f2(v float64) string { return fmt.Sprintf("%.2f", v) }

// human writes counts as 1.2k, 3.4M.
func human(v float64) string {
	switch {
	case v >= 1e9:
		return fmt.Sprintf("%.1fG", v/1e9)
	case v >= 1e6:
		return fmt.Sprintf("%.1fM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%.0fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}

var rows = []row{
	{"viewers", func(o *Output) string { return human(o.In.Viewers) }},
	{"rooms (hottest: viewers)", func(o *Output) string {
		return fmt.Sprintf("%s (%s)", human(float64(o.In.Rooms)), human(o.HotViewers))
	}},
	{"accepted msg/s (hottest room)", func(o *Output) string { return fmt.Sprintf("%s (%s)", human(o.Rate), f0(o.HotRate)) }},
	{"deliveries/s", func(o *Output) string { return human(o.Deliveries) }},
	{"affinity, partitions", func(o *Output) string { return fmt.Sprintf("%s, %d", o.In.Affinity, o.In.Partitions) }},
	{"gateways (cores each)", func(o *Output) string { return fmt.Sprintf("%d (%d)", o.Gateways, o.In.GatewayCores) }},
	{"logic workers", func(o *Output) string { return fmt.Sprint(o.Logic) }},
	{"dispatch processes", func(o *Output) string { return fmt.Sprint(o.Dispatch) }},
	{"brokers", func(o *Output) string { return fmt.Sprint(o.Brokers) }},
	{"dispatch stream: records/s, MB/s", func(o *Output) string {
		return fmt.Sprintf("%s, %s", human(o.DispatchRecords), f1(o.DispatchMBs))
	}},
	{"rooms per gateway", func(o *Output) string { return human(o.RoomsPerGateway) }},
	{"gateway reads of the stream", func(o *Output) string { return fmt.Sprintf("%.1f %%", 100*o.ReadFraction) }},
	{"broker egress MB/s", func(o *Output) string { return f0(o.BrokerEgressMBs) }},
	{"gateway CPU, cores: write / read", func(o *Output) string { return fmt.Sprintf("%s / %s", f2(o.GW.Write), f2(o.GW.Read)) }},
	{"gateway CPU, cores: handshakes + pings", func(o *Output) string { return f2(o.GW.Handshake + o.GW.Ping) }},
	{"gateway CPU, cores: total", func(o *Output) string { return f2(o.GW.Total()) }},
	{"msgs per write", func(o *Output) string { return f1(o.MsgsPerWrite) }},
	{"hottest room: pass / loop cycle ms", func(o *Output) string { return fmt.Sprintf("%s / %s", f0(o.HotPassMs), f0(o.HotCycleMs)) }},
	{"hottest room: p50 / p99 ms", func(o *Output) string { return fmt.Sprintf("%s / %s", f0(o.P50Ms), f0(o.P99Ms)) }},
	{"hottest room: wide frames, shed", func(o *Output) string {
		w := "no"
		if o.Wide {
			w = "yes"
		}
		return fmt.Sprintf("%s, %.0f %%", w, 100*o.Shed)
	}},
	{"binds first", func(o *Output) string { return o.Binds }},
}

// Table writes one column per output (markdown when md) and then each
// output's notes.
func Table(w io.Writer, outs []*Output, md bool) {
	head := []string{""}
	for _, o := range outs {
		head = append(head, o.In.Name)
	}
	lines := [][]string{head}
	for _, r := range rows {
		l := []string{r.label}
		for _, o := range outs {
			l = append(l, r.value(o))
		}
		lines = append(lines, l)
	}
	writeLines(w, lines, md)
	for _, o := range outs {
		for _, n := range o.Notes {
			fmt.Fprintf(w, "%s: %s\n", o.In.Name, n)
		}
	}
}

// writeLines writes a table, its first line the head: markdown when md,
// else aligned columns.
func writeLines(w io.Writer, lines [][]string, md bool) {
	if md {
		for i, l := range lines {
			fmt.Fprintf(w, "| %s |\n", strings.Join(l, " | "))
			if i == 0 {
				fmt.Fprintf(w, "|%s\n", strings.Repeat(" --- |", len(l)))
			}
		}
		return
	}
	width := make([]int, len(lines[0]))
	for _, l := range lines {
		for i, c := range l {
			width[i] = max(width[i], len([]rune(c)))
		}
	}
	for _, l := range lines {
		for i, c := range l {
			fmt.Fprintf(w, "%-*s  ", width[i]+len(c)-len([]rune(c)), c)
		}
		fmt.Fprintln(w)
	}
}
