package bench

import (
	"flag"
	"fmt"
	"io"
	"math"
	"sort"
)

// Diff is the change of one metric between two results.
type Diff struct {
	Name      string
	A, B      float64
	Change    float64 // relative change (B-A)/|A|; ±Inf when A is 0
	Regressed bool
}

// Compare lists the metrics of a and b and marks those that got worse by
// more than threshold (a fraction: 0.1 = 10 %). A metric that is zero in a
// and positive in b regresses when lower is better (lost, dups, ...).
func Compare(a, b *Result, threshold float64) []Diff {
	ma, mb := a.Metrics(), b.Metrics()
	var names []string
	for k := range ma {
		if _, ok := mb[k]; ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	var out []Diff
	for _, n := range names {
		x, y := ma[n], mb[n]
		d := Diff{Name: n, A: x, B: y}
		switch {
		case x == y:
		case x == 0:
			d.Change = math.Copysign(math.Inf(1), y)
		default:
			d.Change = (y - x) / math.Abs(x)
		}
		worse := d.Change
		if !LowerIsBetter(n) {
			worse = -worse
		}
		d.Regressed = worse > threshold
		out = append(out, d)
	}
	return out
}

// compareCmd is `danmaku bench compare a.json b.json`.
func compareCmd(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench compare", flag.ContinueOnError)
	fs.SetOutput(stderr)
	th := fs.Float64("threshold", 0.10, "relative change that counts as a regression (0.10 = 10%)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 2 {
		return fmt.Errorf("bench compare: want two result files: compare [--threshold 0.1] a.json b.json")
	}
	a, err := ReadResult(fs.Arg(0))
	if err != nil {
		return err
	}
	b, err := ReadResult(fs.Arg(1))
	if err != nil {
		return err
	}
	if a.Scenario != b.Scenario {
		fmt.Fprintf(stdout, "note: comparing different scenarios (%s vs %s)\n", a.Scenario, b.Scenario)
	}
	fmt.Fprintf(stdout, "%-38s %14s %14s %9s\n", "metric", a.Name, b.Name, "change")
	bad := 0
	for _, d := range Compare(a, b, *th) {
		mark := ""
		if d.Regressed {
			mark = "  REGRESSED"
			bad++
		}
		ch := "="
		if d.Change != 0 {
			ch = fmt.Sprintf("%+.1f%%", d.Change*100)
		}
		fmt.Fprintf(stdout, "%-38s %14.4g %14.4g %9s%s\n", d.Name, d.A, d.B, ch, mark)
	}
	if bad > 0 {
		return fmt.Errorf("%w: %d metrics worse by more than %.0f%%", ErrRegressed, bad, *th*100)
	}
	fmt.Fprintf(stdout, "no regression beyond %.0f%%\n", *th*100)
	return nil
}
