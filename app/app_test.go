package app

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/bus/kafkabus"
	"github.com/danmaku-live/danmaku/pkg/history"
)

// TestValidate checks that each unworkable Config names its field.
func TestValidate(t *testing.T) {
	good := func() Config {
		return Config{Role: RoleAll, HTTPAddr: "127.0.0.1:0", JWTSecret: "s"}
	}
	if c := good(); c.Validate() != nil {
		t.Fatalf("minimal config rejected: %v", c.Validate())
	}
	for _, c := range []struct {
		field string
		mod   func(*Config)
	}{
		{"Role", func(c *Config) { c.Role = "gatway" }},
		{"HTTPAddr", func(c *Config) { c.HTTPAddr = "" }},
		{"JWTSecret", func(c *Config) { c.JWTSecret = "" }},
		{"Backends.Bus", func(c *Config) { c.Role = RoleGateway }},
		{"Backends.Bus", func(c *Config) { c.Backends.Bus = "nats" }},
		{"Backends.Kafka.Brokers", func(c *Config) { c.Backends.Bus = "kafka" }},
		{"Backends.History", func(c *Config) {
			c.Role, c.Backends.Bus, c.Backends.Kafka.Brokers = RoleLogic, "kafka", []string{"k:9092"}
		}},
		{"Backends.History", func(c *Config) { c.Backends.History = "postgres" }},
		{"Backends.ClickHouse.Addr", func(c *Config) { c.Backends.History = "clickhouse" }},
		{"Backends.Presence", func(c *Config) { c.Backends.Presence = "etcd" }},
		{"Backends.Redis.Addr", func(c *Config) { c.Backends.Presence = "redis" }},
		{"Gateway.DrainTimeout", func(c *Config) { c.Gateway.DrainTimeout = -time.Second }},
	} {
		cfg := good()
		c.mod(&cfg)
		var fe *FieldError
		if err := cfg.Validate(); !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("%+v: got %v, want a FieldError for %s", cfg, err, c.field)
		}
		if _, err := New(cfg); !errors.As(err, &fe) || fe.Field != c.field {
			t.Errorf("New(%+v): got %v, want a FieldError for %s", cfg, err, c.field)
		}
	}
}

// TestRunDrainsPipeline: sends published just before shutdown are
// decided by logic, stored by the history writer and dispatched before
// Run returns; every stage's group has committed them.
func TestRunDrainsPipeline(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{})
	defer mem.Close()
	cfg := Config{Role: RoleAll, HTTPAddr: "127.0.0.1:0", JWTSecret: "drain-secret",
		Logger: slog.New(slog.DiscardHandler), Backends: Backends{Given: mem}}
	// The drain is bounded by DrainTimeout + 5s: generous, for a loaded machine.
	cfg.Gateway.Addr, cfg.Gateway.DrainTimeout = "127.0.0.1:0", 30*time.Second
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := a.Start()
	if err != nil {
		t.Fatal(err)
	}
	const n = 2000
	recs := make([]bus.Record, n)
	for i := range recs {
		room := "drain-" + strconv.Itoa(i%16)
		v, _ := bus.Marshal(bus.Ingest{Room: room, ID: "d" + strconv.Itoa(i), UID: "svc", Name: "svc",
			Role: auth.RoleService, Text: "m" + strconv.Itoa(i), TS: time.Now().UnixMilli(), Trusted: true})
		recs[i] = bus.Record{Key: room, Value: v}
	}
	if err := mem.Publisher(bus.StreamIngest).Publish(context.Background(), recs...); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("Run returned %v after the cancel", time.Since(start).Round(time.Millisecond))
	for _, c := range []struct{ stream, group string }{
		{bus.StreamIngest, "logic"}, {bus.StreamAccepted, "history"}, {bus.StreamAccepted, "dispatch"},
	} {
		parts, _ := mem.Partitions(context.Background(), c.stream)
		var total, committed int64
		for p := range parts {
			o, err := mem.Offsets(context.Background(), c.stream, p, c.group)
			if err != nil {
				t.Fatal(err)
			}
			total += o.End - o.Oldest
			if o.Committed >= 0 {
				committed += o.Committed - o.Oldest
			}
			if o.End > o.Oldest && o.Committed < o.End {
				t.Errorf("%s/%s partition %d: committed %d of %d", c.stream, c.group, p, o.Committed, o.End)
			}
		}
		if c.stream == bus.StreamIngest && total != n {
			t.Errorf("ingest holds %d records, want %d", total, n)
		}
		t.Logf("%s/%s: %d of %d records committed", c.stream, c.group, committed, total)
	}
}

