package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/app"
	"github.com/danmaku-live/danmaku/pkg/auth"
)

// helpArgs are the command lines that ask for help, one per command and
// spelling.
func helpArgs() [][]string {
	args := [][]string{{"-h"}, {"--help"}, {"-help"}, {"help"}, {"help", "gateway"}, {"help", "bench"},
		{"--http", "127.0.0.1:1", "-h"}, {"probe", "-h"}, {"version", "-h"}, {"help", "version"},
		{"bench", "-h"}, {"bench", "--help"}, {"bench", "help"}, {"bench", "compare", "-h"}, {"bench", "compare", "--help"},
		{"bench", "model", "-h"}, {"bench", "model", "--help"}, {"bench", "worker", "-h"}, {"bench", "worker", "--help"}, {"probe", "--help"}, {"help", "probe"}, {"version", "--help"}}
	for _, cmd := range []string{"all", "gateway", "logic", "dispatch", "token"} {
		args = append(args, []string{cmd, "-h"}, []string{cmd, "--help"}, []string{"help", cmd})
	}
	for _, sc := range []string{"idle", "fanout", "rooms", "storm", "send", "soak"} {
		args = append(args, []string{"bench", sc, "-h"}, []string{"bench", sc, "--help"})
	}
	return args
}

// TestHelpExitsZero checks that every way of asking for help succeeds
// (main exits 0 when run returns nil) and prints something.
func TestHelpExitsZero(t *testing.T) {
	for _, args := range helpArgs() {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			var out, errb bytes.Buffer
			if err := run(context.Background(), args, &out, &errb); err != nil {
				t.Fatalf("run %q: %v (stderr %q)", args, err, errb.String())
			}
			if out.Len()+errb.Len() == 0 {
				t.Fatalf("run %q printed nothing", args)
			}
		})
	}
}

// TestBenchEnv: `danmaku bench` gets the environment it uses from the
// command line (bench reads none itself).
func TestBenchEnv(t *testing.T) {
	t.Setenv("DANMAKU_BROKERS", "b1:9092,b2:9092")
	t.Setenv("DANMAKU_JWT_SECRET", "bench-env-secret")
	t.Setenv("CI", "true")
	if e := benchEnv(); e.Brokers != "b1:9092,b2:9092" || e.Secret != "bench-env-secret" || !e.Quiet {
		t.Errorf("benchEnv() = brokers %q secret %q quiet %v", e.Brokers, e.Secret, e.Quiet)
	}
	t.Setenv("CI", "")
	if benchEnv().Quiet {
		t.Error("quiet without CI=true")
	}
}

