package app

import (
	"fmt"
	"log/slog"

	"github.com/danmaku-live/danmaku/dispatch"
	"github.com/danmaku-live/danmaku/gateway"
	"github.com/danmaku-live/danmaku/logic"
	"github.com/danmaku-live/danmaku/logic/historywriter"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/bus/kafkabus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/history/chstore"
	"github.com/danmaku-live/danmaku/pkg/presence/redispresence"
)

// Role names the stages one process runs.
type Role string

// The roles of a danmaku process.
const (
	RoleAll      Role = "all"      // every stage in one process
	RoleGateway  Role = "gateway"  // the WebSocket gateway, the HTTP API and the pages
	RoleLogic    Role = "logic"    // the logic worker and the history writer
	RoleDispatch Role = "dispatch" // the fan-out stage
)

// runs reports whether a process of role r runs stage.
func (r Role) runs(stage Role) bool { return r == RoleAll || r == stage }

// Config is the configuration of one danmaku process: the stages' own
// configurations and the backends they share. The app fills in what it
// builds itself (the bus, stores, signer, logger and metrics registry of
// each stage); every other field keeps its stage's documented zero value.
type Config struct {
	// Role is the stages this process runs. Required.
	Role Role
	// HTTPAddr serves pages, the API, /metrics and health checks
	// ("127.0.0.1:0" picks a free port; see App.HTTPAddr). Required.
	HTTPAddr string
	// JWTSecret signs and checks tokens; every process of a deployment
	// shares it. Required.
	JWTSecret string
	// DevSecret says JWTSecret was generated for this process: the banner
	// warns that tokens die with it and hands out a moderator token.
	DevSecret bool
	// Demo runs the demo room bot: it posts to room "demo" on the bus.
	Demo bool
	// Guests hands out guest viewer tokens at POST /api/guest.
	Guests bool
	// Backends names the bus, history store and presence store.
	Backends Backends
	// Gateway configures the gateway (RoleGateway, RoleAll). Its
	// AllowedOrigins also bound the HTTP API's CORS answers.
	Gateway gateway.Config
	// Logic configures the logic worker (RoleLogic, RoleAll).
	Logic logic.Config
	// HistoryWriter configures the history writer that runs beside logic
	// (RoleLogic, RoleAll). The app sets Bus, Store and Logger.
	HistoryWriter historywriter.Config
	// Dispatch configures the fan-out stage (RoleDispatch, RoleAll).
	Dispatch dispatch.Config
	// Logger receives every stage's logs. Zero value means slog.Default().
	Logger *slog.Logger
}

// Backends names the shared backends and where they are.
type Backends struct {
	// Bus is "memory" (RoleAll only: the stages must share the process) or
	// "kafka" (Kafka). Zero value means memory.
	Bus string
	// Kafka configures the Kafka bus; Brokers is required with Bus
	// "kafka". The app sets CreateTopics and Logger.
	Kafka kafkabus.Config
	// History is "memory" or "clickhouse" (ClickHouse). Zero value means
	// memory.
	History string
	// ClickHouse is the history store with History "clickhouse"; Addr is
	// required. The app sets Logger.
	ClickHouse chstore.Config
	// Presence is "memory" or "redis" (Redis). Zero value means memory.
	Presence string
	// Redis holds presence, sessions, bans, settings and accepted ids
	// with Presence "redis"; Addr is required.
	Redis redispresence.Config
	// Given, when set, is the bus instead of one opened from Bus: a test
	// that wraps a bus to inject faults, or a program embedding the
	// stages. The app does not close it.
	Given bus.Bus
	// GivenHistory, when set, is the history store instead of one opened
	// from History (which is then not read): a store shared by the apps of
	// several roles in one test, as ClickHouse is shared by processes, or
	// one a program opened itself. The app does not close it.
	GivenHistory history.Store
}

// FieldError is a Config field that Validate rejects.
type FieldError struct {
	// Field is the field's path in Config, e.g. "Backends.Kafka.Brokers".
	Field string
	// Problem says what is wrong and what would do.
	Problem string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Problem }

// Validate reports the first field of c that cannot work: an unknown
// role or backend, a backend without its address, a combination that
// would lose data (the memory bus across processes, a logic worker on
// Kafka without a shared history store), a missing secret. The errors are
// *FieldError.
func (c *Config) Validate() error {
	bad := func(field, format string, args ...any) error {
		return &FieldError{Field: field, Problem: fmt.Sprintf(format, args...)}
	}
	switch c.Role {
	case RoleAll, RoleGateway, RoleLogic, RoleDispatch:
	default:
		return bad("Role", "unknown role %q (all, gateway, logic or dispatch)", c.Role)
	}
	if c.HTTPAddr == "" {
		return bad("HTTPAddr", "required")
	}
	if c.JWTSecret == "" {
		return bad("JWTSecret", "required: every process of a deployment signs and checks tokens with it")
	}
	b := &c.Backends
	switch b.Bus {
	case "", "memory":
		if c.Role != RoleAll && b.Given == nil {
			return bad("Backends.Bus", "the memory bus works inside one process only (role all); role %s needs kafka with its brokers", c.Role)
		}
	case "kafka":
		if len(b.Kafka.Brokers) == 0 && b.Given == nil {
			return bad("Backends.Kafka.Brokers", "required with the kafka bus")
		}
	default:
		return bad("Backends.Bus", "unknown bus %q (memory or kafka)", b.Bus)
	}
	switch {
	case b.GivenHistory != nil: // shared by its owner; History is not read
	case b.History == "" || b.History == "memory":
		if c.Role == RoleLogic && b.Bus == "kafka" && b.History == "" {
			// A room whose accepted records left the takeover scan (or
			// Kafka's retention) would start again at seq 1 after a restart
			// or rebalance, and every gateway and client that saw its
			// higher seqs would drop the new messages as seen. Only an
			// explicit "memory" (tests, benchmarks) is let through.
			return bad("Backends.History", "a logic worker on the kafka bus needs a shared history store to continue each room's seq: clickhouse with its address (memory only when asked for by name, for tests)")
		}
	case b.History == "clickhouse":
		if b.ClickHouse.Addr == "" {
			return bad("Backends.ClickHouse.Addr", "required with the clickhouse history store")
		}
	default:
		return bad("Backends.History", "unknown history store %q (memory or clickhouse)", b.History)
	}
	switch b.Presence {
	case "", "memory":
	case "redis":
		if b.Redis.Addr == "" {
			return bad("Backends.Redis.Addr", "required with the redis presence store")
		}
	default:
		return bad("Backends.Presence", "unknown presence store %q (memory or redis)", b.Presence)
	}
	if c.Gateway.DrainTimeout < 0 {
		return bad("Gateway.DrainTimeout", "negative")
	}
	return nil
}
