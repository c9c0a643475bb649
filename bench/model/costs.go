package model

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
)

// Cost is one unit cost measured on the bench machine (or, where Source
// says so, assumed): its value, the command that measures it and when it
// was measured.
type Cost struct {
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	What     string  `json:"what"`
	Command  string  `json:"command"`
	Measured string  `json:"measured"`
	// Source says where the value comes from when it is not read straight
	// off the command's output (a fit of two runs, an assumption).
	Source string `json:"source,omitempty"`
}

// Costs are the unit costs by name (the keys of costs.json).
type Costs map[string]Cost

// costNames are the costs the model reads; a costs file must have them all.
var costNames = []string{
	"handshake_us", "ping_us", "write_us", "write_byte_ns",
	"read_record_us", "read_byte_ns", "decode_byte_ns",
	"logic_msg_us", "dispatch_msg_us", "broker_msg_us",
	"delivery_bytes", "deflate_ratio",
	"ingest_record_bytes", "accepted_record_bytes", "bus_compression",
	"broker_egress_mbs", "broker_ingress_mbs",
	"deflate_byte_ns", "pipeline_ms", "harness_frame_us", "harness_msg_us",
	"gateway_base_cores", "harness_base_cores", "loop_spread",
	"pipeline_base_cores", "broker_base_cores", "box_pass_eff", "box_write_wall_us",
}

//go:embed costs.json
var defaultCosts []byte

// DefaultCosts returns the unit costs of costs.json, the figures measured
// on the bench machine (TestDefaultCosts checks that they parse).
func DefaultCosts() (Costs, error) { return ParseCosts(defaultCosts) }

// LoadCosts reads a costs file in the format of costs.json.
func LoadCosts(path string) (Costs, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("model: costs: %w", err)
	}
	return ParseCosts(b)
}

// ParseCosts decodes and checks a costs file: every cost the model uses
// present, each a finite number ≥ 0 with its command and date.
func ParseCosts(b []byte) (Costs, error) {
	var c Costs
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("model: costs: %w", err)
	}
	for _, n := range costNames {
		v, ok := c[n]
		switch {
		case !ok:
			return nil, fmt.Errorf("model: costs: %q missing", n)
		case math.IsNaN(v.Value) || math.IsInf(v.Value, 0) || v.Value < 0:
			return nil, fmt.Errorf("model: costs: %q is %v, want a finite number ≥ 0", n, v.Value)
		case v.Command == "" || v.Measured == "":
			return nil, fmt.Errorf("model: costs: %q needs the command that measures it and the date", n)
		}
	}
	if r := c["deflate_ratio"].Value; r == 0 || r > 1 {
		return nil, fmt.Errorf("model: costs: deflate_ratio is %v, want 0 < ratio ≤ 1", r)
	}
	if r := c["loop_spread"].Value; r < 1 {
		return nil, fmt.Errorf("model: costs: loop_spread is %v, want ≥ 1 (a p99 over a p50)", r)
	}
	if r := c["bus_compression"].Value; r == 0 || r > 1 {
		return nil, fmt.Errorf("model: costs: bus_compression is %v, want 0 < ratio ≤ 1", r)
	}
	return c, nil
}

// v is the value of cost n (0 when absent; ParseCosts makes sure none is).
func (c Costs) v(n string) float64 { return c[n].Value }

// Print writes every cost with its unit, command and date.
func (c Costs) Print(w io.Writer) {
	names := make([]string, 0, len(c))
	for n := range c {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		x := c[n]
		fmt.Fprintf(w, "%-22s %10.4g %-12s %s\n", n, x.Value, x.Unit, x.What)
		fmt.Fprintf(w, "%22s measured %s: %s\n", "", x.Measured, x.Command)
		if x.Source != "" {
			fmt.Fprintf(w, "%22s source: %s\n", "", x.Source)
		}
	}
}
