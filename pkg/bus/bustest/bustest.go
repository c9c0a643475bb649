// Package bustest is the shared test suite every bus.Bus implementation
// passes: the in-memory bus and the Kafka adapter run the same subtests, so
// pipeline stages can rely on one set of semantics (per-key order, consumer
// groups with explicit commits and at-least-once redelivery, group-less
// consumers that start at the newest record, key filters, cancellation,
// partitions read by choice with bus.KeyPartition placing the keys).
//
// Every subtest uses its own stream and group names, so the suite can run
// against a broker shared with other tests.
package bustest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

// waitFor bounds how long a subtest waits for records (group joins and
// rebalances on a real broker take a few heartbeats).
const waitFor = 20 * time.Second

// Run runs the suite. The bus must have at least two partitions per
// stream. newBus returns a fresh bus for one subtest; it
// registers its own cleanup (the suite closes some buses itself, so Close
// must be idempotent).
func Run(t *testing.T, newBus func(t *testing.T) bus.Bus) {
	tests := []struct {
		name string
		fn   func(t *testing.T, b bus.Bus)
	}{
		{"KeyOrderConcurrentPublishers", testKeyOrder},
		{"KeysSpreadOverPartitions", testKeysSpread},
		{"GroupResumesAfterCommit", testGroupResume},
		{"TwoGroupsEachGetEverything", testTwoGroups},
		{"OneGroupSplitsAndTakesOver", testGroupSplit},
		{"GrouplessStartsAtNewest", testGroupless},
		{"KeyFilter", testKeyFilter},
		{"FetchHonoursContext", testFetchContext},
		{"PublishAfterCloseFails", testClose},
		{"StaleCommitRefused", testStaleCommit},
		{"AppendToPartition", testAppend},
		{"PartitionConsumer", testPartitionConsumer},
		{"PartitionConsumerFollowsKeys", testPartitionKeys},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newBus(t))
		})
	}
}

// uniq returns a stream or group name no other test uses. It is a valid
// Kafka topic name suffix.
func uniq(kind string) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return "bt-" + kind + "-" + hex.EncodeToString(b[:])
}

func publish(t *testing.T, p bus.Publisher, recs ...bus.Record) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := p.Publish(ctx, recs...); err != nil {
		t.Fatalf("Publish: %v", err)
	}
}

