// Package testenv connects tests to the real servers that `make test` starts.
//
// `make test` runs deploy/dev/env.sh, which starts Redis, ClickHouse and a
// Kafka-protocol broker on loopback and exports their addresses in the
// DANMAKU_TEST_* variables. Tests read them through [Addr]: outside CI a
// missing variable skips the test, under CI (CI=true) it fails it, because a
// green run that skipped the backend tests proves nothing.
package testenv

import (
	"net"
	"os"
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

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago.
// Another process may take it before the caller binds it, so prefer
// listening on port 0 where the code under test allows it.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: listen on a free port: %v", err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if err := ln.Close(); err != nil {
		t.Fatalf("testenv: close probe listener: %v", err)
	}
	return port
}
