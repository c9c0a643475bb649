package model

import (
	"fmt"
	"math"
)

// GatewayCPU is one gateway's CPU, in cores, by what it does.
type GatewayCPU struct {
	Write     float64 // batch frames written to viewers
	Read      float64 // dispatch records fetched, decoded and deflated
	Handshake float64 // new connections
	Ping      float64 // heartbeats to silent viewers
	Base      float64 // the runtime, metrics and bus polling, with nothing to write
}

// Total is the gateway's CPU in cores.
func (g GatewayCPU) Total() float64 { return g.Write + g.Read + g.Handshake + g.Ping + g.Base }

// Output is what the model computes for one Input.
type Output struct {
	In Input // with its defaults

	Rate       float64 // accepted messages/s
	Deliveries float64 // messages shown to viewers per second
	HotViewers float64 // the hottest room's viewers
	HotRate    float64 // and its accepted messages/s

	Gateways, Logic, Dispatch, Brokers int

	DispatchRecords float64 // records/s on the dispatch topic
	DispatchMBs     float64 // dispatch topic bytes/s, compressed
	ReadFraction    float64 // share of the dispatch stream a gateway reads
	RoomsPerGateway float64 // rooms with viewers on an average gateway
	BrokerEgressMBs float64
	BrokerInMBs     float64 // produced bytes/s, compressed, before replication

	GW           GatewayCPU // an average gateway
	MsgsPerWrite float64    // messages in an average write to a viewer
	CycleMs      float64    // an average loop's flush cycle
	HotPassMs    float64    // the hottest room's pass over its members on one loop
	HotCycleMs   float64    // the cycle of the loop holding it
	P50Ms, P99Ms float64    // send → viewer for the hottest room
	LoopDelayMs  float64    // the hottest room's loop: a typical flush's longest wait of a batch, queued to written to every member (gateway/lag.go)
	Wide         bool       // the hottest room's loops write wide (gateway overload pacing)
	Shed         float64    // share of the hottest room's messages the gateway leaves out
	PipelineUtil float64    // logic's utilisation (above 1 on a box: a backlog)
	HarnessUtil  float64    // the bench viewers' CPU need / what they get (box; above 1: a backlog)
	LoopUtil     float64    // the hottest room's messages per loop cycle / what a write holds (box; above 1: a backlog)
	PassShare    float64    // the share of a core an average loop gets during its write passes

	Binds string   // the resource that sets the deployment's size first
	Notes []string // what else the figures say
}

// Run computes the model for in with costs c.
func Run(in Input, c Costs) (*Output, error) {
	if err := in.Validate(); err != nil {
		return nil, err
	}
	in = in.withDefaults()
	if c == nil {
		return nil, fmt.Errorf("model: no costs")
	}
	o := &Output{In: in, Rate: in.Rate}
	bs := rooms(in)
	o.HotViewers, o.HotRate = bs[0].viewers, bs[0].rate
	for _, b := range bs {
		o.Deliveries += b.n * b.viewers * b.shown
	}
	o.sizePipeline(c)
	t := tick(in.Rate/float64(o.Dispatch), in.MinTickMs/1e3)
	st := newState(in, c, bs, t)
	o.sizeGateways(st)
	o.sizeBrokers(st, c)
	o.bind(st, c)
	return o, nil
}

// sizePipeline sets the logic and dispatch processes: enough cores at the
// target utilisation, at most one per partition (a box runs one each).
func (o *Output) sizePipeline(c Costs) {
	in := o.In
	logicCores := o.Rate * c.v("logic_msg_us") / 1e6
	dispCores := o.Rate * c.v("dispatch_msg_us") / 1e6
	if in.Box != nil {
		o.Logic, o.Dispatch = 1, 1
		return
	}
	o.Logic = max(1, int(math.Ceil(logicCores/in.Target)))
	o.Dispatch = max(2, int(math.Ceil(dispCores/in.Target)))
	if o.Logic > in.Partitions {
		o.Notes = append(o.Notes, fmt.Sprintf("logic needs %d workers at %.0f %% CPU but %d partitions allow %d: raise --partitions",
			o.Logic, in.Target*100, in.Partitions, in.Partitions))
		o.Logic = in.Partitions
	}
	if o.Dispatch > in.Partitions {
		o.Dispatch = in.Partitions
	}
	o.PipelineUtil = logicCores / float64(o.Logic)
}