func consumer(t *testing.T, b bus.Bus, stream string, opts bus.ConsumerOptions) bus.Consumer {
	t.Helper()
	c, err := b.Consumer(stream, opts)
	if err != nil {
		t.Fatalf("Consumer(%q, %+v): %v", stream, opts, err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// collect fetches (and, with commit, commits) until done reports true for
// the records gathered so far, failing the test after waitFor.
func collect(t *testing.T, c bus.Consumer, commit bool, done func([]bus.Record) bool) []bus.Record {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	var all []bus.Record
	for !done(all) {
		recs, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("Fetch after %d records: %v", len(all), err)
		}
		if len(recs) == 0 {
			t.Fatalf("Fetch returned no records and no error")
		}
		if commit {
			if err := c.Commit(ctx, recs...); err != nil {
				t.Fatalf("Commit: %v", err)
			}
		}
		all = append(all, recs...)
	}
	return all
}

// hasValues reports whether recs hold every value in want.
func hasValues(want map[string]bool) func([]bus.Record) bool {
	return func(recs []bus.Record) bool {
		seen := 0
		got := make(map[string]bool, len(recs))
		for _, r := range recs {
			v := string(r.Value)
			if want[v] && !got[v] {
				got[v] = true
				seen++
			}
		}
		return seen == len(want)
	}
}

// atLeast reports whether n records were gathered.
func atLeast(n int) func([]bus.Record) bool {
	return func(recs []bus.Record) bool { return len(recs) >= n }
}

func testKeyOrder(t *testing.T, b bus.Bus) {
	stream := uniq("order")
	c := consumer(t, b, stream, bus.ConsumerOptions{Group: uniq("g")})
	const pubs, keys, per, chunk = 4, 3, 40, 5
	p := b.Publisher(stream)
	var wg sync.WaitGroup
	errs := make(chan error, pubs)
	for pi := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), waitFor)
			defer cancel()
			// Each call carries chunk records of one key, so order within
			// a call and across calls of one publisher is checked.
			for k := range keys {
				for i := 0; i < per; i += chunk {
					recs := make([]bus.Record, 0, chunk)
					for j := i; j < i+chunk; j++ {
						recs = append(recs, bus.Record{
							Key:   "room-" + strconv.Itoa(k),
							Value: fmt.Appendf(nil, "%d:%d:%d", pi, k, j),
						})
					}
					if err := p.Publish(ctx, recs...); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatalf("Publish: %v", err)
	}
	all := collect(t, c, true, atLeast(pubs*keys*per))
	if len(all) != pubs*keys*per {
		t.Fatalf("got %d records, want %d", len(all), pubs*keys*per)
	}
	partOf := map[string]int{}
	last := map[string]int{} // "pub:key" -> last index
	lastOff := map[int]int64{}
	for _, r := range all {
		if p, ok := partOf[r.Key]; ok && p != r.Partition {
			t.Fatalf("key %s in partitions %d and %d", r.Key, p, r.Partition)
		}
		partOf[r.Key] = r.Partition
		if o, ok := lastOff[r.Partition]; ok && r.Offset <= o {
			t.Fatalf("partition %d: offset %d after %d", r.Partition, r.Offset, o)
		}
		lastOff[r.Partition] = r.Offset
		f := strings.Split(string(r.Value), ":")
		if len(f) != 3 {
			t.Fatalf("bad value %q", r.Value)
		}
		i, _ := strconv.Atoi(f[2])
		id := f[0] + ":" + f[1]
		if prev, ok := last[id]; ok && i != prev+1 || !ok && i != 0 {
			t.Fatalf("publisher:key %s: record %d after %d (seen=%v)", id, i, prev, ok)
		}
		last[id] = i
	}
}

func testKeysSpread(t *testing.T, b bus.Bus) {
	stream := uniq("spread")
	c := consumer(t, b, stream, bus.ConsumerOptions{Group: uniq("g")})
	var recs []bus.Record
	for i := range 64 {
		recs = append(recs, bus.Record{Key: "room-" + strconv.Itoa(i), Value: []byte(strconv.Itoa(i))})
	}
	publish(t, b.Publisher(stream), recs...)
	all := collect(t, c, true, atLeast(len(recs)))
	parts := map[int]bool{}
	for _, r := range all {
		parts[r.Partition] = true
	}
	if len(parts) < 2 {
		t.Fatalf("64 keys landed in %d partition(s), want them spread", len(parts))
	}
}

func testGroupResume(t *testing.T, b bus.Bus) {
	stream, group := uniq("resume"), uniq("g")
	p := b.Publisher(stream)
	var recs []bus.Record
	for i := range 10 {
		recs = append(recs, bus.Record{Key: "room-a", Value: []byte(strconv.Itoa(i))})
	}
	publish(t, p, recs...)

	c1, err := b.Consumer(stream, bus.ConsumerOptions{Group: group})
	if err != nil {
		t.Fatal(err)
	}
	got := collect(t, c1, false, atLeast(10))
	// Commit only the fifth record: the group resumes after it, so 0..4
	// are done and 5..9, fetched but not committed, come again.
	var fifth *bus.Record
	for i := range got {
		if string(got[i].Value) == "4" {
			fifth = &got[i]
		}
	}
	if fifth == nil {
		t.Fatalf("record 4 not fetched: %v", got)
	}
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	if err := c1.Commit(ctx, *fifth); err != nil {
		t.Fatalf("Commit: %v", err)
	}
	if err := c1.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	c2 := consumer(t, b, stream, bus.ConsumerOptions{Group: group})
	again := collect(t, c2, true, atLeast(5))
	var vals []string
	for _, r := range again {
		vals = append(vals, string(r.Value))
	}
	if want := "5 6 7 8 9"; strings.Join(vals, " ") != want {
		t.Fatalf("after restart got %v, want %s", vals, want)
	}

	// Records published later reach the resumed consumer too.
	publish(t, p, bus.Record{Key: "room-a", Value: []byte("10")})
	more := collect(t, c2, true, atLeast(1))
	if string(more[0].Value) != "10" {
		t.Fatalf("got %q, want 10", more[0].Value)
	}
}

func testTwoGroups(t *testing.T, b bus.Bus) {
	stream := uniq("groups")
	c1 := consumer(t, b, stream, bus.ConsumerOptions{Group: uniq("g1")})
	c2 := consumer(t, b, stream, bus.ConsumerOptions{Group: uniq("g2")})
	want := map[string]bool{}
	var recs []bus.Record
	for i := range 40 {
		v := "v" + strconv.Itoa(i)
		want[v] = true
		recs = append(recs, bus.Record{Key: "room-" + strconv.Itoa(i%7), Value: []byte(v)})
	}
	publish(t, b.Publisher(stream), recs...)
	for i, c := range []bus.Consumer{c1, c2} {
		got := collect(t, c, true, hasValues(want))
		if len(got) != len(recs) {
			t.Fatalf("group %d got %d records, want %d", i+1, len(got), len(recs))
		}
	}
}

// batch is what a runner saw in one Fetch.
type batch struct {
	from int
	recs []bus.Record
	gen  int64
}

// runner fetches in its own goroutine (a Consumer is used by one goroutine
// at a time) and commits each batch while commit is set.
type runner struct {
	id     int
	c      bus.Consumer
	commit atomic.Bool
	cancel context.CancelFunc
	done   chan struct{}
	errs   chan error
}

func startRunner(id int, c bus.Consumer, out chan<- batch) *runner {
	ctx, cancel := context.WithCancel(context.Background())
	r := &runner{id: id, c: c, cancel: cancel, done: make(chan struct{}), errs: make(chan error, 1)}
	r.commit.Store(true)
	go func() {
		defer close(r.done)
		for {
			recs, err := c.Fetch(ctx)
			if err != nil {
				if ctx.Err() == nil {
					r.errs <- fmt.Errorf("consumer %d: Fetch: %w", id, err)
				}
				return
			}
			if r.commit.Load() {
				// A commit refused because the group moved the partition
				// meanwhile (ErrNotOwner) is routine while members join.
				if err := c.Commit(ctx, recs...); err != nil && ctx.Err() == nil && !errors.Is(err, bus.ErrNotOwner) {
					r.errs <- fmt.Errorf("consumer %d: Commit: %w", id, err)
					return
				}
			}
			var gen int64
			if rb, ok := c.(bus.Rebalancer); ok {
				gen = rb.Generation()
			}
			select {
			case out <- batch{from: id, recs: recs, gen: gen}:
			case <-ctx.Done():
				return
			}
		}
	}()
	return r
}

func (r *runner) stop() {
	r.cancel()
	<-r.done
}

// splitTest is testGroupSplit's state: members A (0) and B (1) of one
// group, their runners' batches arriving on out, all before deadline.
type splitTest struct {
	t        *testing.T
	p        bus.Publisher
	keys     []string
	out      chan batch
	ra, rb   *runner
	cb       bus.Consumer // B's consumer
	deadline <-chan time.Time
}

func testGroupSplit(t *testing.T, b bus.Bus) {
	stream, group := uniq("split"), uniq("g")
	s := &splitTest{t: t, p: b.Publisher(stream), out: make(chan batch, 64)}
	s.ra = startRunner(0, consumer(t, b, stream, bus.ConsumerOptions{Group: group}), s.out)
	defer s.ra.stop()
	s.cb = consumer(t, b, stream, bus.ConsumerOptions{Group: group})
	s.rb = startRunner(1, s.cb, s.out)
	defer s.rb.stop()
	s.keys = make([]string, 16)
	for i := range s.keys {
		s.keys[i] = "room-" + strconv.Itoa(i)
	}
	s.deadline = time.After(waitFor)

	settled := s.settle()
	_, rebalancer := s.cb.(bus.Rebalancer)
	if rebalancer && settled <= 0 {
		t.Fatalf("settled group reports generation %d, want > 0", settled)
	}
	s.bothCommit()
	if lastGen := s.takeover(settled); rebalancer && lastGen <= settled {
		t.Fatalf("generation after the takeover %d, want above %d", lastGen, settled)
	}
}

// splitRecords is how many records each phase of testGroupSplit publishes.
const splitRecords = 100

// recv returns the next batch of either member, failing the test on a
// runner's error or at the deadline.
func (s *splitTest) recv() batch {
	s.t.Helper()
	select {
	case bt := <-s.out:
		return bt
	case err := <-s.ra.errs:
		s.t.Fatal(err)
	case err := <-s.rb.errs:
		s.t.Fatal(err)
	case <-s.deadline:
		s.t.Fatalf("timed out")
	}
	return batch{}
}

// publishAll publishes splitRecords records valued prefix0, prefix1, ...
// over the keys.
func (s *splitTest) publishAll(prefix string) {
	var recs []bus.Record
	for i := range splitRecords {
		recs = append(recs, bus.Record{Key: s.keys[i%len(s.keys)], Value: []byte(prefix + strconv.Itoa(i))})
	}
	publish(s.t, s.p, recs...)
}

// settle warms up until both members own partitions in the same
// generation: then the group is stable and no record moves between them.
// It returns that generation.
func (s *splitTest) settle() int64 {
	var seen [2]bool
	var gens [2]int64
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for !(seen[0] && seen[1] && gens[0] == gens[1]) {
		select {
		case <-tick.C:
			var recs []bus.Record
			for _, k := range s.keys {
				recs = append(recs, bus.Record{Key: k, Value: []byte("warm")})
			}
			publish(s.t, s.p, recs...)
		case bt := <-s.out:
			seen[bt.from] = true
			gens[bt.from] = bt.gen
		case err := <-s.ra.errs:
			s.t.Fatal(err)
		case err := <-s.rb.errs:
			s.t.Fatal(err)
		case <-s.deadline:
			s.t.Fatalf("group never settled: seen=%v gens=%v", seen, gens)
		}
	}
	return gens[0]
}

// bothCommit checks that, both members committing, every record reaches
// exactly one of them and each gets some.
func (s *splitTest) bothCommit() {
	s.publishAll("x")
	owner := map[string]int{}
	var per [2]int
	for len(owner) < splitRecords {
		bt := s.recv()
		for _, r := range bt.recs {
			v := string(r.Value)
			if v[0] != 'x' {
				continue
			}
			if o, dup := owner[v]; dup {
				s.t.Fatalf("%s delivered to consumer %d and consumer %d", v, o, bt.from)
			}
			owner[v] = bt.from
			per[bt.from]++
		}
	}
	if per[0] == 0 || per[1] == 0 {
		s.t.Fatalf("records per consumer %v: partitions not split", per)
	}
}

// takeover has B stop committing, fetch some records and leave: A must
// take over B's partitions and get B's uncommitted records. It returns
// the generation of A's last batch (settled if none came after it).
func (s *splitTest) takeover(settled int64) int64 {
	s.rb.commit.Store(false)
	s.publishAll("y")
	gotA := map[string]bool{}
	for bDone := false; !bDone; {
		bt := s.recv()
		for _, r := range bt.recs {
			if r.Value[0] == 'y' {
				if bt.from == 0 {
					gotA[string(r.Value)] = true
				} else {
					bDone = true
				}
			}
		}
	}
	s.rb.stop()
	if err := s.cb.Close(); err != nil {
		s.t.Fatalf("Close: %v", err)
	}
	lastGen := settled
	for len(gotA) < splitRecords {
		bt := s.recv()
		if bt.from != 0 {
			continue // B's last batches, delivered before it stopped
		}
		lastGen = bt.gen
		for _, r := range bt.recs {
			if r.Value[0] == 'y' {
				gotA[string(r.Value)] = true
			}
		}
	}
	return lastGen
}

func testGroupless(t *testing.T, b bus.Bus) {
	stream := uniq("newest")
	p := b.Publisher(stream)
	var old []bus.Record
	for i := range 10 {
		old = append(old, bus.Record{Key: "room-" + strconv.Itoa(i), Value: []byte("old")})
	}
	publish(t, p, old...)
	c := consumer(t, b, stream, bus.ConsumerOptions{})
	want := map[string]bool{}
	var recs []bus.Record
	for i := range 10 {
		v := "new" + strconv.Itoa(i)
		want[v] = true
		recs = append(recs, bus.Record{Key: "room-" + strconv.Itoa(i), Value: []byte(v)})
	}
	publish(t, p, recs...)
	got := collect(t, c, true, hasValues(want))
	for _, r := range got {
		if string(r.Value) == "old" {
			t.Fatalf("group-less consumer got a record published before it opened")
		}
	}
	if len(got) != len(recs) {
		t.Fatalf("got %d records, want %d", len(got), len(recs))
	}
}

func testKeyFilter(t *testing.T, b bus.Bus) {
	for _, tc := range []struct {
		name  string
		group bool
	}{{"Groupless", false}, {"Group", true}} {
		t.Run(tc.name, func(t *testing.T) {
			stream := uniq("key")
			opts := bus.ConsumerOptions{Key: "gw-3"}
			if tc.group {
				opts.Group = uniq("g")
			}
			c := consumer(t, b, stream, opts)
			var recs []bus.Record
			want := map[string]bool{}
			// 32 keys over the partitions: some share gw-3's partition.
			for i := range 96 {
				k := "gw-" + strconv.Itoa(i%32)
				v := k + "/" + strconv.Itoa(i)
				if k == opts.Key {
					want[v] = true
				}
				recs = append(recs, bus.Record{Key: k, Value: []byte(v)})
			}
			publish(t, b.Publisher(stream), recs...)
			// A marker after everything: once it is in, nothing else of
			// the key is pending.
			publish(t, b.Publisher(stream), bus.Record{Key: opts.Key, Value: []byte("end")})
			want["end"] = true
			got := collect(t, c, true, hasValues(want))
			if len(got) != len(want) {
				t.Fatalf("got %d records, want %d: %v", len(got), len(want), got)
			}
			for i, r := range got {
				if r.Key != opts.Key {
					t.Fatalf("record %d has key %q, want only %q", i, r.Key, opts.Key)
				}
			}
			if string(got[len(got)-1].Value) != "end" {
				t.Fatalf("last record %q, want end (order kept)", got[len(got)-1].Value)
			}
		})
	}
}

func testFetchContext(t *testing.T, b bus.Bus) {
	for _, tc := range []struct {
		name   string
		group  bool
		cancel bool
	}{
		{"GroupDeadline", true, false},
		{"GroupCancel", true, true},
		{"GrouplessDeadline", false, false},
		{"GrouplessCancel", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stream := uniq("ctx")
			var opts bus.ConsumerOptions
			if tc.group {
				opts.Group = uniq("g")
			}
			c := consumer(t, b, stream, opts)
			var ctx context.Context
			var cancel context.CancelFunc
			want := context.DeadlineExceeded
			if tc.cancel {
				ctx, cancel = context.WithCancel(context.Background())
				time.AfterFunc(100*time.Millisecond, cancel)
				want = context.Canceled
			} else {
				ctx, cancel = context.WithTimeout(context.Background(), 100*time.Millisecond)
			}
			defer cancel()
			start := time.Now()
			recs, err := c.Fetch(ctx)
			if !errors.Is(err, want) {
				t.Fatalf("Fetch on an empty stream = %v, %v; want %v", recs, err, want)
			}
			if d := time.Since(start); d > time.Second {
				t.Fatalf("Fetch returned %v after the context ended", d-100*time.Millisecond)
			}
			// The consumer still works after a cancelled Fetch.
			publish(t, b.Publisher(stream), bus.Record{Key: "k", Value: []byte("after")})
			got := collect(t, c, true, atLeast(1))
			if string(got[0].Value) != "after" {
				t.Fatalf("got %q, want after", got[0].Value)
			}
		})
	}
}

