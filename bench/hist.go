package bench

import (
	"math"
	"math/bits"
	"sort"
)

// histSub is the number of linear sub-buckets per power of two: values are
// recorded with a relative error under 1/histSub (about 1.6 %).
const (
	histSubBits = 6
	histSub     = 1 << histSubBits
	histBuckets = (64 - histSubBits + 1) * histSub
)

// Hist is a log-linear histogram of non-negative integer values (the
// harness records microseconds). Values below 64 are exact; larger values
// fall into 64 linear sub-buckets per power of two, so every quantile is
// within 1.6 % of the true value. The zero value is empty and ready to use;
// a Hist is not safe for concurrent use.
type Hist struct {
	counts []uint64
	n      uint64
	max    uint64
	min    uint64
	sum    float64
}

func histIndex(v uint64) int {
	if v < histSub {
		return int(v)
	}
	e := bits.Len64(v) - histSubBits - 1
	return (e+1)*histSub + int(v>>uint(e)) - histSub
}

// histLow is the smallest value that maps to bucket i; histHigh the largest.
func histLow(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histSub - 1
	return uint64(i%histSub+histSub) << uint(e)
}

func histHigh(i int) uint64 {
	if i < histSub {
		return uint64(i)
	}
	e := i/histSub - 1
	return histLow(i) + (uint64(1) << uint(e)) - 1
}

// Record adds one value.
func (h *Hist) Record(v uint64) { h.RecordN(v, 1) }

// RecordN adds n occurrences of v.
func (h *Hist) RecordN(v, n uint64) {
	if n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
	}
	h.counts[histIndex(v)] += n
	if h.n == 0 || v < h.min {
		h.min = v
	}
	h.n += n
	if v > h.max {
		h.max = v
	}
	h.sum += float64(v) * float64(n)
}

// Count is the number of recorded values.
func (h *Hist) Count() uint64 { return h.n }

// Max is the largest recorded value (exact).
func (h *Hist) Max() uint64 { return h.max }

// Min is the smallest recorded value (exact), 0 when empty.
func (h *Hist) Min() uint64 { return h.min }

// Mean is the average of the recorded values, 0 when empty.
func (h *Hist) Mean() float64 {
	if h.n == 0 {
		return 0
	}
	return h.sum / float64(h.n)
}

// Quantile returns the value at quantile q in [0, 1]: the upper bound of the
// bucket holding it, capped at Max. It returns 0 when empty.
func (h *Hist) Quantile(q float64) uint64 {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(histHigh(i), h.max)
		}
	}
	return h.max
}

// Merge adds every value of o to h.
func (h *Hist) Merge(o *Hist) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, histBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	h.n += o.n
	h.max = max(h.max, o.max)
	h.sum += o.sum
}

// Reset empties h, keeping its storage.
func (h *Hist) Reset() {
	clear(h.counts)
	h.n, h.max, h.min, h.sum = 0, 0, 0, 0
}

// HistData is the sparse, JSON-friendly form of a Hist: Buckets holds
// [bucket index, count] pairs in increasing index order.
type HistData struct {
	Buckets [][2]uint64 `json:"buckets,omitempty"`
	Count   uint64      `json:"count"`
	Min     uint64      `json:"min"`
	Max     uint64      `json:"max"`
	Sum     float64     `json:"sum"`
}

// Data returns the sparse form of h.
func (h *Hist) Data() HistData {
	d := HistData{Count: h.n, Min: h.min, Max: h.max, Sum: h.sum}
	for i, c := range h.counts {
		if c != 0 {
			d.Buckets = append(d.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return d
}

// HistFrom rebuilds a Hist from its sparse form; bucket indexes out of range
// are dropped.
func HistFrom(d HistData) *Hist {
	h := &Hist{n: d.Count, min: d.Min, max: d.Max, sum: d.Sum}
	if d.Count > 0 {
		h.counts = make([]uint64, histBuckets)
	}
	for _, b := range d.Buckets {
		if b[0] < histBuckets && h.counts != nil {
			h.counts[b[0]] += b[1]
		}
	}
	return h
}

// Bar is one bucket range of a histogram for charts: values in [Low, High]
// occurred Count times.
type Bar struct {
	Low   uint64 `json:"low"`
	High  uint64 `json:"high"`
	Count uint64 `json:"count"`
}

// Bars returns the non-empty buckets of h, merged into at most n bars of
// roughly equal width on a log scale.
func (h *Hist) Bars(n int) []Bar {
	var bars []Bar
	for i, c := range h.counts {
		if c != 0 {
			bars = append(bars, Bar{Low: histLow(i), High: histHigh(i), Count: c})
		}
	}
	if len(bars) <= n || n <= 0 {
		return bars
	}
	lo, hi := math.Log2(float64(bars[0].Low)+1), math.Log2(float64(bars[len(bars)-1].High)+1)
	step := (hi - lo) / float64(n)
	out := make([]Bar, 0, n)
	for _, b := range bars {
		k := int((math.Log2(float64(b.Low)+1) - lo) / step)
		if len(out) > 0 && int((math.Log2(float64(out[len(out)-1].Low)+1)-lo)/step) == k {
			out[len(out)-1].High = b.High
			out[len(out)-1].Count += b.Count
			continue
		}
		out = append(out, b)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Low < out[j].Low })
	return out
}