// sizeGateways sets the gateway count: enough for the connections, then
// grown until an average gateway's CPU is within the target, or until
// more gateways would not lower it much (its loops paced: the flush
// pacing sets their share of the time writing, and a tenth more gateways
// saves less than half a tenth of it, merging fewer messages a write
// instead), unless in.Gateways fixes it. A gateway whose hottest room is
// wide is never enough.
func (o *Output) sizeGateways(st *state) {
	in := o.In
	n := int(math.Ceil(in.Viewers / in.GatewayConns))
	if in.Gateways > 0 {
		n = in.Gateways
	}
	o.Binds = "connections per gateway"
	capCores := float64(in.GatewayCores) * in.Target
	for range 200 {
		g := st.gateway(n)
		if in.Gateways > 0 || in.Box != nil || (g.cpu.Total() <= capCores && !g.wide) {
			break
		}
		// A tenth more gateways, each with a tenth less of the load,
		// should save about that of a gateway's CPU; one whose loops are
		// paced saves less than half of it.
		more := max(n+1, int(math.Ceil(float64(n)*1.1)))
		// Never past pacedCeiling of its cores, though: that leaves a
		// gateway no room for handshakes and reads whatever the pacing.
		if next := st.gateway(more); g.paced && !g.wide && g.cpu.Total() <= pacedCeiling*float64(in.GatewayCores) &&
			next.cpu.Total() > g.cpu.Total()*(1-0.5*(1-float64(n)/float64(more))) {
			o.Binds = "gateway CPU: writing to viewers (paced)"
			o.Notes = append(o.Notes, fmt.Sprintf("%d gateways at %.2f cores each, past the %.0f %% target: the loops' flush pacing holds it (%.1f messages a write); %d would use %.2f each and merge fewer",
				n, g.cpu.Total(), 100*in.Target, g.msgsPerWrite, more, next.cpu.Total()))
			break
		}
		fixed := g.cpu.Read
		if fixed >= capCores && in.Affinity == "off" {
			o.Notes = append(o.Notes, fmt.Sprintf("reading the whole dispatch stream takes %.2f cores of every gateway, past its %.2f: more gateways cannot help; turn affinity on or thin",
				fixed, capCores))
			o.Binds = "gateway CPU: reading the bus"
			break
		}
		o.Binds = "gateway CPU: writing to viewers"
		if g.cpu.Read > g.cpu.Write {
			o.Binds = "gateway CPU: reading the bus"
		}
		// A gateway whose hottest room is under pressure (wide, shed)
		// is overloaded whatever its CPU: one more at least.
		next := int(math.Ceil(float64(n) * (g.cpu.Total() - fixed) / math.Max(capCores-fixed, capCores*0.05)))
		if g.wide {
			next = max(next, int(math.Ceil(float64(n)*1.05)))
		}
		n = max(n+1, next)
	}
	o.Gateways = n
	g := st.gateway(n)
	o.GW, o.CycleMs, o.MsgsPerWrite = g.cpu, g.cycle*1e3, g.msgsPerWrite
	o.ReadFraction, o.RoomsPerGateway = g.readFraction, g.rooms
	o.HotPassMs, o.HotCycleMs = g.hotPass*1e3, g.hotCycle*1e3
	o.P50Ms, o.P99Ms = g.p50*1e3, g.p99*1e3
	o.Wide, o.Shed = g.wide, g.shed
	o.LoopDelayMs = g.loopDelay * 1e3
	if g.pipeUtil > 0 {
		o.PipelineUtil = g.pipeUtil
	}
	o.HarnessUtil = g.harnessUtil
	o.LoopUtil = g.loopUtil
	o.PassShare = g.share
}