func testClose(t *testing.T, b bus.Bus) {
	cl, ok := b.(bus.Closer)
	if !ok {
		t.Skip("bus has no Close")
	}
	stream := uniq("close")
	p := b.Publisher(stream)
	publish(t, p, bus.Record{Key: "k", Value: []byte("before")})
	c, err := b.Consumer(stream, bus.ConsumerOptions{Group: uniq("g")})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := cl.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := cl.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.Publish(ctx, bus.Record{Key: "k", Value: []byte("after")}); err == nil {
		t.Fatalf("Publish after Close succeeded")
	}
	if err := b.Publisher(stream).Publish(ctx, bus.Record{Key: "k"}); err == nil {
		t.Fatalf("Publish on a new publisher after Close succeeded")
	}
	if _, err := b.Consumer(stream, bus.ConsumerOptions{}); err == nil {
		t.Fatalf("Consumer after Close succeeded")
	}
	// A consumer of a closed bus fails instead of blocking.
	for {
		_, err := c.Fetch(ctx)
		if err == nil {
			continue // records fetched before the close took effect
		}
		if ctx.Err() != nil {
			t.Fatalf("Fetch after Close blocked until the deadline: %v", err)
		}
		break
	}
}

// testStaleCommit: a member that fetched records and then lost their
// partitions to a member that joined must be told its commit did not
// happen (bus.ErrNotOwner), and the group's offsets must not move.
func testStaleCommit(t *testing.T, b bus.Bus) {
	stream, group := uniq("stale"), uniq("g")
	p := b.Publisher(stream)
	keys := make([]string, 16)
	for i := range keys {
		keys[i] = "room-" + strconv.Itoa(i)
	}
	all := func(tag string) []bus.Record {
		recs := make([]bus.Record, len(keys))
		for i, k := range keys {
			recs[i] = bus.Record{Key: k, Value: []byte(tag)}
		}
		return recs
	}
	c1 := consumer(t, b, stream, bus.ConsumerOptions{Group: group})
	publish(t, p, all("a")...)
	held := collect(t, c1, false, atLeast(1))
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	prover, _ := c1.(bus.Prover)
	if prover != nil {
		if err := prover.Prove(ctx, held[0].Partition, held[0].Offset); err != nil {
			t.Fatalf("Prove of an owned partition = %v, want nil", err)
		}
	}
	c2 := consumer(t, b, stream, bus.ConsumerOptions{Group: group})
	var taken []bus.Record
	for {
		fctx, fcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		recs, err := c2.Fetch(fctx)
		fcancel()
		if err == nil && len(recs) > 0 {
			taken = recs
			break
		}
		if ctx.Err() != nil {
			t.Fatal("the second member never got a partition")
		}
		publish(t, p, all("b")...)
	}
	if prover != nil {
		if err := prover.Prove(ctx, taken[0].Partition, taken[0].Offset); !errors.Is(err, bus.ErrNotOwner) {
			t.Fatalf("Prove of a partition the other member took = %v, want bus.ErrNotOwner", err)
		}
	}
	err := c1.Commit(ctx, held...)
	if !errors.Is(err, bus.ErrNotOwner) {
		t.Fatalf("stale Commit = %v, want bus.ErrNotOwner", err)
	}
	if pr, ok := b.(bus.PartitionReader); ok {
		for _, r := range held {
			o, err := pr.Offsets(ctx, stream, r.Partition, group)
			if err != nil {
				t.Fatal(err)
			}
			if o.Committed > r.Offset {
				t.Fatalf("partition %d committed at %d after a refused commit of offset %d", r.Partition, o.Committed, r.Offset)
			}
		}
	}
}

