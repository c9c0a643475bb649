package testenv

import (
	"fmt"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
)

// recorder is a testing.TB that records how the test ended instead of
// ending the real test. Fatalf and Skipf stop the calling goroutine, like
// the real ones.
type recorder struct {
	testing.TB
	fatal, skip string
}

func (r *recorder) Helper() {}

func (r *recorder) Fatalf(format string, args ...any) {
	r.fatal = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

func (r *recorder) Skipf(format string, args ...any) {
	r.skip = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// call runs Addr on r in its own goroutine so Goexit ends only that one.
func call(r *recorder, env string) (got string) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		got = Addr(r, env)
	}()
	<-done
	return got
}

func TestAddr(t *testing.T) {
	const env = "DANMAKU_TEST_TESTENV_PROBE"
	tests := []struct {
		name      string
		value, ci string
		want      string
		wantFatal bool
		wantSkip  bool
	}{
		{name: "set", value: "127.0.0.1:6379", want: "127.0.0.1:6379"},
		{name: "set under CI", value: "127.0.0.1:6379", ci: "true", want: "127.0.0.1:6379"},
		{name: "missing skips", wantSkip: true},
		{name: "missing under CI fails", ci: "true", wantFatal: true},
		{name: "CI other than true skips", ci: "1", wantSkip: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(env, tt.value)
			t.Setenv("CI", tt.ci)
			r := &recorder{TB: t}
			got := call(r, env)
			if got != tt.want {
				t.Errorf("Addr = %q, want %q", got, tt.want)
			}
			if (r.fatal != "") != tt.wantFatal {
				t.Errorf("fatal = %q, want fatal %v", r.fatal, tt.wantFatal)
			}
			if (r.skip != "") != tt.wantSkip {
				t.Errorf("skip = %q, want skip %v", r.skip, tt.wantSkip)
			}
			for _, msg := range []string{r.fatal, r.skip} {
				if msg != "" && !strings.Contains(msg, env) {
					t.Errorf("message %q does not name %s", msg, env)
				}
			}
			if tt.wantSkip && !strings.Contains(r.skip, "make test") {
				t.Errorf("skip message %q does not say to run make test", r.skip)
			}
		})
	}
}

// TestFreePort checks that FreePort hands out bindable ports below the
// kernel's ephemeral range and never the same one twice.
func TestFreePort(t *testing.T) {
	seen := map[int]bool{}
	for range 50 {
		p := FreePort(t)
		if p < freeLow || p >= freeHigh {
			t.Fatalf("FreePort = %d, want in [%d, %d)", p, freeLow, freeHigh)
		}
		if seen[p] {
			t.Fatalf("FreePort returned %d twice", p)
		}
		seen[p] = true
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			t.Fatalf("listen on FreePort's %d: %v", p, err)
		}
		ln.Close()
	}
}