// TestTopLevelHelp checks that danmaku -h lists the commands, not the
// flags of all, and that a command's -h goes to stdout with its flags.
func TestTopLevelHelp(t *testing.T) {
	for _, a := range []string{"-h", "--help", "help"} {
		var out bytes.Buffer
		if err := run(context.Background(), []string{a}, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		for _, cmd := range []string{"all", "gateway", "logic", "dispatch", "token", "probe", "bench", "version"} {
			if !regexp.MustCompile(`(?m)^  ` + cmd + ` `).MatchString(out.String()) {
				t.Errorf("danmaku %s does not list command %s:\n%s", a, cmd, out.String())
			}
		}
		if strings.Contains(out.String(), "-jwt-secret") {
			t.Errorf("danmaku %s prints the flags of all:\n%s", a, out.String())
		}
	}
	var out bytes.Buffer
	if err := run(context.Background(), []string{"gateway", "-h"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.HasPrefix(s, "usage: danmaku gateway") || !strings.Contains(s, "-jwt-secret") {
		t.Errorf("danmaku gateway -h:\n%s", s)
	}
	if err := run(context.Background(), []string{"help", "nope"}, io.Discard, io.Discard); err == nil {
		t.Error("danmaku help nope: no error")
	}
	for _, a := range [][]string{{"bench", "nope", "-h"}, {"bench", "latency", "--help"}} {
		if err := run(context.Background(), a, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "unknown scenario") {
			t.Errorf("danmaku %s: %v, want an unknown scenario error", strings.Join(a, " "), err)
		}
	}
	if err := run(context.Background(), []string{"gateway", "stray"}, io.Discard, io.Discard); err == nil || !strings.Contains(err.Error(), "unexpected arguments") {
		t.Errorf("danmaku gateway stray: %v", err)
	}
}

// Secrets set in the environment for TestHelpHidesSecrets.
const (
	envJWT      = "jwt-s3cret-7731"
	envRedisPW  = "redis-pw-4410"
	envClickPW  = "ch-pw-9902"
	envRedisURL = "redis://:" + envRedisPW + "@127.0.0.1:6379"
	envClickURL = "clickhouse://default:" + envClickPW + "@127.0.0.1:9000"
)

func setSecretEnv(t *testing.T) {
	t.Setenv("DANMAKU_JWT_SECRET", envJWT)
	t.Setenv("DANMAKU_REDIS", envRedisURL)
	t.Setenv("DANMAKU_CLICKHOUSE", envClickURL)
}

// TestHelpHidesSecrets checks that no -h, and no flag error, prints a
// secret from the environment, while the environment still configures
// the process.
func TestHelpHidesSecrets(t *testing.T) {
	setSecretEnv(t)
	args := append(helpArgs(), []string{"gateway", "--nope"}, []string{"token", "--nope"})
	for _, a := range args {
		var out, errb bytes.Buffer
		_ = run(context.Background(), a, &out, &errb)
		for _, secret := range []string{envJWT, envRedisPW, envClickPW} {
			if strings.Contains(out.String()+errb.String(), secret) {
				t.Errorf("danmaku %s prints the secret %q from the environment", strings.Join(a, " "), secret)
			}
		}
	}

	cfg, err := parseConfig("gateway", nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.JWTSecret != envJWT || cfg.Backends.Redis.Addr != "127.0.0.1:6379" || cfg.Backends.Redis.Password != envRedisPW ||
		cfg.Backends.ClickHouse.Addr != "127.0.0.1:9000" || cfg.Backends.ClickHouse.Password != envClickPW {
		t.Errorf("environment not applied: secret %q redis %+v clickhouse %+v", cfg.JWTSecret, cfg.Backends.Redis, cfg.Backends.ClickHouse)
	}
	cfg, err = parseConfig("gateway", []string{"--jwt-secret", "from-flag", "--redis", "10.0.0.1:6379"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.JWTSecret != "from-flag" || cfg.Backends.Redis.Addr != "10.0.0.1:6379" || cfg.Backends.Redis.Password != "" {
		t.Errorf("flags do not win over the environment: secret %q redis %+v", cfg.JWTSecret, cfg.Backends.Redis)
	}
}

// TestTokenCmd checks the token command's errors, which must name the flag
// to add, and a good mod token.
func TestTokenCmd(t *testing.T) {
	t.Setenv("DANMAKU_JWT_SECRET", testSecret)
	for _, c := range []struct {
		name string
		args []string
		want string
	}{
		{"ModWithoutRooms", []string{"--sub", "m1", "--role", "mod"}, "--role mod needs --rooms"},
		{"StreamerWithoutRooms", []string{"--sub", "s1", "--role", "streamer", "--rooms", " , "}, "--role streamer needs --rooms"},
		{"NoSub", []string{"--role", "viewer"}, "--sub is required"},
		{"BadRole", []string{"--sub", "a", "--role", "admin"}, `unknown --role "admin"`},
		{"BadTTL", []string{"--sub", "a", "--ttl", "-1h"}, "--ttl"},
		{"Stray", []string{"--sub", "a", "extra"}, "unexpected arguments"},
	} {
		t.Run(c.name, func(t *testing.T) {
			var out bytes.Buffer
			err := run(context.Background(), append([]string{"token"}, c.args...), &out, io.Discard)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("token %q: error %v, want it to say %q", c.args, err, c.want)
			}
			if out.Len() > 0 {
				t.Errorf("token %q printed a token: %q", c.args, out.String())
			}
		})
	}
	t.Run("NoSecret", func(t *testing.T) {
		t.Setenv("DANMAKU_JWT_SECRET", "")
		err := run(context.Background(), []string{"token", "--sub", "a"}, io.Discard, io.Discard)
		if err == nil || !strings.Contains(err.Error(), "DANMAKU_JWT_SECRET") {
			t.Fatalf("token without a secret: %v", err)
		}
	})

	var out bytes.Buffer
	if err := run(context.Background(), []string{"token", "--sub", "m1", "--role", "mod", "--rooms", "demo, b"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	signer, _ := auth.NewSigner(testSecret)
	c, err := signer.Verify(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatal(err)
	}
	if c.Subject != "m1" || c.Role != auth.RoleMod || !slices.Equal(c.Rooms, []string{"demo", "b"}) {
		t.Errorf("claims %+v", c)
	}
}

// TestVersionCmd checks that version prints the module path and the Go
// version of the build.
func TestVersionCmd(t *testing.T) {
	for _, a := range [][]string{{"version"}, {"--version"}} {
		var out bytes.Buffer
		if err := run(context.Background(), a, &out, io.Discard); err != nil {
			t.Fatal(err)
		}
		s := out.String()
		if !strings.HasPrefix(s, "danmaku ") || !strings.Contains(s, "github.com/danmaku-live/danmaku") || !strings.Contains(s, runtime.Version()) {
			t.Errorf("%v:\n%s", a, s)
		}
	}
	if err := run(context.Background(), []string{"version", "x"}, io.Discard, io.Discard); err == nil {
		t.Error("version x: no error")
	}
}

// TestBackendAddr checks the Redis and ClickHouse address forms and that
// an error does not repeat the password.
func TestBackendAddr(t *testing.T) {
	for _, c := range []struct {
		scheme, addr     string
		host, user, pass string
		bad              bool
	}{
		{"redis", "127.0.0.1:6379", "127.0.0.1:6379", "", "", false},
		{"redis", "redis://:pw@10.0.0.1:6379", "10.0.0.1:6379", "", "pw", false},
		{"clickhouse", "clickhouse://u:p%40ss@ch:9000", "ch:9000", "u", "p@ss", false},
		{"clickhouse", "clickhouse://u:p@ch:9000/db", "", "", "", true},
		{"redis", "redis://:secret-pw@host", "", "", "", true},
		{"redis", "clickhouse://:secret-pw@h:1", "", "", "", true},
		{"redis", "redis://:secret-pw@h:1?x=1", "", "", "", true},
	} {
		host, user, pass, err := backendAddr(c.scheme, c.addr)
		if c.bad {
			if err == nil {
				t.Errorf("%s %q accepted", c.scheme, c.addr)
			} else if strings.Contains(err.Error(), "secret-pw") {
				t.Errorf("error repeats the password: %v", err)
			}
			continue
		}
		if err != nil || host != c.host || user != c.user || pass != c.pass {
			t.Errorf("%s %q: %q %q %q %v", c.scheme, c.addr, host, user, pass, err)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for the app's logger and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestDevModToken checks that danmaku all with a random development
// secret logs a moderator token for the demo room that the moderation API
// accepts, and that it does not with a configured secret.
func TestDevModToken(t *testing.T) {
	t.Setenv("DANMAKU_JWT_SECRET", "")
	tokRe := regexp.MustCompile(`development moderator token.* token=(\S+)`)
	for _, dev := range []bool{true, false} {
		httpAddr := freeAddr(t)
		args := []string{"--http", httpAddr, "--ws", freeAddr(t), "--demo=false", "--drain-timeout", "1s"}
		if !dev {
			args = append(args, "--jwt-secret", testSecret)
		}
		var log syncBuffer
		cfg, err := parseConfig("all", args, &log)
		if err != nil {
			t.Fatal(err)
		}
		a, err := app.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- a.Run(ctx) }()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(log.String(), "danmaku is running") && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		m := tokRe.FindStringSubmatch(log.String())
		if !dev {
			if m != nil || strings.Contains(log.String(), "development moderator token") {
				t.Errorf("a token is logged with a configured secret:\n%s", log.String())
			}
		} else if m == nil {
			t.Errorf("no development moderator token in the log:\n%s", log.String())
		} else {
			for tok, want := range map[string]int{m[1]: http.StatusOK, "": http.StatusUnauthorized} {
				req, _ := http.NewRequest("GET", "http://"+httpAddr+"/api/rooms/demo/settings", nil)
				if tok != "" {
					req.Header.Set("Authorization", "Bearer "+tok)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != want {
					t.Errorf("settings of demo with token %q: %s, want %d", tok, resp.Status, want)
				}
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

// TestWSPortTaken checks that a gateway whose WebSocket port is taken
// fails with the bind error and never logs that it is running.
func TestWSPortTaken(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for range 3 { // the banner raced the bind error: try it a few times
		var log syncBuffer
		cfg, err := parseConfig("all", []string{"--http", freeAddr(t), "--ws", ln.Addr().String(), "--demo=false",
			"--jwt-secret", testSecret}, &log)
		if err != nil {
			t.Fatal(err)
		}
		a, err := app.New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err = a.Run(ctx)
		cancel()
		if err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Fatalf("Run with the WebSocket port taken: %v", err)
		}
		if strings.Contains(log.String(), "danmaku is running") {
			t.Fatalf("logged as running before the bind error:\n%s", log.String())
		}
	}
}
