package gateway

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// joinURL upgrades a new connection with ?room=room and the extra query
// (e.g. "&resume=5") and returns it with its joined and history frames.
func joinURL(t *testing.T, gw *testGW, room, query string) (*wstest.Conn, protocol.ServerFrame, protocol.ServerFrame) {
	t.Helper()
	v := dialRaw(t, gw.addr)
	if st := v.Upgrade("/ws?room="+room+query, ""); st != 101 {
		t.Fatalf("upgrade %s%s: %d", room, query, st)
	}
	j := v.NextOp(protocol.OpJoined, 5*time.Second)
	h := v.NextOp(protocol.OpHistory, 5*time.Second)
	return v, j, h
}

// joinAt joins like joinURL and fails unless the joined seq is seq and
// the history is complete and holds exactly seqs from..to (checkHistory);
// who names the join in failures.
func joinAt(t *testing.T, gw *testGW, room, query, who string, seq, from, to uint64) *wstest.Conn {
	t.Helper()
	v, j, h := joinURL(t, gw, room, query)
	if j.Seq != seq {
		t.Fatalf("%s: joined seq %d, want %d", who, j.Seq, seq)
	}
	checkHistory(t, who, h, from, to)
	return v
}

// checkHistory fails unless h is complete and holds exactly seqs from..to.
func checkHistory(t *testing.T, who string, h protocol.ServerFrame, from, to uint64) {
	t.Helper()
	if !h.Complete {
		t.Fatalf("%s: history incomplete", who)
	}
	want := from
	for _, m := range h.Msgs {
		if m.Seq != want {
			t.Fatalf("%s: history seq %d, want %d (%d msgs)", who, m.Seq, want, len(h.Msgs))
		}
		want++
	}
	if from <= to && want != to+1 {
		t.Fatalf("%s: history ends before %d (%d msgs)", who, want, len(h.Msgs))
	}
	if from > to && len(h.Msgs) != 0 {
		t.Fatalf("%s: history has %d msgs, want none", who, len(h.Msgs))
	}
}

// TestHostileResumeLeavesRoomAlone: a viewer that resumes from a seq the
// room never reached (or sends garbage) gets the room's real end and an
// empty, complete history, and changes nothing for the room's other
// viewers: they join at the real end, get its real history and every
// later batch.
func TestHostileResumeLeavesRoomAlone(t *testing.T) {
	t.Run("stored room the gateway has no ring for", func(t *testing.T) {
		mem := history.NewMemory(history.MemoryConfig{})
		appendSeqs(t, mem, "a", 1, 5)
		gw := startGW(t, func(c *Config) { c.History = mem })
		bad := joinAt(t, gw, "a", "&resume=1000000", "hostile", 5, 1, 0)
		honest := joinAt(t, gw, "a", "", "honest join", 5, 1, 5)
		resumed := joinAt(t, gw, "a", "&resume=2", "honest resume", 5, 3, 5)
		publishSeqs(t, gw, "a", 6, 8, 1)
		collect(t, honest, nil, 6, 8, false)
		collect(t, resumed, nil, 6, 8, false)
		collect(t, bad, nil, 6, 8, false)
	})

	t.Run("empty room", func(t *testing.T) {
		gw := startGW(t, nil)
		joinAt(t, gw, "e", "&resume=1000000", "hostile", 0, 1, 0)
		honest := joinAt(t, gw, "e", "", "honest", 0, 1, 0)
		publishSeqs(t, gw, "e", 1, 3, 1)
		collect(t, honest, nil, 1, 3, false)
	})

	t.Run("just above the end while messages flow", func(t *testing.T) {
		// Shedding off: on a loaded machine under -race a flush can wait
		// past ShedDelay, and a shed room's batches skip seqs (covered
		// by from/to marks) that collect would take for a gap.
		gw := startGW(t, func(c *Config) { c.ShedDelay = -1 })
		honest, _, _ := joinURL(t, gw, "f", "")
		const total = 400
		done := make(chan struct{})
		go func() {
			defer close(done)
			for seq := uint64(1); seq <= total; seq += 4 {
				publishSeqs(t, gw, "f", seq, seq+3, 4)
				time.Sleep(2 * time.Millisecond)
			}
		}()
		// Hostile viewers resume a little past the newest seq they can
		// see, again and again, while the room moves.
		var wg sync.WaitGroup
		for i := range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				time.Sleep(time.Duration(i) * 5 * time.Millisecond)
				gw.s.rooms.get("f").mu.Lock()
				last := gw.s.rooms.get("f").last
				gw.s.rooms.get("f").mu.Unlock()
				v := dialRaw(t, gw.addr)
				if st := v.Upgrade(fmt.Sprintf("/ws?room=f&resume=%d", last+1+uint64(i%5)), ""); st != 101 {
					t.Errorf("upgrade: %d", st)
				}
			}()
		}
		wg.Wait()
		<-done
		collect(t, honest, nil, 1, total, false)
		late := joinAt(t, gw, "f", "&resume=390", "late resume", total, 391, total)
		publishSeqs(t, gw, "f", total+1, total+2, 2)
		collect(t, late, nil, total+1, total+2, false)
	})

	t.Run("many fresh rooms on one connection", func(t *testing.T) {
		mem := history.NewMemory(history.MemoryConfig{})
		gw := startGW(t, func(c *Config) { c.History = mem })
		bad := dialRaw(t, gw.addr)
		if st := bad.Upgrade("/ws", ""); st != 101 {
			t.Fatal(st)
		}
		const rooms = 16
		for i := range rooms {
			room := fmt.Sprintf("m%d", i)
			appendSeqs(t, mem, room, 1, uint64(i+1))
			bad.Send(ws.OpText, []byte(fmt.Sprintf(`{"op":"join","room":%q,"resume":%d}`, room, uint64(1)<<62+uint64(i))))
		}
		for range rooms {
			bad.NextOp(protocol.OpHistory, 5*time.Second)
		}
		for i := range rooms {
			room := fmt.Sprintf("m%d", i)
			end := uint64(i + 1)
			v := joinAt(t, gw, room, "", room, end, 1, end)
			publishSeqs(t, gw, room, end+1, end+1, 1)
			collect(t, v, nil, end+1, end+1, false)
		}
	})

	t.Run("resume into a gap the store lacks", func(t *testing.T) {
		// The store has 1-100; 101-149 are not persisted yet; dispatch
		// is at 150.
		mem := history.NewMemory(history.MemoryConfig{})
		appendSeqs(t, mem, "g", 1, 100)
		gw := startGW(t, func(c *Config) { c.History = mem })
		_, j, h := joinURL(t, gw, "g", "&resume=120")
		if j.Seq > 120 || !h.Complete || len(h.Msgs) != 0 {
			t.Fatalf("resume into the gap: joined %d, history complete=%v with %d msgs", j.Seq, h.Complete, len(h.Msgs))
		}
		honest := joinAt(t, gw, "g", "", "honest", 100, 51, 100)
		publishSeqs(t, gw, "g", 150, 152, 3)
		collect(t, honest, nil, 150, 152, false)
	})
}

