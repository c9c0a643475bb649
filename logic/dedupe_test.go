package logic

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/presence"
)

// countReplies counts the replies to gateway gw until the test ends.
func countReplies(t *testing.T, m *bus.Memory, gw string) *atomic.Int64 {
	t.Helper()
	c, err := m.Consumer(bus.StreamReply, bus.ConsumerOptions{Key: gw})
	if err != nil {
		t.Fatal(err)
	}
	var n atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			recs, err := c.Fetch(ctx)
			if err != nil {
				return
			}
			n.Add(int64(len(recs)))
		}
	}()
	t.Cleanup(func() { cancel(); <-done; _ = c.Close() })
	return &n
}

// flood sends n sends with fresh ids from each of uids to room through
// gateway gw, in chunks each answered before the next is sent (as sends
// from connections arrive), and waits for every answer.
func flood(t *testing.T, m *bus.Memory, room, gw string, uids []string, n int) {
	t.Helper()
	answered := countReplies(t, m, gw)
	pub := m.Publisher(bus.StreamIngest)
	batch := make([]bus.Record, 0, 1000)
	sent := 0
	for i := range n {
		for _, uid := range uids {
			v, _ := bus.Marshal(bus.Ingest{Room: room, ID: fmt.Sprintf("%s-%d", uid, i), UID: uid, Text: fmt.Sprintf("spam %d", i),
				Role: "viewer", Gateway: gw, Conn: 2})
			batch = append(batch, bus.Record{Key: room, Value: v})
			if len(batch) == cap(batch) || (i == n-1 && uid == uids[len(uids)-1]) {
				if err := pub.Publish(context.Background(), batch...); err != nil {
					t.Fatal(err)
				}
				sent += len(batch)
				batch = batch[:0]
				if !eventually(time.Minute, func() bool { return answered.Load() == int64(sent) }) {
					t.Fatalf("flood: %d of %d answered", answered.Load(), sent)
				}
			}
		}
	}
}

// TestRejectFloodKeepsAckedIDs: rejects are remembered like acks (10
// minutes), but they must not push acked ids out of the worker's memory
// or the dedupe store: a guest's flood of rate-limited sends (each a
// fresh id, each rejected and remembered) once evicted every other user's
// acked ids, and a victim's retry of an acked id was sequenced and
// broadcast a second time. Rejects have a space of their own, in memory
// and in the store logic gives danmaku all (NewMemoryDedupe), and one
// user's remembered rejects are bounded (RejectsPerUser).
func TestRejectFloodKeepsAckedIDs(t *testing.T) {
	t.Run("one user's flood takes a bounded share", func(t *testing.T) {
		mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
		room := roomsIn(t, mem, false, 1)[0]
		eng, _ := moderation.New(moderation.Config{})
		store := NewMemoryDedupe() // what app/backends.go gives danmaku all
		startWorker(t, mem, eng, Config{ID: "A", Dedupe: store})
		flood(t, mem, room, "gw-evil", []string{"evil"}, 3000)
		if n := store.LenMinor(); n > 1024 {
			t.Fatalf("one user's 3000 rejected sends left %d rejects in the store, want at most RejectsPerUser (1024)", n)
		}
	})

	t.Run("many users' floods never evict acked ids", func(t *testing.T) {
		mem := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
		room := roomsIn(t, mem, false, 1)[0]
		replies := followReplies(t, mem, "gw1")
		// The caps are small so the flood is: what matters is that
		// rejects far past them leave the acked ids alone.
		store := presence.NewMemoryDedupe(1000).Split(IsRejectKey, 200)
		cfg := Config{ID: "A", Dedupe: store, DedupeMax: 1000, DedupeRejectMax: 200, ScanWindow: 8, SeqGroup: "hw-" + t.Name()}
		eng, _ := moderation.New(moderation.Config{})
		stopA := startWorker(t, mem, eng, cfg)

		sendIngest(t, mem, bus.Ingest{Room: room, ID: "victim-1", UID: "victim", Text: "gg", Role: "viewer", Gateway: "gw1", Conn: 1})
		waitUntil(t, "the victim's ack", func() bool { return len(replies.get("victim-1")) == 1 })
		first := replies.get("victim-1")[0]
		if first.Seq == 0 {
			t.Fatalf("victim's send answered %+v", first)
		}
		uids := make([]string, 40)
		for i := range uids {
			uids[i] = fmt.Sprintf("evil%d", i)
		}
		flood(t, mem, room, "gw-evil", uids, 100) // 4000 sends, nearly all rate_limited

		retry := func(who string) {
			t.Helper()
			n := len(replies.get("victim-1"))
			sendIngest(t, mem, bus.Ingest{Room: room, ID: "victim-1", UID: "victim", Text: "gg", Role: "viewer", Gateway: "gw1", Conn: 1, Retry: true})
			waitUntil(t, who, func() bool { return len(replies.get("victim-1")) == n+1 })
			if again := replies.get("victim-1")[n]; again.Seq != first.Seq {
				t.Fatalf("%s: retry of an acked id answered %+v, first ack seq %d", who, again, first.Seq)
			}
		}
		retry("the retry at the worker that acked it")

		// The partition's next owner does not read the victim's ack in its
		// takeover scan: only the dedupe store knows it.
		stopA()
		historyHas(t, mem, cfg.SeqGroup, len(validAccepted(t, mem)))
		eng2, _ := moderation.New(moderation.Config{})
		cfg.ID = "B"
		startWorker(t, mem, eng2, cfg)
		retry("the retry at the next owner")

		n := 0
		for _, m := range validAccepted(t, mem) {
			if m.ID == "victim-1" {
				n++
			}
		}
		if n != 1 {
			t.Fatalf("the victim's message is in the accepted stream %d times", n)
		}
	})
}
