package model

// The platform laws of docs/scaling.md (sources and assumptions there):
// about 25 viewers per live room on average, room popularity Zipf with
// exponent 1, 0.2 accepted messages per viewer per minute (a danmaku-heavy
// audience, four times Twitch's 2020 chat average) with a room's rate ∝
// viewers^0.8 (big rooms chat less per viewer), a display budget of 50
// messages/s per room, half the viewers on deflate, 20-minute sessions,
// 30 s heartbeats; gateways of 8 cores holding up to 200,000 viewers.
func platform(name string, viewers float64, partitions int, affinity string) Input {
	return Input{Name: name, Viewers: viewers, Rooms: int(viewers / 25), Zipf: 1, MsgsPerViewerMin: 0.2,
		RateExp: 0.8, ThinBudget: 50, Deflate: 0.5, GatewayConns: 200000, GatewayCores: 8,
		Partitions: partitions, Affinity: affinity, SessionMin: 20, HeartbeatS: 30}
}

// box is the bench machine: 2 cores shared by everything; load is the
// other work on it, set with --box-load from uptime before a run.
func box(duration float64) *Box { return &Box{Cores: 2, Harness: true, DurationS: duration} }

// presets are the model's named inputs: the bench runs it is checked
// against (box-*) and the platform sizes of docs/scaling.md.
var presets = map[string]Input{
	// make bench-latency: 19,000 viewers of one room on one gateway, 100
	// msg/s, published by the service (never shed).
	"box-latency": {Name: "box-latency", Viewers: 19000, Rooms: 1, Rate: 100, Gateways: 1, GatewayCores: 2,
		GatewayConns: 19680, Protected: 1, Box: box(20)},
	// make bench-throughput: the same at 1000 msg/s.
	"box-throughput": {Name: "box-throughput", Viewers: 19000, Rooms: 1, Rate: 1000, Gateways: 1, GatewayCores: 2,
		GatewayConns: 19680, Protected: 1, Box: box(15)},
	// make bench-mixed: 100,000 viewers over 1,000 rooms (Zipf 1.1) on 6
	// gateways, about 400 msg/s offered: 200 by the service over HTTP,
	// 1,000 viewers sending 0.2 each.
	"box-mixed": {Name: "box-mixed", Viewers: 100000, Rooms: 1000, Zipf: 1.1, Rate: 400, Gateways: 6, GatewayCores: 2,
		GatewayConns: 19680, Protected: 0.5, Box: box(20)},
	"1m":               platform("1m", 1e6, 64, "off"),
	"1m-affinity":      platform("1m-affinity", 1e6, 1024, "room"),
	"10m":              platform("10m", 1e7, 256, "off"),
	"10m-affinity":     platform("10m-affinity", 1e7, 4096, "room"),
	"50m":              platform("50m", 5e7, 1024, "off"),
	"50m-affinity":     platform("50m-affinity", 5e7, 4096, "room"),
	"50m-by-partition": platform("50m-by-partition", 5e7, 1024, "partition"),
}