// pacedCeiling is the most of its cores a paced gateway may use for the
// sizing to stop at it.
const pacedCeiling = 0.8

// sizeBrokers sets the brokers: the bytes produced (times the
// replication) and the bytes fetched (logic reads ingest; dispatch and the
// history writer read accepted; every gateway reads its share of
// dispatch; followers fetch the replicas), at the assumed capacity of a
// broker, and never fewer than the replication factor.
func (o *Output) sizeBrokers(st *state, c Costs) {
	in := o.In
	comp := c.v("bus_compression")
	o.DispatchRecords = st.totalRecs
	o.DispatchMBs = st.totalBytes * comp / 1e6
	ingest := o.Rate * c.v("ingest_record_bytes") * comp / 1e6
	accepted := o.Rate * c.v("accepted_record_bytes") * comp / 1e6
	o.BrokerInMBs = ingest + accepted + o.DispatchMBs
	o.BrokerEgressMBs = ingest + 2*accepted + float64(o.Gateways)*o.ReadFraction*o.DispatchMBs +
		(in.Replication-1)*o.BrokerInMBs
	o.Brokers = int(math.Max(in.Replication, math.Ceil(math.Max(
		o.BrokerEgressMBs/c.v("broker_egress_mbs"),
		o.BrokerInMBs*in.Replication/c.v("broker_ingress_mbs")))))
}

// bind names what sets the deployment's size first and adds the notes
// that follow from the figures.
func (o *Output) bind(st *state, c Costs) {
	in := o.In
	if in.Box != nil {
		o.Binds = "one box"
		if o.PipelineUtil > 1 {
			o.Notes = append(o.Notes, fmt.Sprintf("logic needs %.1f× the CPU it gets on the box: a backlog grows for the whole run", o.PipelineUtil))
		}
		o.Notes = append(o.Notes, fmt.Sprintf("box: logic needs %.2f× and the bench viewers %.2f× the CPU they get (above 1: they fall behind)", o.PipelineUtil, o.HarnessUtil))
		if o.LoopUtil > 1 {
			o.Notes = append(o.Notes, fmt.Sprintf("the hottest room's loop gets %.1f× the messages a write holds in a cycle: its writes fall behind for the whole run", o.LoopUtil))
		}
		if o.HarnessUtil > 1 {
			o.Notes = append(o.Notes, fmt.Sprintf("the bench viewers need %.1f× the CPU they get: they fall behind and the gateway drops batches for them", o.HarnessUtil))
		}
		return
	}
	byConns := math.Ceil(in.Viewers / in.GatewayConns)
	if float64(o.Gateways) <= byConns && o.Binds != "gateway CPU: reading the bus" {
		o.Binds = "connections per gateway"
	}
	if egress := float64(o.Brokers) * c.v("broker_egress_mbs"); o.Brokers > int(in.Replication) &&
		o.BrokerEgressMBs/egress > o.BrokerInMBs*in.Replication/(float64(o.Brokers)*c.v("broker_ingress_mbs")) {
		o.Notes = append(o.Notes, fmt.Sprintf("brokers are sized by egress (%.0f MB/s), %.0f %% of it gateways reading dispatch",
			o.BrokerEgressMBs, 100*float64(o.Gateways)*o.ReadFraction*o.DispatchMBs/o.BrokerEgressMBs))
	}
	if o.HotCycleMs > 1000 {
		o.Notes = append(o.Notes, fmt.Sprintf("the hottest room's loop cycle is %.0f ms: thin it (--thin-budget) or spread it over more gateways", o.HotCycleMs))
	}
}
