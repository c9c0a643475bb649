// Package model is danmaku's scale model: from a platform's shape (viewers,
// rooms and their popularity law, messages and their law, gateway size,
// partitions, thinning, compression, room affinity) and the unit costs
// measured on the bench machine (costs.json), it computes the gateways,
// logic workers, dispatch processes and brokers needed, the broker
// egress, each gateway's CPU split into writing to viewers and reading the
// bus, the hottest room's pass time and the p99 it implies, and which
// resource binds first. `danmaku bench model` runs it; docs/scaling.md
// reads its tables.
package model

import (
	"errors"
	"fmt"
	"math"
)

// Input is a platform's shape and its deployment choices. Zero values of
// the deployment fields take the defaults Validate names.
type Input struct {
	Name string
	// Viewers is the number of concurrent viewers (required, ≥ 1).
	Viewers float64
	// Rooms is the number of live rooms (required, ≥ 1).
	Rooms int
	// Zipf is the room popularity exponent: room k (from 1) holds viewers
	// ∝ k^-Zipf. 0 spreads them evenly.
	Zipf float64
	// Rate is the platform's accepted messages per second. When 0,
	// MsgsPerViewerMin sets it.
	Rate float64
	// MsgsPerViewerMin is accepted messages per viewer per minute, the
	// platform average (used when Rate is 0).
	MsgsPerViewerMin float64
	// RateExp is the message law: a room's rate ∝ its viewers^RateExp,
	// scaled so the rooms add up to Rate. Zero value means 1 (a room's
	// rate proportional to its viewers).
	RateExp float64
	// ThinBudget is each room's display budget (messages/s a viewer is
	// shown; dispatch thins past it). 0: no thinning.
	ThinBudget float64
	// Protected is the share of messages overload shedding never leaves
	// out (paid, highlight, system; a mod's, the streamer's or the
	// service's), 0..1: the gateway sheds only the rest.
	Protected float64
	// Deflate is the share of viewers with permessage-deflate, 0..1.
	Deflate float64
	// GatewayConns is the viewers one gateway holds at most. Zero value
	// means 19,680 (one process's open-file limit here).
	GatewayConns float64
	// GatewayCores is a gateway's cores, one event loop each. Zero value
	// means 2.
	GatewayCores int
	// Gateways fixes the gateway count; 0 sizes it (connections, CPU).
	Gateways int
	// Partitions is the dispatch (and ingest, accepted) partition count.
	// Zero value means 8 (the bus's default).
	Partitions int
	// Affinity is room-affine dispatch: gateways read only the partitions
	// of their rooms instead of every partition. "" or "off": every
	// gateway reads everything (the default); "room": the load balancer
	// hashes the room id, so a gateway holds ~rooms/gateways rooms in
	// random partitions; "partition": the load balancer routes by the
	// room's dispatch partition, so a gateway's rooms share few partitions.
	Affinity string
	// AffinitySlots is the fewest gateways the load balancer spreads a
	// room over under affinity (a router with two slots per room puts
	// every room on two gateways). Zero value means 1.
	AffinitySlots float64
	// AffinityHot is the router's viewers per slot of a hot room's own
	// (route.HotSlots; room-route.js's $room_viewers_per_slot): a room of
	// more viewers reaches the distinct gateways of its own slots, the
	// expected n·(1−(1−1/n)^slots) of n. 0: none.
	AffinityHot float64
	// SessionMin is how long a viewer stays, in minutes: handshakes/s =
	// Viewers / (60 × SessionMin). 0: no handshakes (a steady run).
	SessionMin float64
	// HeartbeatS is the silence after which a gateway pings a viewer. 0:
	// no pings (a run shorter than the heartbeat).
	HeartbeatS float64
	// FlushRate and MaxFlushMs are the gateway's flush pacing (a loop
	// waits n/FlushRate after writing to n viewers, at most MaxFlushMs).
	// Zero values mean 250,000 and 40.
	FlushRate, MaxFlushMs float64
	// ShedDelayMs and ShedFlushMs are the gateway's overload pacing: a
	// loop whose batches wait more than ShedDelayMs goes "wide" and
	// writes at most every ShedFlushMs (or every pass, if longer, up to
	// ShedDelayMs); still late with big frames, it sheds messages.
	// Zero values mean 500 and 250 (gateway.Config ShedDelay,
	// ShedFlushDelay).
	ShedDelayMs, ShedFlushMs float64
	// MinTickMs is dispatch's shortest merge window (dispatch.Config
	// MinTick, not a flag of the binary). Zero value means 5.
	MinTickMs float64
	// Target is the CPU utilisation the tiers are sized to. Zero value
	// means 0.6.
	Target float64
	// Replication is the bus's replication factor. Zero value means 3.
	Replication float64
	// Box describes one shared machine (the bench box) instead of a
	// deployment with a core per event loop; nil for a deployment.
	Box *Box
}

