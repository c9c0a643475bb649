package gateway

import (
	"bufio"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestEngineRestartsAfterAcceptFails runs a gateway in a child process
// whose open-file limit is lower than its connection cap, floods it with
// connections until gnet's accept fails with EMFILE (which stops gnet's
// engine), then checks that the gateway serves upgrades again.
func TestEngineRestartsAfterAcceptFails(t *testing.T) {
	if os.Getenv("DANMAKU_GW_CHILD") == "1" {
		runLowFileLimitGateway(t)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestEngineRestartsAfterAcceptFails$", "-test.v")
	cmd.Env = append(os.Environ(), "DANMAKU_GW_CHILD=1")
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		stdin.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("child gateway: %v (the engine never restarted?)", err)
			}
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			<-done
			t.Error("child gateway did not stop")
		}
	}()
	sc := bufio.NewScanner(stdout)
	addr := ""
	for addr == "" && sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR "); ok {
			addr = a
		}
	}
	if addr == "" {
		t.Fatal("child gateway did not start")
	}
	go func() { _, _ = io.Copy(io.Discard, stdout) }()
	// 600 connections against a limit of 256 files: accept fails.
	var conns []net.Conn
	for range 600 {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break // the engine stopped and closed its listener
		}
		conns = append(conns, c)
	}
	time.Sleep(300 * time.Millisecond)
	for _, c := range conns {
		c.Close()
	}
	// The gateway listens again and upgrades.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := dialRawNoFail(addr)
		if r != nil {
			st := wstest.New(t, r).Upgrade("/ws", "")
			r.Close()
			if st == 101 {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("gateway does not serve upgrades after accept failed")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func dialRawNoFail(addr string) net.Conn {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return nil
	}
	return c
}

// runLowFileLimitGateway is the child process of
// TestEngineRestartsAfterAcceptFails.
func runLowFileLimitGateway(t *testing.T) {
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: 256, Max: 256}); err != nil {
		t.Skip("cannot lower the open-file limit:", err)
	}
	gw := startGW(t, func(c *Config) {
		c.MaxConns = 5000 // above the file limit: accept fails first
		c.MaxConnsPerIP = -1
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	})
	os.Stdout.WriteString("ADDR " + gw.addr + "\n")
	_, _ = io.Copy(io.Discard, os.Stdin) // until the parent is done
	if n := counterValue(gw.s.m.restarts); n == 0 {
		t.Error("the engine never restarted")
	}
}
