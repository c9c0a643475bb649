package main

import (
	"io"
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
		{"file", cfg.Brokers, "10.0.0.1:9092,10.0.0.2:9092"},
		{"env over file", cfg.TopicPrefix, "from-env."},
		{"flag over file", cfg.HTTPAddr, "127.0.0.1:7000"},
		{"env-style key", cfg.LogLevel, "warn"},
		{"secret", cfg.JWTSecret, "from-file"},
		{"default", cfg.WSAddr, "127.0.0.1:8090"},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, c.got, c.want)
		}
	}
	if !cfg.ReusePort || cfg.DrainTimeout != 20*time.Second {
		t.Errorf("reuseport %v drain %v", cfg.ReusePort, cfg.DrainTimeout)
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
			if cfg.Bus != "kafka" || cfg.Brokers == "" || cfg.HTTPAddr != "0.0.0.0:8080" {
				t.Errorf("%s: bus %q brokers %q http %q", f, cfg.Bus, cfg.Brokers, cfg.HTTPAddr)
			}
		})
	}
}
