package model

import "math"

// bucket is a run of rooms of similar size, each with the bucket's mean
// viewers and message rate (the tail of millions of rooms is summed in a
// few hundred buckets).
type bucket struct {
	n       float64 // rooms
	viewers float64 // each room's viewers
	rate    float64 // each room's accepted messages/s
	shown   float64 // each room's messages/s shown to a viewer (after thinning)
	first   int     // rank of the bucket's first room, from 1
}

// exactRanks are the head rooms kept one per bucket; past them a bucket
// spans ranks growing by bucketGrowth.
const (
	exactRanks   = 200
	bucketGrowth = 1.02
)

// rooms spreads in.Viewers over in.Rooms by the Zipf law and in.Rate over
// them by viewers^RateExp, thinned to ThinBudget. in has its defaults.
func rooms(in Input) []bucket {
	var h, hb float64 // Σ k^-s, Σ (k^-s)^β
	for k := 1; k <= in.Rooms; k++ {
		w := math.Pow(float64(k), -in.Zipf)
		h += w
		hb += math.Pow(w, in.RateExp)
	}
	var out []bucket
	for a := 1; a <= in.Rooms; {
		b := a + 1
		if a > exactRanks {
			b = max(a+1, int(float64(a)*bucketGrowth))
		}
		b = min(b, in.Rooms+1)
		var sv, sr float64
		for k := a; k < b; k++ {
			w := math.Pow(float64(k), -in.Zipf)
			sv += w
			sr += math.Pow(w, in.RateExp)
		}
		n := float64(b - a)
		bk := bucket{n: n, viewers: in.Viewers * sv / h / n, rate: in.Rate * sr / hb / n, first: a}
		bk.shown = bk.rate
		if in.ThinBudget > 0 {
			bk.shown = min(bk.rate, in.ThinBudget)
		}
		out = append(out, bk)
		a = b
	}
	return out
}

// tick is the merge window of a dispatch process that handles rate
// messages/s: minTick (5 ms by default), doubled while a window holds
// more than 256 messages, at most 50 ms or minTick if longer
// (dispatch.Config MinTick, GrowAt, MaxTick).
func tick(rate, minTick float64) float64 {
	t := minTick
	for t < 0.05 && rate*t > 256 {
		t *= 2
	}
	return min(t, max(0.05, minTick))
}

// recordsPerS is the dispatch records/s of a room of rate messages/s with
// merge window t: one per window that holds any of its messages
// (Poisson arrivals).
func recordsPerS(rate, t float64) float64 {
	return -math.Expm1(-rate*t) / t
}

// batchEnvelope is the bytes of a dispatch record besides its messages:
// {"op":"batch","room":"…","msgs":[…]} and Kafka's record overhead.
const batchEnvelope = 60
