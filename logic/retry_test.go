package logic

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// TestRetryOfRejectedSendGetsSameReject: the fault-schedule checker found
// one send answered rate_limited and then acked (seed 210): the sender's
// retry crossed the reject across a broker restart and was decided
// afresh once the limit had passed. A retry of a rejected id must get the
// same reject, from the worker that decided it and, through the shared
// dedupe store, from the partition's next owner; unavailable is not
// remembered (it asks for the retry).
func TestRetryOfRejectedSendGetsSameReject(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	room := roomsIn(t, mem, false, 1)[0]
	replies := followReplies(t, mem, "gw1")
	store := presence.NewMemoryDedupe(0)
	// The first decision of every text is a rate-limit reject, every
	// later one an accept: without the remembered reject, a retry is
	// acked.
	var checks atomic.Int64
	limit := checkerFunc(func(in moderation.Input) moderation.Verdict {
		if checks.Add(1) == 1 {
			return moderation.Verdict{Action: moderation.Reject, Code: moderation.CodeRateLimited, Rule: "rate_limit", RetryAfter: 2 * time.Second}
		}
		return moderation.Verdict{Action: moderation.Accept, Text: in.Text}
	})
	cfg := Config{Dedupe: store, SeqGroup: "nobody-commits"}
	stopA := startWorker(t, mem, limit, cfg)
	send := func(id string) {
		sendIngest(t, mem, bus.Ingest{Room: room, ID: id, UID: "u1", Text: "hello", Role: "viewer", Gateway: "gw1", Conn: 1})
	}
	send("x")
	waitUntil(t, "the reject", func() bool { return len(replies.get("x")) == 1 })
	send("x") // the retry, decided by the same worker
	waitUntil(t, "the retry's answer", func() bool { return len(replies.get("x")) == 2 })
	stopA()
	startWorker(t, mem, limit, cfg) // the partition's next owner
	send("x")
	waitUntil(t, "the answer after the takeover", func() bool { return len(replies.get("x")) == 3 })
	got := replies.get("x")
	for i, r := range got {
		if r.Seq != 0 || r.Code != protocol.CodeRateLimited || r.Message != "rate_limit" {
			t.Fatalf("answer %d of one send: %+v, want the first reject (rate_limited)", i, r)
		}
		if r.RetryAfterMs > 2000 {
			t.Fatalf("answer %d: retry_after_ms %d, more than the verdict's 2 s", i, r.RetryAfterMs)
		}
	}
	if n := checks.Load(); n != 1 {
		t.Fatalf("moderation decided the send %d times, want once", n)
	}
	if ms := validAccepted(t, mem); len(ms) != 0 {
		t.Fatalf("a rejected send was accepted: %+v", ms)
	}
}

// TestRetryDuringStoreOutageIsNotDecidedAgain: the checker found an id
// acked long before (beyond the takeover scan) and re-sent to the
// partition's next owner while Redis was down: the owner could not look it
// up and decided it afresh (seed 213: rejected blocked as a duplicate
// text; otherwise a second seq). A send marked as a retry that the worker
// cannot look up is answered unavailable until the store answers; a fresh
// send is still decided during the outage.
func TestRetryDuringStoreOutageIsNotDecidedAgain(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	room := roomsIn(t, mem, false, 1)[0]
	replies := followReplies(t, mem, "gw1")
	store := &downDedupe{Dedupe: presence.NewMemoryDedupe(0)}
	eng, _ := moderation.New(moderation.Config{})
	cfg := Config{Dedupe: store, ScanWindow: 8, SeqGroup: "hw-" + t.Name()}
	stopA := startWorker(t, mem, eng, cfg)
	send := func(id string, retry bool) {
		sendIngest(t, mem, bus.Ingest{Room: room, ID: id, UID: "u1", Text: id, Role: "service", Gateway: "gw1", Conn: 1, Retry: retry})
	}
	send("first", false)
	waitUntil(t, "the first ack", func() bool { return len(replies.get("first")) == 1 })
	for i := range 50 {
		send(fmt.Sprintf("m%d", i), false)
	}
	waitUntil(t, "the fillers", func() bool { return len(replies.get("m49")) == 1 })
	stopA()
	historyHas(t, mem, cfg.SeqGroup, 51) // the takeover scan starts after "first"

	store.down.Store(true)
	eng2, _ := moderation.New(moderation.Config{})
	startWorker(t, mem, eng2, cfg)
	send("first", true)
	waitUntil(t, "the retry's answer during the outage", func() bool { return len(replies.get("first")) == 2 })
	if got := replies.get("first")[1]; got.Seq != 0 || got.Code != protocol.CodeUnavailable || got.RetryAfterMs <= 0 {
		t.Fatalf("retry during the outage answered %+v, want unavailable with retry_after_ms", got)
	}
	send("fresh", false)
	waitUntil(t, "the fresh send's answer", func() bool { return len(replies.get("fresh")) == 1 })
	if got := replies.get("fresh")[0]; got.Seq == 0 {
		t.Fatalf("a fresh send during the outage answered %+v, want an ack", got)
	}
	store.down.Store(false)
	send("first", true)
	waitUntil(t, "the retry's answer after the outage", func() bool { return len(replies.get("first")) == 3 })
	got := replies.get("first")
	if got[2].Seq != got[0].Seq {
		t.Fatalf("retry after the outage answered %+v, first answer seq %d", got[2], got[0].Seq)
	}
	n := 0
	for _, m := range validAccepted(t, mem) {
		if m.ID == "first" {
			n++
		}
	}
	if n != 1 {
		t.Fatalf("id accepted %d times", n)
	}
}

