// Package presencetest holds the shared test suites every implementation
// of the pkg/presence interfaces must pass: the in-memory defaults and the
// Redis adapter run the same subtests.
//
// Each suite takes a factory that returns a fresh, empty store for one
// subtest (and registers its own cleanup with t.Cleanup). Subtests run in
// parallel, so the factory must be safe to call concurrently and the stores
// it returns must not share state (a Redis factory gives each one its own
// key prefix). Expiry subtests use ttls of a few hundred milliseconds and
// poll for at most a few seconds, so a suite takes about a second.
package presencetest

import (
	"context"
	"testing"
	"time"
)

// shortTTL is the ttl of the entries expiry subtests wait out.
const shortTTL = 300 * time.Millisecond

// longTTL outlives any subtest.
const longTTL = time.Minute

// ctxFor returns a context that ends with t, bounded so that a stuck store
// fails the test instead of hanging it.
func ctxFor(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// eventually polls cond every 20ms until it returns true or 3 s pass.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not true after 3s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// testCase is one named subtest of a suite, run on a fresh store of type
// S.
type testCase[S any] struct {
	name string
	f    func(t *testing.T, s S)
}

// run runs each case as a parallel subtest on a store newS returns.
func run[S any](t *testing.T, newS func(t *testing.T) S, cases []testCase[S]) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			c.f(t, newS(t))
		})
	}
}
