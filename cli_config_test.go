package main

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestConfigPrecedence checks flags > env > file > defaults.
func TestConfigPrecedence(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "danmaku.yaml")
	content := `# a comment
brokers: "10.0.0.1:9092,10.0.0.2:9092"
topic-prefix: prod.
DANMAKU_LOG_LEVEL: warn
http: 0.0.0.0:9000   # trailing comment
reuseport: true
drain-timeout=20s
jwt-secret: from-file
`
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("DANMAKU_TOPIC_PREFIX", "from-env.")
	t.Setenv("DANMAKU_JWT_SECRET", "")
	cfg, err := parseConfig("logic", []string{"--config", file, "--http", "127.0.0.1:7000"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ name, got, want string }{
		{"file", strings.Join(cfg.Backends.Kafka.Brokers, ","), "10.0.0.1:9092,10.0.0.2:9092"},
		{"env over file", cfg.Backends.Kafka.TopicPrefix, "from-env."},
		{"flag over file", cfg.HTTPAddr, "127.0.0.1:7000"},
		{"env-style key", logLevel(cfg.Logger), "WARN"},
		{"secret", cfg.JWTSecret, "from-file"},
		{"default", cfg.Gateway.Addr, "127.0.0.1:8090"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if !cfg.Gateway.ReusePort || cfg.Gateway.DrainTimeout != 20*time.Second {
		t.Errorf("reuseport %v drain %v", cfg.Gateway.ReusePort, cfg.Gateway.DrainTimeout)
	}

	for name, bad := range map[string]string{
		"UnknownKey":  "nope: 1\n",
		"NoSeparator": "brokers\n",
		"BadValue":    "drain-timeout: soon\n",
	} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(dir, name)
			if err := os.WriteFile(f, []byte(bad), 0o600); err != nil {
				t.Fatal(err)
			}
			if _, err := parseConfig("all", []string{"--config", f}, io.Discard); err == nil {
				t.Errorf("config %q accepted", bad)
			}
		})
	}
	if _, err := parseConfig("all", []string{"--config", filepath.Join(dir, "missing")}, io.Discard); err == nil {
		t.Error("missing config file accepted")
	}
}

// TestDeployConfigExamples loads every example config file of deploy/config
// with the role it is written for.
func TestDeployConfigExamples(t *testing.T) {
	files, _ := filepath.Glob("deploy/config/*.yaml")
	if len(files) == 0 {
		t.Fatal("no example config files in deploy/config")
	}
	t.Setenv("DANMAKU_JWT_SECRET", "example-secret")
	for _, f := range files {
		role := strings.TrimSuffix(filepath.Base(f), ".yaml")
		t.Run(role, func(t *testing.T) {
			cfg, err := parseConfig(role, []string{"--config", f}, io.Discard)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Backends.Bus != "kafka" || len(cfg.Backends.Kafka.Brokers) == 0 || cfg.HTTPAddr != "0.0.0.0:8080" {
				t.Errorf("%s: bus %q brokers %q http %q", f, cfg.Backends.Bus, cfg.Backends.Kafka.Brokers, cfg.HTTPAddr)
			}
		})
	}
}

// logLevel is the lowest level l logs ("DEBUG" to "ERROR").
func logLevel(l *slog.Logger) string {
	for _, lvl := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError} {
		if l.Enabled(context.Background(), lvl) {
			return lvl.String()
		}
	}
	return "none"
}

// TestPresenceIntervalFlag: the gateway's report interval comes from
// --presence-interval or DANMAKU_PRESENCE_INTERVAL, the flag winning.
func TestPresenceIntervalFlag(t *testing.T) {
	t.Setenv("DANMAKU_PRESENCE_INTERVAL", "300ms")
	cfg, err := parseConfig("all", nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.PresenceInterval != 300*time.Millisecond {
		t.Errorf("env: interval %v, want 300ms", cfg.Gateway.PresenceInterval)
	}
	if cfg, err = parseConfig("all", []string{"--presence-interval", "5s"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if cfg.Gateway.PresenceInterval != 5*time.Second {
		t.Errorf("flag: interval %v, want 5s", cfg.Gateway.PresenceInterval)
	}
}

// TestServerConfigErrorsNameFlags: a configuration the app rejects is
// reported with the flag and environment variable that fix it.
func TestServerConfigErrorsNameFlags(t *testing.T) {
	t.Setenv("DANMAKU_JWT_SECRET", "s")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"gateway"}, "--bus (env DANMAKU_BUS): the memory bus works inside one process only"},
		{[]string{"logic", "--bus", "kafka"}, "--brokers (env DANMAKU_BROKERS): required"},
		{[]string{"logic", "--bus", "kafka", "--brokers", "127.0.0.1:1"}, "--history (env DANMAKU_HISTORY): a logic worker on the kafka bus needs a shared history store"},
		{[]string{"all", "--history", "clickhouse"}, "--clickhouse (env DANMAKU_CLICKHOUSE): required"},
		{[]string{"all", "--presence", "etcd"}, `--presence (env DANMAKU_PRESENCE): unknown presence store "etcd"`},
	} {
		err := run(context.Background(), c.args, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("danmaku %v: error %v, want it to say %q", c.args, err, c.want)
		}
	}
}

// TestAffinityFlags: room affinity and its grace and rewind come from
// --affinity, --affinity-grace and --affinity-rewind or their DANMAKU_*
// variables, the flags winning; off by default.
func TestAffinityFlags(t *testing.T) {
	cfg, err := parseConfig("gateway", nil, io.Discard)
	if err == nil && (cfg.Gateway.Affinity || cfg.Gateway.AffinityGrace != 0 || cfg.Gateway.AffinityRewind != 0) {
		t.Errorf("defaults: %v %v %v, want off and the gateway's defaults", cfg.Gateway.Affinity, cfg.Gateway.AffinityGrace, cfg.Gateway.AffinityRewind)
	}
	t.Setenv("DANMAKU_AFFINITY", "true")
	t.Setenv("DANMAKU_AFFINITY_GRACE", "5s")
	t.Setenv("DANMAKU_AFFINITY_REWIND", "100")
	if cfg, err = parseConfig("all", []string{"--affinity-rewind", "200"}, io.Discard); err != nil {
		t.Fatal(err)
	}
	if g := cfg.Gateway; !g.Affinity || g.AffinityGrace != 5*time.Second || g.AffinityRewind != 200 {
		t.Errorf("affinity %v, grace %v, rewind %d; want true, 5s (env), 200 (flag)", g.Affinity, g.AffinityGrace, g.AffinityRewind)
	}
}