// Box is one machine that runs the gateways, the pipeline and (when
// Harness) the bench harness on the same cores.
type Box struct {
	// Cores of the machine.
	Cores float64
	// Load is the runnable threads of other work (uptime before the run).
	Load float64
	// Harness: the bench viewers read on these cores (harness_frame_us).
	Harness bool
	// DurationS is the traffic phase: a saturated pipeline's backlog
	// after it sets the p99.
	DurationS float64
}

// withDefaults returns in with the zero deployment fields set.
func (in Input) withDefaults() Input {
	def := func(p *float64, v float64) {
		if *p == 0 {
			*p = v
		}
	}
	def(&in.RateExp, 1)
	def(&in.GatewayConns, 19680)
	def(&in.FlushRate, 250000)
	def(&in.MaxFlushMs, 40)
	def(&in.ShedDelayMs, 500)
	def(&in.ShedFlushMs, 250)
	in.ShedFlushMs = min(in.ShedFlushMs, in.ShedDelayMs/2)
	def(&in.Target, 0.6)
	def(&in.MinTickMs, 5)
	def(&in.AffinitySlots, 1)
	def(&in.Replication, 3)
	if in.GatewayCores == 0 {
		in.GatewayCores = 2
	}
	if in.Affinity == "" {
		in.Affinity = "off"
	}
	if in.Partitions == 0 {
		in.Partitions = 8
	}
	if in.Rate == 0 {
		in.Rate = in.Viewers * in.MsgsPerViewerMin / 60
	}
	return in
}

// Validate reports the first field out of range, by its flag's name.
func (in Input) Validate() error {
	bad := func(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }
	for _, f := range []struct {
		name string
		v    float64
	}{{"viewers", in.Viewers}, {"zipf", in.Zipf}, {"rate", in.Rate},
		{"msgs-per-viewer-min", in.MsgsPerViewerMin}, {"rate-exp", in.RateExp}, {"thin-budget", in.ThinBudget},
		{"deflate", in.Deflate}, {"protected", in.Protected}, {"gateway-conns", in.GatewayConns}, {"session-min", in.SessionMin},
		{"heartbeat", in.HeartbeatS}, {"flush-rate", in.FlushRate}, {"max-flush-ms", in.MaxFlushMs}, {"shed-delay-ms", in.ShedDelayMs}, {"shed-flush-ms", in.ShedFlushMs},
		{"target", in.Target}, {"replication", in.Replication}, {"min-tick-ms", in.MinTickMs}, {"affinity-slots", in.AffinitySlots}, {"affinity-hot", in.AffinityHot}} {
		if bad(f.v) || f.v < 0 {
			return fmt.Errorf("model: --%s is %v, want a finite number ≥ 0", f.name, f.v)
		}
	}
	switch {
	case in.Viewers < 1:
		return errors.New("model: --viewers must be at least 1")
	case in.Rooms < 1:
		return errors.New("model: --rooms must be at least 1")
	case in.Rooms > 10_000_000:
		return fmt.Errorf("model: --rooms %d: at most 10,000,000", in.Rooms)
	case in.Rate == 0 && in.MsgsPerViewerMin == 0:
		return errors.New("model: give --rate or --msgs-per-viewer-min (a platform with no messages needs no model)")
	case in.Protected > 1:
		return fmt.Errorf("model: --protected %v is a share of messages, 0..1", in.Protected)
	case in.Deflate > 1:
		return fmt.Errorf("model: --deflate %v is a share of viewers, 0..1", in.Deflate)
	case in.Target > 1:
		return fmt.Errorf("model: --target %v is a CPU utilisation, at most 1", in.Target)
	case in.GatewayCores < 0 || in.Gateways < 0 || in.Partitions < 0:
		return errors.New("model: --gateway-cores, --gateways and --partitions must be ≥ 0")
	case in.Affinity != "" && in.Affinity != "off" && in.Affinity != "room" && in.Affinity != "partition":
		return fmt.Errorf("model: --affinity %q: want off, room or partition", in.Affinity)
	case in.GatewayConns != 0 && in.GatewayConns < 1:
		return errors.New("model: --gateway-conns must be at least 1")
	}
	if b := in.Box; b != nil && (bad(b.Cores) || b.Cores <= 0 || bad(b.Load) || b.Load < 0 || bad(b.DurationS) || b.DurationS < 0) {
		return fmt.Errorf("model: box: cores %v, load %v, duration %v: want cores > 0, the others ≥ 0", b.Cores, b.Load, b.DurationS)
	}
	return nil
}
