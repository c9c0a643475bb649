package gateway

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// slowStore delays every Range and records how many run at once.
type slowStore struct {
	history.Store
	delay          time.Duration
	inflight, peak atomic.Int64
	calls          atomic.Int64
}

func (s *slowStore) Range(ctx context.Context, room string, f history.Filter) ([]protocol.Message, error) {
	s.calls.Add(1)
	n := s.inflight.Add(1)
	defer s.inflight.Add(-1)
	for {
		p := s.peak.Load()
		if n <= p || s.peak.CompareAndSwap(p, n) {
			break
		}
	}
	select {
	case <-time.After(s.delay):
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return s.Store.Range(ctx, room, f)
}

// joinFreshRooms has conns connections join rooms fresh rooms each (a
// resume from seq 5 of rooms the store holds 1-10 of) at once, and checks
// every join is answered with the history 6-10. It returns the
// connections.
func joinFreshRooms(t *testing.T, gw *testGW, mem history.Store, prefix string, conns, rooms int) []*wstest.Conn {
	for i := range conns * rooms {
		appendSeqs(t, mem, fmt.Sprintf("%s%d", prefix, i), 1, 10)
	}
	vs := dialAtOnce(conns, func(int) *wstest.Conn {
		v := dialRaw(t, gw.addr)
		if st := v.Upgrade("/ws", ""); st != 101 {
			t.Errorf("upgrade: %d", st)
		}
		return v
	})
	var wg sync.WaitGroup
	for c, v := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range rooms {
				room := fmt.Sprintf("%s%d", prefix, c*rooms+r)
				v.Send(ws.OpText, []byte(fmt.Sprintf(`{"op":"join","room":%q,"resume":5}`, room)))
			}
			for range rooms {
				f, err := v.NextFrame(20 * time.Second)
				for err == nil && f.Op != protocol.OpHistory {
					f, err = v.NextFrame(20 * time.Second)
				}
				if err != nil {
					t.Errorf("conn %d: %v", c, err)
					return
				}
				if !f.Complete || len(f.Msgs) != 5 || f.Msgs[0].Seq != 6 {
					t.Errorf("%s: history complete=%v with %d msgs", f.Room, f.Complete, len(f.Msgs))
				}
			}
		}()
	}
	wg.Wait()
	return vs
}

// TestStoreLoadsBounded: joins of many rooms the gateway has no ring for
// (one connection per client, 16 rooms each) start one store load per
// room; no more than the history-load limit run at once, and the joins
// past it wait for a slot instead of failing.
func TestStoreLoadsBounded(t *testing.T) {
	t.Run("default 256", func(t *testing.T) {
		mem := history.NewMemory(history.MemoryConfig{})
		st := &slowStore{Store: mem, delay: 300 * time.Millisecond}
		gw := startGW(t, func(c *Config) { c.History = st })
		joinFreshRooms(t, gw, mem, "d", 20, 16)
		if p := st.peak.Load(); p > 256 {
			t.Fatalf("%d store loads at once, want at most 256", p)
		}
		t.Logf("320 fresh rooms: %d store loads, at most %d at once", st.calls.Load(), st.peak.Load())
	})
}

// TestStoreLoadsBoundedByConfig: with MaxHistoryLoads 4, forty fresh
// rooms are filled four at a time and every join still gets its whole
// history.
func TestStoreLoadsBoundedByConfig(t *testing.T) {
	mem := history.NewMemory(history.MemoryConfig{})
	st := &slowStore{Store: mem, delay: 50 * time.Millisecond}
	gw := startGW(t, func(c *Config) { c.History = st; c.MaxHistoryLoads = 4 })
	joinFreshRooms(t, gw, mem, "c", 4, 10)
	if p := st.peak.Load(); p > 4 {
		t.Fatalf("%d store loads at once, want at most 4", p)
	}
	if st.calls.Load() < 40 {
		t.Fatalf("%d store loads for 40 fresh rooms", st.calls.Load())
	}
}

// TestFillWithoutSlotAnswersIncomplete: a fill that gets no history-load
// slot within 2 s hands its joins back; with no slot free for their own
// loads either they are answered from memory with complete:false (a
// resume keeps its resume point), not left waiting.
func TestFillWithoutSlotAnswersIncomplete(t *testing.T) {
	mem := history.NewMemory(history.MemoryConfig{})
	appendSeqs(t, mem, "busy", 1, 10)
	appendSeqs(t, mem, "late", 1, 10)
	st := &slowStore{Store: mem, delay: 4 * time.Second}
	gw := startGW(t, func(c *Config) { c.History = st; c.MaxHistoryLoads = 1 })
	busy := dialRaw(t, gw.addr)
	if code := busy.Upgrade("/ws?room=busy&resume=5", ""); code != 101 {
		t.Fatal(code)
	}
	for st.inflight.Load() == 0 {
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	_, j, h := joinURL(t, gw, "late", "&resume=5")
	if h.Complete || len(h.Msgs) != 0 || j.Seq > 5 {
		t.Fatalf("joined %d, history complete=%v with %d msgs; want incomplete, empty, at most the resume point", j.Seq, h.Complete, len(h.Msgs))
	}
	if wait := gw.s.cfg.HistorySlotWait; time.Since(start) < wait || time.Since(start) > wait+time.Second {
		t.Fatalf("answered after %v, want about %v", time.Since(start), wait)
	}
}
