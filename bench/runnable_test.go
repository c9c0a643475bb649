package bench

import (
	"os"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestRunnableThreads: a process with goroutines spinning on locked
// threads has those threads runnable (running or waiting for a CPU) in
// /proc; the sampler averages them, and the host's count holds them too.
func TestRunnableThreads(t *testing.T) {
	if _, err := os.Stat("/proc/self/task"); err != nil {
		t.Skip("no /proc")
	}
	const spinners = 3
	// A P each, and one for the test: a locked thread without a P
	// sleeps, where one with a P waits for a CPU (runnable).
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(spinners + 2))
	var stop atomic.Bool
	started := make(chan struct{}, spinners)
	for range spinners {
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			started <- struct{}{}
			for !stop.Load() {
			}
		}()
	}
	defer stop.Store(true)
	for range spinners {
		<-started
	}
	if n := RunnableThreads(os.Getpid()); n < spinners {
		t.Errorf("%d runnable threads with %d spinning", n, spinners)
	}
	if RunnableThreads(-1) != 0 {
		t.Error("a missing process counts threads")
	}
	s := startRunnable(map[string][]int{"self": {os.Getpid()}, "none": nil}, 10*time.Millisecond)
	time.Sleep(120 * time.Millisecond)
	got := s.finish()
	// The host's count is read at another instant than the threads':
	// only that it saw some.
	if got["self"] < spinners || got["host"] < 1 {
		t.Errorf("averages %v: want self ≥ %d and host ≥ 1", got, spinners)
	}
	if v, ok := got["none"]; !ok || v != 0 {
		t.Errorf("a kind with no process: %v, %v; want 0 present", v, ok)
	}
	if again := s.finish(); again["self"] != got["self"] {
		t.Error("finish twice differs")
	}
}
