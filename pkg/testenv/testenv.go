// Package testenv connects tests to the real servers that `make test` starts.
//
// `make test` runs deploy/dev/env.sh, which starts Redis, ClickHouse and a
// Kafka-protocol broker on loopback and exports their addresses in the
// DANMAKU_TEST_* variables. Tests read them through [Addr]: outside CI a
// missing variable skips the test, under CI (CI=true) it fails it, because a
// green run that skipped the backend tests proves nothing.
package testenv

import (
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"sync"
	"testing"
)

// Names of the variables that carry the test servers' addresses.
const (
	// Redis is the Redis address, host:port.
	Redis = "DANMAKU_TEST_REDIS"
	// ClickHouse is the ClickHouse native-protocol address, host:port.
	ClickHouse = "DANMAKU_TEST_CLICKHOUSE"
	// Kafka is the comma-separated list of Kafka-protocol brokers.
	Kafka = "DANMAKU_TEST_KAFKA"
)

// Addr returns the value of the environment variable env, the address of a
// test server. When it is empty, Addr fails the test if CI=true and skips it
// otherwise; in both cases it does not return.
func Addr(t testing.TB, env string) string {
	t.Helper()
	if v := os.Getenv(env); v != "" {
		return v
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s not set: make test starts the server; under CI a missing server is a failure", env)
	}
	t.Skipf("%s not set: run `make test` to start the test servers (or export %s=host:port)", env, env)
	return ""
}

// Ports FreePort hands out: below Linux's ephemeral range (32768–60999 by
// default), so no outgoing connection of this or another process is given
// one of them by the kernel between the probe and the caller's bind, and
// apart from the 20000–31999 that deploy/dev picks for the test servers.
const (
	freeLow  = 10000
	freeHigh = 20000
)

var (
	freeMu    sync.Mutex
	freeTaken = map[int]bool{} // ports this process handed out already
)

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago and
// that this process has not returned before. Another process may still take
// it before the caller binds it, so prefer listening on port 0 where the
// code under test allows it.
func FreePort(t testing.TB) int {
	t.Helper()
	freeMu.Lock()
	defer freeMu.Unlock()
	for range 1000 {
		port := freeLow + rand.IntN(freeHigh-freeLow)
		if freeTaken[port] {
			continue
		}
		ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
		if err != nil {
			continue // in use
		}
		if err := ln.Close(); err != nil {
			t.Fatalf("testenv: close probe listener: %v", err)
		}
		freeTaken[port] = true
		return port
	}
	t.Fatalf("testenv: no free port in %d-%d on 127.0.0.1", freeLow, freeHigh-1)
	return 0
}