// historyHas plays the history writer: group commits the first n accepted
// records, so that a takeover scan (which starts at that group's committed
// offset, or ScanWindow back from the end) does not read them.
func historyHas(t *testing.T, m *bus.Memory, group string, n int) {
	t.Helper()
	c, err := m.Consumer(bus.StreamAccepted, bus.ConsumerOptions{Group: group})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	data := 0
	for data < n {
		recs, err := c.Fetch(ctx)
		if err != nil {
			t.Fatalf("reading accepted: %v (%d of %d records)", err, data, n)
		}
		for _, r := range recs {
			if _, marker := bus.ParseFence(r.Value); !marker {
				data++
			}
		}
		if err := c.Commit(ctx, recs...); err != nil {
			t.Fatal(err)
		}
	}
}

// TestTakeoverWritesScannedIDsToStore: worker A acks an id while the
// dedupe store is down and stops before the store is back (its pending
// writes die with it; the checker's seed 213 re-sent such an id 80 s
// later and got a second seq). The next owner's takeover scan sees the id
// and writes it to the store, so a retry after yet another takeover,
// beyond any scan, still gets the first seq.
func TestTakeoverWritesScannedIDsToStore(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	room := roomsIn(t, mem, false, 1)[0]
	replies := followReplies(t, mem, "gw1")
	store := &downDedupe{Dedupe: presence.NewMemoryDedupe(0)}
	cfg := Config{Dedupe: store, ScanWindow: 8, SeqGroup: "hw-" + t.Name()}
	send := func(id string, retry bool) {
		sendIngest(t, mem, bus.Ingest{Room: room, ID: id, UID: "u1", Text: id, Role: "service", Gateway: "gw1", Conn: 1, Retry: retry})
	}
	newEngine := func() *moderation.Engine { e, _ := moderation.New(moderation.Config{}); return e }

	store.down.Store(true)
	stopA := startWorker(t, mem, newEngine(), cfg)
	send("during-outage", false)
	waitUntil(t, "the ack", func() bool { return len(replies.get("during-outage")) == 1 })
	stopA() // before the store is back
	store.down.Store(false)

	stopB := startWorker(t, mem, newEngine(), cfg)
	for i := range 50 { // B claims the partition at its first record
		send(fmt.Sprintf("m%d", i), false)
	}
	waitUntil(t, "the fillers", func() bool { return len(replies.get("m49")) == 1 })
	key := dedupeKey(bus.Ingest{Room: room, UID: "u1", ID: "during-outage"})
	waitUntil(t, "the scanned id in the store", func() bool {
		vals, _ := store.Lookup(context.Background(), key)
		return vals[0] != nil
	})
	stopB()
	historyHas(t, mem, cfg.SeqGroup, 51)

	startWorker(t, mem, newEngine(), cfg)
	send("during-outage", true)
	waitUntil(t, "the retry's answer", func() bool { return len(replies.get("during-outage")) == 2 })
	if got := replies.get("during-outage"); got[1].Seq != got[0].Seq {
		t.Fatalf("retry answered %+v, first answer seq %d", got[1], got[0].Seq)
	}
}

// flakySeqs is a SeqSource (the history store) that fails while down is
// set; a room's last seq is 0.
type flakySeqs struct {
	down  atomic.Bool
	calls atomic.Int64
}

func (f *flakySeqs) LastSeq(ctx context.Context, room string) (uint64, error) {
	f.calls.Add(1)
	if f.down.Load() {
		return 0, errors.New("history store: connection refused")
	}
	return 0, nil
}

