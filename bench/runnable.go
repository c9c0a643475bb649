// The runnable-thread sampler (--sample-runnable): how many threads run or wait for a CPU during the traffic, by process kind.

package bench

import (
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// runnableEvery is the sampler's period: often enough that a run's
// average holds hundreds of samples, rarely enough that reading every
// thread's stat costs little (about 20 µs a thread read).
const runnableEvery = 100 * time.Millisecond

// RunnableThreads is how many of process pid's threads are running or
// waiting for a CPU (state R in /proc/PID/task/TID/stat); 0 when it
// cannot be read.
func RunnableThreads(pid int) int {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	tasks, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	n := 0
	for _, t := range tasks {
		b, err := os.ReadFile(dir + "/" + t.Name() + "/stat")
		if err != nil {
			continue // the thread ended
		}
		// The state follows the command name, which is in parentheses
		// and may hold spaces.
		if i := bytes.LastIndexByte(b, ')'); i >= 0 && i+2 < len(b) && b[i+2] == 'R' {
			n++
		}
	}
	return n
}

// procsRunning is the host's threads running or waiting for a CPU
// (procs_running in /proc/stat); -1 when it cannot be read.
func procsRunning() int {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "procs_running "); ok {
			if n, err := strconv.Atoi(strings.TrimSpace(rest)); err == nil {
				return n
			}
		}
	}
	return -1
}

// runnableSampler averages, every runnableEvery until finish, the
// threads running or waiting for a CPU: the host's ("host") and, for each
// kind, the sum over its processes. Its fields are its goroutine's until
// done is closed.
type runnableSampler struct {
	kinds map[string][]int
	sum   map[string]float64
	n     int
	stop  chan struct{}
	done  chan struct{}
	once  sync.Once
}

// startRunnable starts sampling the processes of each kind.
func startRunnable(kinds map[string][]int, every time.Duration) *runnableSampler {
	s := &runnableSampler{kinds: kinds, sum: map[string]float64{}, stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.stop:
				return
			case <-t.C:
				s.sample()
			}
		}
	}()
	return s
}

func (s *runnableSampler) sample() {
	host := procsRunning()
	if host < 0 {
		return
	}
	s.sum["host"] += float64(host)
	for kind, pids := range s.kinds {
		for _, pid := range pids {
			s.sum[kind] += float64(RunnableThreads(pid))
		}
	}
	s.n++
}

// finish stops the sampling and returns the averages (nil without a
// sample).
func (s *runnableSampler) finish() map[string]float64 {
	s.once.Do(func() { close(s.stop) })
	<-s.done
	if s.n == 0 {
		return nil
	}
	out := make(map[string]float64, len(s.sum))
	for k, v := range s.sum {
		out[k] = v / float64(s.n)
	}
	for kind := range s.kinds {
		out[kind] += 0 // a kind with no runnable thread in any sample reads 0
	}
	return out
}
