// Config: every knob of a gateway with its default and zero-value meaning; read-only once New returns.

package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// Config configures a gateway. It is passed by value to New; zero values
// take the defaults documented on each field.
type Config struct {
	// Addr is the WebSocket listen address, host:port. Zero value means
	// "127.0.0.1:8090".
	Addr string
	// ID names this gateway on the bus (replies are addressed to it) and in
	// presence. Zero value means "gw-<hostname>-<pid>".
	ID string
	// Loops is the number of event loops. Zero value means GOMAXPROCS
	// (the CPUs the process may use: its cgroup quota, or the GOMAXPROCS
	// environment variable), so many gateway processes on one host can
	// run one loop each.
	Loops int
	// ReusePort lets several gateway processes share Addr (SO_REUSEPORT).
	// Without it the gateway fails to start if anything listens on Addr.
	// (Its own listeners always use SO_REUSEPORT, one per event loop; see
	// Server.listenAddr.)
	ReusePort bool

	// Bus carries sends to logic and batches, replies and control events
	// back. Required.
	Bus bus.Bus
	// History serves joins and resumes older than the gateway's memory.
	// Required.
	History history.Store
	// Presence receives this gateway's per-room counts. Nil means counts
	// stay local.
	Presence presence.Presence
	// Sessions is the registry that keeps one connection per user and
	// device (the token's "dev" claim) across gateways: a second login
	// kicks the first. Nil means no single-session rule.
	Sessions presence.Sessions
	// SessionTTL is how long a session hold lives without a refresh;
	// holds are refreshed every SessionTTL/3. Zero value means 30s.
	SessionTTL time.Duration
	// MaxUpgradeRequest bounds a client's HTTP upgrade request in bytes;
	// a larger one is refused with 431. Zero value means 8192; negative
	// is an error.
	MaxUpgradeRequest int
	// Signer verifies tokens. Required.
	Signer *auth.Signer

	// MaxConns caps open connections, handshakes included; past it a
	// connection is answered 503 and closed at once. Zero value means the
	// process's open-file limit minus 320 for its other files (19680 at
	// 20000): gnet stops its engine when accept fails with EMFILE (the
	// gateway restarts it, dropping its connections), and each event loop
	// accepts one connection at a time and refuses it before the next (see
	// Server.listenAddr), so the cap holds however far a loop falls behind.
	// Never below half the limit.
	MaxConns int
	// MaxConnsPerIP caps connections from one remote address. Zero value
	// means 1024; negative means no cap.
	MaxConnsPerIP int
	// AllowedOrigins lists the Origin values browsers may connect from
	// (exact match, e.g. "https://example.com"; "*" matches any). Empty
	// means any origin.
	// Requests without an Origin header (non-browser clients) are allowed.
	AllowedOrigins []string
	// MaxRoomsPerConn caps the rooms one connection may join. Zero value
	// means 16.
	MaxRoomsPerConn int
	// SendRate caps the sends one connection may make: SendRate a second,
	// in bursts of up to SendRate. A send past it is not forwarded and is
	// answered reject `unavailable` ("sending too fast") with
	// retry_after_ms, the time until the connection may send again (the
	// clients retry it with the same id). Moderation's per-user limits
	// decide what is accepted; this keeps one connection from pushing
	// thousands of sends a second into the pipeline, where each rejected
	// one is remembered for logic.Config.DedupeTTL. Zero value means 100; negative
	// means no cap.
	SendRate int
	// MaxMessage is the largest client WebSocket message in bytes; larger
	// ones close the connection with 1009. Zero value means 4096
	// (protocol.MaxFrameBytes).
	MaxMessage int
	// NoDeflate turns permessage-deflate off. Zero value (false): offers
	// are accepted without context takeover, batches are compressed once
	// per gateway and the same compressed frame is written to every
	// viewer that accepted it; compressed client messages are inflated
	// (at most MaxMessage bytes).
	NoDeflate bool

	// HandshakeTimeout closes connections that have not completed the
	// upgrade in time (slowloris). Zero value means 5s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes connections that sent nothing (no frame, no pong)
	// for this long with close code 4002. The gateway pings connections
	// silent for half of it. Zero value means 60s.
	IdleTimeout time.Duration
	// SoftOutbound is the per-connection outbound backlog in bytes past
	// which batches are dropped for that viewer (it sees a seq gap and
	// resumes). Zero value means 256 KiB.
	SoftOutbound int
	// HardOutbound is the backlog past which the viewer is closed as a
	// slow consumer (4000). Zero value means 1 MiB.
	HardOutbound int
	// OutboundBudget bounds the outbound backlog of the whole process, in
	// bytes: while the viewers' backlogs sum above it, batches are dropped
	// for a viewer whose backlog with the batches would pass SoftOutbound/16
	// (it sees a gap and resumes), so a gateway whose viewers all fall
	// behind holds about the budget instead of SoftOutbound, or a whole
	// pass's frame, for each of them. Zero value means 512 MiB; negative
	// turns the budget off.
	OutboundBudget int64
	// SlowTimeout closes a viewer as a slow consumer (4000) when its
	// backlog stays above SoftOutbound this long (it is not reading at
	// all). Zero value means 10s.
	SlowTimeout time.Duration
	// FlushRate paces each event loop's writes of batches by their
	// fan-out cost: after a flush that wrote to n viewers, the loop's next
	// flush waits n/FlushRate (at most MaxFlushDelay), and the frames that
	// arrive meanwhile go out together in one write per viewer. A room of
	// 19,000 viewers then costs a bounded number of writes per second
	// however many messages it gets, while a small room's batches go out
	// at once (100 viewers wait 0.5 ms). Zero value means 250,000 writes
	// per second per loop; negative turns pacing off (a flush as soon as a
	// frame arrives).
	FlushRate int
	// MaxFlushDelay caps the wait FlushRate adds. Zero value means 40ms.
	MaxFlushDelay time.Duration
	// ShedDelay is how long batches may wait on an event loop, from being
	// queued there to being written to every viewer there that lacked
	// them (this gateway's own lateness on its own clock; never the
	// messages' age since logic accepted them), before the gateway sheds
	// the heavy rooms of that loop: it thins
	// their streams by priority, the same for every viewer of a room on
	// the gateway, and covers what it left out with from/to marks (see
	// docs/protocol.md, "Overload shedding"). Shedding also starts when
	// most of a room's viewers on a loop are backed up at once (their
	// backlogs past SoftOutbound/16). Zero value means 500ms; negative
	// turns shedding off.
	ShedDelay time.Duration
	// ShedFlushDelay is how often, at most, an event loop writes to the
	// viewers of a room under overload (docs/protocol.md, "Overload
	// shedding"): the first answer to a room the gateway cannot write in
	// time is fewer, bigger frames (one write per viewer per
	// ShedFlushDelay instead of per MaxFlushDelay; while the wide rooms'
	// writes in a pass average below 32 KiB, per write pass's duration if
	// longer, up to ShedDelay; the loop's other rooms wait with it), and
	// only if that is not enough does it leave messages out. Zero value
	// means 250ms, capped at half of ShedDelay; negative is refused.
	ShedFlushDelay time.Duration
	// manualShed (tests): no shed goroutine; the test calls shedStep.
	manualShed bool
	// OnlineRate bounds the writes per second that online (viewer count)
	// frames cost this gateway, over all its rooms: a viewer gets one when
	// the count changed, at most every PresenceInterval and every
	// v/OnlineRate for v viewers on the gateway (19,000: every 7.6 s).
	// Zero value means 2,500; negative sends no online frames. When many
	// gateway processes share a machine, give each its share (52 on 2
	// cores: 100).
	OnlineRate int

	// Affinity makes the gateway read only the dispatch partitions of the
	// rooms its viewers are in (bus.KeyPartition of the room), instead of
	// every partition: the first join to a room of a partition it does
	// not read starts reading it, AffinityRewind records before its end,
	// and the partition is dropped AffinityGrace after its rooms' last
	// viewer left (docs/deployment.md, "Room affinity"). A load balancer
	// that sends a room's viewers to few gateways makes each read a small
	// share of the stream; without one every viewer is still served. The
	// bus must read chosen partitions (bus.PartitionSubscriber and
	// bus.PartitionReader: memory and Kafka do), and New asks it for the
	// dispatch partition count. Zero value (false): every partition.
	Affinity bool
	// AffinityGrace is how long a partition is still read after the last
	// viewer of its rooms left, so that a viewer who reconnects or zaps
	// back finds it read. Zero value means 30s; negative is an error.
	AffinityGrace time.Duration
	// AffinityRewind is how many records before a partition's end the
	// gateway starts reading it when a join needs it: the batches in
	// that window overlap the history store's answer (the store lags the
	// dispatch stream by the history writer's batching), so the joiner
	// gets every message, the overlap dropped by seq. Zero value means
	// 4096; negative is an error.
	AffinityRewind int

	// HistoryOnJoin is how many recent messages a join without resume
	// gets. Zero value means 50.
	HistoryOnJoin int
	// MaxResume is the largest gap a resume fills from the store; a larger
	// gap gets the oldest MaxResume messages after the resume point, then
	// the gateway's recent messages, with complete:false. Zero value means
	// 1000.
	MaxResume int
	// RingSize is how many recent messages per room the gateway keeps in
	// memory for joins and resumes. Zero value means 1024.
	RingSize int
	// MaxHistoryLoads bounds the history-store loads in flight: the room
	// fills that serve the joins and resumes the ring does not (one per
	// room and range of resume points asked for at once), so a client
	// joining many fresh rooms over many connections cannot start one
	// load each at once. A fill past it waits up to HistorySlotWait for a
	// slot; without one its joins are answered from memory with
	// complete:false (a resume gets nothing and keeps its resume point).
	// Zero value means 256; negative is an error.
	MaxHistoryLoads int
	// HistorySlotWait is how long a room's fill waits for a history-load
	// slot: a storm of joins of fresh rooms (a gateway restart) is served
	// in turn rather than told complete:false, about as long as a load
	// waits for a lagging store. Zero value means 2s; negative is an error.
	HistorySlotWait time.Duration
	// HistoryTimeout bounds one history-store query. Zero value means 3s;
	// negative is an error.
	HistoryTimeout time.Duration
	// HistoryRetryEvery is the pause between a load's queries while the
	// store lags behind the ring (the history writer persists in batches)
	// or fails. Zero value means 100ms; negative is an error.
	HistoryRetryEvery time.Duration
	// HistoryRetries is how many more times a load asks a store that
	// lags behind the ring (a failing store: HistoryStoreTries in all),
	// for at most HistoryRetries × HistoryRetryEvery in all (a slow store
	// gets fewer); then the join is answered with complete:false. With
	// the default pause that is about 2 s. Zero value means 20; negative
	// means none.
	HistoryRetries int
	// HistoryStoreTries is how many times in all a load asks a store that
	// answers with an error (history.ErrNoShared, no shared store, is
	// asked once), within HistoryRetries and its time; then the join is
	// answered with complete:false. Zero value means 3; negative is an
	// error.
	HistoryStoreTries int
	// IngestQueue bounds sends waiting to be published; when full, sends
	// are rejected "unavailable". Zero value means 8192.
	IngestQueue int
	// PresenceInterval is how often counts are reported and online frames
	// sent. Zero value means 2s.
	PresenceInterval time.Duration
	// DrainTimeout bounds Shutdown: clients get reconnect at once and are
	// closed with 1001 within it. Zero value means 10s.
	DrainTimeout time.Duration

	// Logger receives logs. Zero value means slog.Default().
	Logger *slog.Logger
	// Registerer receives the gateway's metrics. Nil means they are not
	// registered.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	orDefault(&c.Addr, "127.0.0.1:8090")
	if c.ID == "" {
		host, _ := os.Hostname()
		c.ID = "gw-" + host + "-" + strconv.Itoa(os.Getpid())
	}
	orDefault(&c.MaxConns, max(fileLimit()-320, fileLimit()/2))
	orDefault(&c.MaxConnsPerIP, 1024)
	orDefault(&c.MaxRoomsPerConn, 16)
	orDefault(&c.MaxMessage, protocol.MaxFrameBytes)
	orDefault(&c.SendRate, 100)
	orDefault(&c.HandshakeTimeout, 5*time.Second)
	orDefault(&c.IdleTimeout, 60*time.Second)
	orDefault(&c.SoftOutbound, 256<<10)
	orDefault(&c.HardOutbound, 1<<20)
	orDefault(&c.SlowTimeout, 10*time.Second)
	orDefault(&c.OutboundBudget, 512<<20)
	orDefault(&c.FlushRate, 250_000)
	orDefault(&c.OnlineRate, 2500)
	orDefault(&c.MaxFlushDelay, 40*time.Millisecond)
	orDefault(&c.ShedDelay, 500*time.Millisecond)
	orDefault(&c.ShedFlushDelay, 250*time.Millisecond)
	if c.ShedDelay > 0 {
		c.ShedFlushDelay = min(c.ShedFlushDelay, c.ShedDelay/2)
	}
	orDefault(&c.AffinityGrace, 30*time.Second)
	orDefault(&c.AffinityRewind, 4096)
	orDefault(&c.HistoryOnJoin, 50)
	orDefault(&c.MaxResume, 1000)
	orDefault(&c.RingSize, 1024)
	orDefault(&c.MaxHistoryLoads, 256)
	orDefault(&c.HistorySlotWait, 2*time.Second)
	orDefault(&c.HistoryTimeout, 3*time.Second)
	orDefault(&c.HistoryRetryEvery, 100*time.Millisecond)
	orDefault(&c.HistoryStoreTries, 3)
	switch {
	case c.HistoryRetries == 0:
		c.HistoryRetries = 20
	case c.HistoryRetries < 0:
		c.HistoryRetries = 0
	}
	orDefault(&c.MaxUpgradeRequest, 8192)
	orDefault(&c.IngestQueue, 8192)
	orDefault(&c.PresenceInterval, 2*time.Second)
	orDefault(&c.SessionTTL, 30*time.Second)
	orDefault(&c.DrainTimeout, 10*time.Second)
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Validate reports a configuration New cannot run with.
func (c *Config) Validate() error {
	switch {
	case c.Bus == nil:
		return errors.New("gateway: Config.Bus is required")
	case c.History == nil:
		return errors.New("gateway: Config.History is required")
	case c.Signer == nil:
		return errors.New("gateway: Config.Signer is required")
	case c.MaxConns <= 0:
		return fmt.Errorf("gateway: MaxConns %d must be positive", c.MaxConns)
	case c.SoftOutbound > c.HardOutbound:
		return fmt.Errorf("gateway: SoftOutbound %d exceeds HardOutbound %d", c.SoftOutbound, c.HardOutbound)
	case c.MaxHistoryLoads < 0:
		return fmt.Errorf("gateway: MaxHistoryLoads %d must not be negative", c.MaxHistoryLoads)
	case c.HistorySlotWait < 0 || c.HistoryTimeout < 0 || c.HistoryRetryEvery < 0:
		return fmt.Errorf("gateway: HistorySlotWait %v, HistoryTimeout %v and HistoryRetryEvery %v must not be negative", c.HistorySlotWait, c.HistoryTimeout, c.HistoryRetryEvery)
	case c.HistoryStoreTries < 0:
		return fmt.Errorf("gateway: HistoryStoreTries %d must not be negative", c.HistoryStoreTries)
	case c.MaxUpgradeRequest < 0:
		return fmt.Errorf("gateway: MaxUpgradeRequest %d must not be negative", c.MaxUpgradeRequest)
	case c.AffinityGrace < 0 || c.AffinityRewind < 0:
		return fmt.Errorf("gateway: AffinityGrace %v and AffinityRewind %d must not be negative", c.AffinityGrace, c.AffinityRewind)
	case c.ShedFlushDelay < 0:
		return fmt.Errorf("gateway: ShedFlushDelay %v must not be negative", c.ShedFlushDelay)
	case c.HistoryOnJoin > c.RingSize:
		return fmt.Errorf("gateway: HistoryOnJoin %d exceeds RingSize %d", c.HistoryOnJoin, c.RingSize)
	}
	return nil
}

// fileLimit returns the soft RLIMIT_NOFILE of the process.
func fileLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 1 << 20
	}
	return int(rl.Cur)
}

// orDefault sets *v to def when it holds its type's zero value.
func orDefault[T comparable](v *T, def T) {
	var zero T
	if *v == zero {
		*v = def
	}
}