// closeCountingStore is a memory history store that records a Close.
type closeCountingStore struct {
	*history.Memory
	closed atomic.Bool
}

func (s *closeCountingStore) Close() error { s.closed.Store(true); return nil }

// TestGivenHistory: a logic app and a gateway app on one given bus and
// one given history store share it as processes share ClickHouse: what
// the logic app's writer stores, the gateway app's API serves; Validate
// counts it as the shared store a logic worker on Kafka needs; neither
// app closes it.
func TestGivenHistory(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{})
	t.Cleanup(func() { _ = mem.Close() }) // after the apps' cleanups
	st := &closeCountingStore{Memory: history.NewMemory(history.MemoryConfig{})}
	kafkaLogic := Config{Role: RoleLogic, HTTPAddr: "127.0.0.1:0", JWTSecret: "s",
		Backends: Backends{Bus: "kafka", Kafka: kafkabus.Config{Brokers: []string{"k:9092"}}, GivenHistory: st}}
	if err := kafkaLogic.Validate(); err != nil {
		t.Fatalf("logic on kafka with a given store: %v", err)
	}
	run := func(role Role) *App {
		cfg := Config{Role: role, HTTPAddr: "127.0.0.1:0", JWTSecret: "given-secret", Logger: slog.New(slog.DiscardHandler),
			Backends: Backends{Given: mem, GivenHistory: st}}
		cfg.Gateway.Addr, cfg.Gateway.DrainTimeout = "127.0.0.1:0", time.Second
		cfg.HistoryWriter.FlushInterval = 10 * time.Millisecond
		a, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		stop, err := a.Start()
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := stop(); err != nil {
				t.Errorf("%s: %v", role, err)
			}
			if st.closed.Load() {
				t.Errorf("the %s app closed the given history store", role)
			}
		})
		return a
	}
	run(RoleLogic)
	gw := run(RoleGateway)
	v, _ := bus.Marshal(bus.Ingest{Room: "given", ID: "g1", UID: "svc", Name: "svc", Role: auth.RoleService,
		Text: "stored once, served by the other app", TS: time.Now().UnixMilli(), Trusted: true})
	if err := mem.Publisher(bus.StreamIngest).Publish(context.Background(), bus.Record{Key: "given", Value: v}); err != nil {
		t.Fatal(err)
	}
	var body string
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(body, "served by the other app"); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the gateway app's API does not serve what the logic app stored: %s", body)
		}
		resp, err := http.Get("http://" + gw.HTTPAddr() + "/api/rooms/given/history")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		body = string(b)
	}
}

// TestStart: Start returns once the App serves, stop returns Run's error
// (nil after a clean drain) and the same again; an App that cannot serve
// makes Start return Run's error.
func TestStart(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{})
	t.Cleanup(func() { _ = mem.Close() })
	cfg := Config{Role: RoleDispatch, HTTPAddr: "127.0.0.1:0", JWTSecret: "s", Logger: slog.New(slog.DiscardHandler),
		Backends: Backends{Given: mem}}
	a, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	stop, err := a.Start()
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + a.HTTPAddr() + "/readyz")
	if err != nil {
		t.Fatalf("not serving after Start: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("readyz after Start: %s", resp.Status)
	}
	if err := stop(); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if _, err := http.Get("http://" + a.HTTPAddr() + "/readyz"); err == nil {
		t.Error("still serving after stop")
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg.HTTPAddr = ln.Addr().String() // taken
	b, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if stop, err := b.Start(); err == nil || stop != nil || !strings.Contains(err.Error(), "address already in use") {
		t.Fatalf("Start on a taken port: stop %v, err %v; want Run's error", stop != nil, err)
	}
}