// testAppend: PartitionWriter puts records in the partition asked for, in
// order, and tells the offset of the first.
func testAppend(t *testing.T, b bus.Bus) {
	pw, ok := b.(bus.PartitionWriter)
	pr, ok2 := b.(bus.PartitionReader)
	if !ok || !ok2 {
		t.Skip("bus cannot append to a chosen partition")
	}
	stream := uniq("append")
	ctx, cancel := context.WithTimeout(context.Background(), waitFor)
	defer cancel()
	publish(t, b.Publisher(stream)) // creates the stream
	var want []string
	var first int64 = -1
	var next int64
	for round, n := range []int{3, 1, 2} {
		recs := make([]bus.Record, n)
		for i := range recs {
			v := fmt.Sprintf("r%d-%d", round, i)
			want = append(want, v)
			recs[i] = bus.Record{Key: "whatever-" + v, Value: []byte(v)}
		}
		base, err := pw.Append(ctx, stream, 1, recs...)
		if err != nil {
			t.Fatalf("Append: %v", err)
		}
		if first < 0 {
			first = base
		} else if base != next {
			t.Fatalf("Append round %d landed at %d, want %d (right after the previous)", round, base, next)
		}
		next = base + int64(n)
	}
	got, err := pr.ReadRange(ctx, stream, 1, first, next)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i, r := range got {
		if string(r.Value) != want[i] || r.Partition != 1 || r.Offset != first+int64(i) {
			t.Fatalf("record %d = %q at %d/%d, want %q at 1/%d", i, r.Value, r.Partition, r.Offset, want[i], first+int64(i))
		}
	}
	if _, err := pw.Append(ctx, stream, 1<<20, bus.Record{Value: []byte("x")}); !errors.Is(err, bus.ErrNoPartition) {
		t.Fatalf("Append to a missing partition = %v, want bus.ErrNoPartition", err)
	}
}