// TestUnavailableSeqLeavesNoModerationTrace: a worker asks the history
// store for a room's last seq the first time it sees the room in a
// generation, and answers unavailable ("retry with the same id") when the
// store does not answer. Moderation must not have seen that send: else
// its text sits in the user's duplicate window (30 s by default) and the
// client's retry is rejected "blocked: duplicate", a final answer
// remembered for 10 minutes, for a send that broke no rule.
func TestUnavailableSeqLeavesNoModerationTrace(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	room := roomsIn(t, mem, false, 1)[0]
	replies := followReplies(t, mem, "gw1")
	eng, _ := moderation.New(moderation.Config{}) // builtin room settings
	var checks atomic.Int64
	counted := checkerFunc(func(in moderation.Input) moderation.Verdict {
		checks.Add(1)
		return eng.Check(in)
	})
	seqs := &flakySeqs{}
	seqs.down.Store(true)
	startWorker(t, mem, counted, Config{ID: "A", Seqs: seqs})

	send := func(retry bool) {
		sendIngest(t, mem, bus.Ingest{Room: room, ID: "m1", UID: "u1", Text: "hello everyone", Role: "viewer",
			Gateway: "gw1", Conn: 1, Retry: retry})
	}
	send(false)
	waitUntil(t, "the first answer", func() bool { return len(replies.get("m1")) == 1 })
	send(true) // the client's retry after retry_after_ms, the store still down
	waitUntil(t, "the retry's answer", func() bool { return len(replies.get("m1")) == 2 })
	if n := checks.Load(); n != 0 {
		t.Errorf("moderation saw %d sends answered unavailable", n)
	}
	seqs.down.Store(false)
	send(true)
	waitUntil(t, "the answer after the store is back", func() bool { return len(replies.get("m1")) == 3 })
	got := replies.get("m1")
	for i, r := range got[:2] {
		if r.Seq != 0 || r.Code != protocol.CodeUnavailable || r.RetryAfterMs <= 0 {
			t.Fatalf("answer %d while the store was down: %+v, want unavailable with retry_after_ms", i+1, r)
		}
	}
	if got[2].Seq != 1 {
		t.Fatalf("retry once the store is back answered %+v, want an ack at seq 1", got[2])
	}
}

// TestRetryAfterUnavailableKeepsFirstVerdict: moderation decided a send
// (held) and its commit was refused by a rebalance that left the partition
// with the worker; the record comes again in the new generation, where the
// room's last seq must be asked again, and the history store is down: the
// send is answered unavailable. The client's retry (same id, a new record)
// must get the verdict moderation gave, not a second one from the state
// the first changed ("blocked: duplicate" of itself).
func TestRetryAfterUnavailableKeepsFirstVerdict(t *testing.T) {
	mem := bus.NewMemory(bus.MemoryConfig{Partitions: 4})
	room := roomsIn(t, mem, false, 1)[0] // stays with A, the first member
	replies := followReplies(t, mem, "gw1")
	eng, _ := moderation.New(moderation.Config{})
	if err := eng.SetRoomKeywords(room, moderation.KeywordList{Words: []string{"holdme"}, Action: moderation.ActionHold}); err != nil {
		t.Fatal(err)
	}
	gate := make(chan struct{})
	var once sync.Once
	var checks atomic.Int64
	slow := checkerFunc(func(in moderation.Input) moderation.Verdict {
		once.Do(func() { <-gate })
		checks.Add(1)
		return eng.Check(in)
	})
	seqs := &flakySeqs{}
	startWorker(t, mem, slow, Config{ID: "A", Seqs: seqs})
	send := func(retry bool) {
		sendIngest(t, mem, bus.Ingest{Room: room, ID: "X", UID: "ux", Text: "holdme please", Role: "viewer",
			Gateway: "gw1", Conn: 1, Retry: retry})
	}
	send(false)
	time.Sleep(100 * time.Millisecond) // A fetched X and waits in moderation
	engB, _ := moderation.New(moderation.Config{})
	startWorker(t, mem, engB, Config{ID: "B", Seqs: &flakySeqs{}})
	time.Sleep(100 * time.Millisecond)
	seqs.down.Store(true) // A's next generation cannot learn the room's seq
	close(gate)
	waitUntil(t, "X's first answer", func() bool { return len(replies.get("X")) > 0 })
	if got := replies.get("X")[0]; got.Code != protocol.CodeUnavailable {
		t.Fatalf("X decided again while the store is down answered %+v, want unavailable", got)
	}
	seqs.down.Store(false)
	send(true)
	waitUntil(t, "the retry's answer", func() bool { return len(replies.get("X")) == 2 })
	if got := replies.get("X")[1]; !got.Held {
		t.Fatalf("retry of X answered %+v; want held (the first verdict)", got)
	}
	if n := checks.Load(); n != 1 {
		t.Fatalf("moderation decided one send %d times", n)
	}
}