// TestResumeZeroIsAPlainJoin: resume=0 asks for "everything after nothing":
// the gateway answers it as a join without resume (the newest 50 messages)
// instead of the room from seq 1.
func TestResumeZeroIsAPlainJoin(t *testing.T) {
	mem := history.NewMemory(history.MemoryConfig{})
	appendSeqs(t, mem, "z", 1, 300)
	gw := startGW(t, func(c *Config) { c.History = mem })
	for _, q := range []string{"&resume=0", ""} {
		joinAt(t, gw, "z", q, q, 300, 251, 300)
	}
	v := dialRaw(t, gw.addr)
	if st := v.Upgrade("/ws", ""); st != 101 {
		t.Fatal(st)
	}
	v.Send(ws.OpText, []byte(`{"op":"join","room":"z","resume":0}`))
	v.NextOp(protocol.OpJoined, 5*time.Second)
	checkHistory(t, "join frame", v.NextOp(protocol.OpHistory, 5*time.Second), 251, 300)
}

// TestBadResumeRefused: a resume that is not a seq (negative, not a
// number, past 2^64) is refused, the upgrade with 400 and the join frame
// with an invalid error that leaves the connection open and the room
// untouched.
func TestBadResumeRefused(t *testing.T) {
	gw := startGW(t, nil)
	for _, q := range []string{"-1", "abc", "1.5", "18446744073709551616", "1e9", "%20"} {
		v := dialRaw(t, gw.addr)
		if st := v.Upgrade("/ws?room=b&resume="+q, ""); st != 400 {
			t.Errorf("resume=%s: status %d, want 400", q, st)
		}
	}
	v := dialRaw(t, gw.addr)
	if st := v.Upgrade("/ws", ""); st != 101 {
		t.Fatal(st)
	}
	for _, r := range []string{`-1`, `"5"`, `1.5`, `18446744073709551616`, `{}`} {
		v.Send(ws.OpText, []byte(`{"op":"join","room":"b","resume":`+r+`}`))
		if f := v.NextOp(protocol.OpError, 5*time.Second); f.Code != protocol.CodeInvalid {
			t.Fatalf("resume %s: error code %q", r, f.Code)
		}
	}
	if r := gw.s.rooms.get("b"); r != nil {
		t.Fatalf("refused resumes left a room behind (last %d)", r.last)
	}
	honest, j, _ := joinURL(t, gw, "b", "")
	if j.Seq != 0 {
		t.Fatalf("joined seq %d", j.Seq)
	}
	publishSeqs(t, gw, "b", 1, 1, 1)
	collect(t, honest, nil, 1, 1, false)
}
