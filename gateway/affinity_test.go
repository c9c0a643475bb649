package gateway

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
	"github.com/danmaku-live/danmaku/pkg/ws/wstest"
)

// roomFeed plays logic, dispatch and the history writer for the tests'
// rooms: it numbers each room's messages, publishes them in batches to
// the dispatch stream and stores them lag messages late (the history
// writer persists in batches, behind dispatch). Safe for concurrent use.
type roomFeed struct {
	b     bus.Bus
	store history.Store
	lag   int

	mu      sync.Mutex
	last    map[string]uint64 // highest seq published per room
	stored  map[string]uint64 // highest seq stored per room
	pending map[string][]protocol.Message
}

func newRoomFeed(b bus.Bus, store history.Store, lag int) *roomFeed {
	return &roomFeed{b: b, store: store, lag: lag, last: map[string]uint64{}, stored: map[string]uint64{},
		pending: map[string][]protocol.Message{}}
}

// publish sends room's next n messages as one batch and stores those now
// more than lag behind.
func (f *roomFeed) publish(t testing.TB, room string, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var msgs []protocol.Message
	for range n {
		f.last[room]++
		msgs = append(msgs, protocol.Message{Room: room, Seq: f.last[room], UID: "u", Text: fmt.Sprint(f.last[room])})
	}
	if err := f.b.Publisher(bus.StreamDispatch).Publish(context.Background(), bus.Record{Key: room, Value: protocol.EncodeBatch(room, msgs)}); err != nil {
		t.Error(err)
	}
	p := append(f.pending[room], msgs...)
	if k := len(p) - f.lag; k > 0 {
		if err := f.store.Append(context.Background(), p[:k]); err != nil {
			t.Error(err)
		}
		f.stored[room] = p[k-1].Seq
		p = p[k:]
	}
	f.pending[room] = p
}

func (f *roomFeed) setLag(lag int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lag = lag
}

func (f *roomFeed) lastSeq(room string) uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.last[room]
}

// seqTrack checks one membership's stream: the history, then batches,
// every seq once, ascending, without a gap.
type seqTrack struct {
	room string
	next uint64 // the seq expected next; 0 before the history
	seen []uint64
}

// joined takes the joined and history frames.
func (k *seqTrack) joined(j, h protocol.ServerFrame) error {
	if !h.Complete {
		return fmt.Errorf("room %s: history incomplete", k.room)
	}
	k.next = 1
	if len(h.Msgs) > 0 {
		k.next = h.Msgs[0].Seq
	}
	for _, m := range h.Msgs {
		if err := k.take(m.Seq); err != nil {
			return fmt.Errorf("history: %w", err)
		}
	}
	if k.next != j.Seq+1 && len(h.Msgs) > 0 {
		return fmt.Errorf("room %s: history ends at %d, joined says %d", k.room, k.next-1, j.Seq)
	}
	k.next = j.Seq + 1
	return nil
}

func (k *seqTrack) take(seq uint64) error {
	if seq != k.next {
		return fmt.Errorf("room %s: seq %d after %v…, want %d", k.room, seq, k.seen[max(0, len(k.seen)-3):], k.next)
	}
	k.seen = append(k.seen, seq)
	k.next++
	return nil
}

// batch takes a batch frame of the room.
func (k *seqTrack) batch(f protocol.ServerFrame) error {
	if f.From != 0 {
		return fmt.Errorf("room %s: a thinned batch %d-%d (nothing sheds here)", k.room, f.From, f.To)
	}
	for _, m := range f.Msgs {
		if err := k.take(m.Seq); err != nil {
			return err
		}
	}
	return nil
}

// readUntil reads v's frames of k's room until seq target arrived.
func (k *seqTrack) readUntil(v *wstest.Conn, target uint64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for k.next <= target {
		f, err := v.NextFrame(time.Until(deadline))
		if err != nil {
			return fmt.Errorf("room %s: waiting for seq %d (at %d): %w", k.room, target, k.next, err)
		}
		if f.Op == protocol.OpBatch && f.Room == k.room {
			if err := k.batch(f); err != nil {
				return err
			}
		}
	}
	return nil
}

// roomsIn returns n room names whose dispatch partitions (of parts) are
// all different, or, with same, all the same one.
func roomsIn(prefix string, n, parts int, same bool) []string {
	var out []string
	used := map[int]bool{}
	for i := 0; len(out) < n; i++ {
		name := fmt.Sprintf("%s%d", prefix, i)
		p := bus.KeyPartition(name, parts)
		switch {
		case same && len(out) > 0 && p != bus.KeyPartition(out[0], parts):
		case !same && used[p]:
		default:
			out = append(out, name)
			used[p] = true
		}
	}
	return out
}

// startAffineGW runs a gateway with Affinity on an 8-partition memory bus
// and feeds its rooms through feed.
func startAffineGW(t *testing.T, lag int, mod func(*Config)) (*testGW, *roomFeed) {
	b := bus.NewMemory(bus.MemoryConfig{Partitions: 8})
	t.Cleanup(func() { _ = b.Close() })
	gw, feed := startAffineGWOn(t, b, lag, mod)
	gw.bus = b
	return gw, feed
}

// startAffineGWOn runs a gateway with Affinity on b (8 dispatch
// partitions) and feeds its rooms through feed.
func startAffineGWOn(t *testing.T, b bus.Bus, lag int, mod func(*Config)) (*testGW, *roomFeed) {
	store := history.NewMemory(history.MemoryConfig{})
	gw := startGW(t, func(c *Config) {
		c.Bus, c.History = b, store
		c.Affinity = true
		c.ShedDelay = -1
		if mod != nil {
			mod(c)
		}
	})
	return gw, newRoomFeed(b, store, lag)
}

// TestAffinityJoinGetsEverything: a gateway that does not read a room's
// dispatch partition, joined by the room's first viewer, starts reading
// it and the viewer gets the history and every live message after it,
// although the store lags behind dispatch: the partition is read from
// before its end, and the overlap is dropped by seq. When the last viewer
// leaves, the partition is dropped after the grace, and the next join
// reads it again, still without a gap.
func TestAffinityJoinGetsEverything(t *testing.T) {
	// The store lags 6 messages (2 or 6 records of the partition); the
	// gateway reads a partition from 8 records before its end.
	gw, feed := startAffineGW(t, 6, affineJoinConfig)
	testJoinGetsEverything(t, gw, feed)
}

func affineJoinConfig(c *Config) {
	c.AffinityGrace = 50 * time.Millisecond
	c.AffinityRewind = 8
}

// testJoinGetsEverything is TestAffinityJoinGetsEverything on gw's bus.
func testJoinGetsEverything(t *testing.T, gw *testGW, feed *roomFeed) {
	rooms := roomsIn("aj", 2, 8, false)
	room, other := rooms[0], rooms[1]
	p := bus.KeyPartition(room, 8)
	for range 40 {
		feed.publish(t, room, 3) // seqs 1-120; the store has 1-114
		feed.publish(t, other, 1)
	}
	if got := gw.s.aff.reading(); len(got) != 0 {
		t.Fatalf("partitions read before any join: %v", got)
	}
	join := func() (*wstest.Conn, *seqTrack) {
		v := dialRaw(t, gw.addr)
		if st := v.Upgrade("/ws?room="+room, ""); st != 101 {
			t.Fatal(st)
		}
		k := &seqTrack{room: room}
		j := v.NextOp(protocol.OpJoined, 5*time.Second)
		if err := k.joined(j, v.NextOp(protocol.OpHistory, 5*time.Second)); err != nil {
			t.Fatal(err)
		}
		return v, k
	}
	v, k := join()
	if got := gw.s.aff.reading(); !slices.Equal(got, []int{p}) {
		t.Fatalf("partitions read after the join: %v, want [%d]", got, p)
	}
	for range 10 {
		feed.publish(t, room, 2)
		feed.publish(t, other, 1)
	}
	if err := k.readUntil(v, feed.lastSeq(room), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if k.seen[0] > 71 {
		t.Fatalf("the history starts at %d: want the newest 50 of 120 at the join", k.seen[0])
	}
	_ = v.NetConn().Close()
	waitUntil(t, func() bool { return len(gw.s.aff.reading()) == 0 }, "the partition dropped after the grace")

	// Read again: messages dispatched while unread come from the store and
	// the new reading's overlap, not from the room's ring of the first
	// reading, which misses them (more than the rewind).
	for range 30 {
		feed.publish(t, room, 1)
	}
	v2, k2 := join()
	feed.publish(t, room, 1)
	if err := k2.readUntil(v2, feed.lastSeq(room), 5*time.Second); err != nil {
		t.Fatal(err)
	}
	if e := gw.s.aff.parts[p].epoch; e != 2 {
		t.Fatalf("partition %d read in %d periods, want 2", p, e)
	}
}

// waitUntil polls cond for up to 5 s.
func waitUntil(t *testing.T, cond func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting: %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAffinityJoinLeaveStorm: viewers join and leave rooms at random while
// the rooms get messages, with a grace short enough that the rooms'
// partitions are dropped and read again many times, some joins landing
// in a grace, some just after a partition was dropped, some while a new
// reading is not yet resolved. Every membership records each seq it is
// given (history, then batches) and must see them strictly increasing
// without a gap, up to a message published after it joined.
func TestAffinityJoinLeaveStorm(t *testing.T) {
	gw, feed := startAffineGW(t, 15, func(c *Config) {
		c.AffinityGrace = 2 * time.Millisecond
		c.AffinityRewind = 512
	})
	rooms := append(roomsIn("sa", 3, 8, true), roomsIn("sb", 3, 8, false)...)
	// Every room gets a ring on the gateway first, with the store caught
	// up: a room the gateway has never seen, joined while its partition
	// is read for other rooms, gets its history from the store alone,
	// with or without affinity (docs/deployment.md, "Room affinity").
	feed.setLag(0)
	for _, r := range rooms {
		feed.publish(t, r, 5)
		v := dialRaw(t, gw.addr)
		if st := v.Upgrade("/ws?room="+r, ""); st != 101 {
			t.Fatal(st)
		}
		v.NextOp(protocol.OpHistory, 5*time.Second)
		_ = v.NetConn().Close()
	}
	feed.setLag(15)
	stop := make(chan struct{})
	var pubs sync.WaitGroup
	pubs.Add(1)
	go func() { // the rooms' traffic
		defer pubs.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Millisecond):
			}
			feed.publish(t, rooms[i%len(rooms)], 1+i%3)
		}
	}()
	var memberships atomic.Int64
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			if err := stormViewer(t, gw, feed, rooms, rng, 10, &memberships); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	close(stop)
	pubs.Wait()
	periods := uint64(0)
	for _, r := range rooms {
		periods = max(periods, gw.s.aff.parts[bus.KeyPartition(r, 8)].epoch)
	}
	t.Logf("%d memberships; a partition was read in up to %d periods", memberships.Load(), periods)
	if periods < 3 {
		t.Fatalf("partitions read in at most %d periods: the storm did not cross the grace", periods)
	}
}

// stormViewer is one viewer of the storm: n times it joins a random room
// (on a new connection, or with a join frame on the one it has, leaving
// the room it was in, or not), reads until a message published after the
// join, then leaves, closes or just stays a moment.
func stormViewer(t *testing.T, gw *testGW, feed *roomFeed, rooms []string, rng *rand.Rand, n int, count *atomic.Int64) error {
	var v *wstest.Conn
	defer func() {
		if v != nil {
			_ = v.NetConn().Close()
		}
	}()
	for range n {
		room := rooms[rng.IntN(len(rooms))]
		if v == nil || rng.IntN(3) == 0 {
			if v != nil {
				_ = v.NetConn().Close()
			}
			v = wstest.Dial(t, gw.addr)
			if st := v.Upgrade("/ws", ""); st != 101 {
				return fmt.Errorf("upgrade: %d", st)
			}
		}
		if err := v.Send(ws.OpText, []byte(`{"op":"join","room":"`+room+`"}`)); err != nil {
			return err
		}
		k := &seqTrack{room: room}
		if err := awaitJoin(v, k); err != nil {
			return err
		}
		count.Add(1)
		if err := k.readUntil(v, feed.lastSeq(room)+1, 5*time.Second); err != nil {
			return err
		}
		switch rng.IntN(3) {
		case 0:
			_ = v.Send(ws.OpText, []byte(`{"op":"leave","room":"`+room+`"}`))
		case 1:
			_ = v.NetConn().Close()
			v = nil
		}
		time.Sleep(time.Duration(rng.IntN(6)) * time.Millisecond)
	}
	return nil
}

// awaitJoin reads v's frames until the joined and history of k's room,
// and takes them.
func awaitJoin(v *wstest.Conn, k *seqTrack) error {
	deadline := time.Now().Add(5 * time.Second)
	var j protocol.ServerFrame
	for {
		f, err := v.NextFrame(time.Until(deadline))
		if err != nil {
			return fmt.Errorf("room %s: waiting for the join: %w", k.room, err)
		}
		switch {
		case f.Room != k.room:
		case f.Op == protocol.OpJoined:
			j = f
		case f.Op == protocol.OpHistory && j.Op != "":
			return k.joined(j, f)
		}
	}
}

// TestAffinityRewindKeepsDeleted: a gateway with no viewer of a room
// (not reading its dispatch partition) gets the room's delete and has no
// ring to mark; the first join rewinds the partition into a new ring, the
// deleted message with it. The joiner's history does not show it.
func TestAffinityRewindKeepsDeleted(t *testing.T) {
	gw, feed := startAffineGW(t, 0, nil)
	room := roomsIn("adel", 1, 8, false)[0]
	for range 10 {
		feed.publish(t, room, 1) // seqs 1-10, stored at once (lag 0)
	}
	if n, err := feed.store.(history.Deleter).Delete(context.Background(), room, []uint64{5}); err != nil || n != 1 {
		t.Fatalf("store delete: %d %v", n, err)
	}
	publishControl(t, gw, bus.Control{Op: bus.ControlDelete, Room: room, UID: "u", Seqs: []uint64{5}})
	deadline := time.Now().Add(5 * time.Second)
	for gw.s.retracts.n.Load() == 0 { // the gateway reads the control stream
		if time.Now().After(deadline) {
			t.Fatal("the delete was not remembered")
		}
		time.Sleep(10 * time.Millisecond)
	}
	_, h := joinRoom(t, gw, room)
	if want := []uint64{1, 2, 3, 4, 6, 7, 8, 9, 10}; !slices.Equal(seqsOf(h.Msgs), want) {
		t.Fatalf("joiner's history %v, want %v", seqsOf(h.Msgs), want)
	}
}

// TestAffinityConfigErrors: affinity on a bus that cannot read chosen
// partitions, or with a negative grace or rewind, is refused by New with
// the reason.
func TestAffinityConfigErrors(t *testing.T) {
	signer, _ := auth.NewSigner(testSecret)
	mem := bus.NewMemory(bus.MemoryConfig{})
	defer mem.Close()
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"PlainBus", func(c *Config) { c.Bus = struct{ bus.Bus }{mem} }, "Affinity needs a bus that reads chosen partitions"},
		{"NegativeGrace", func(c *Config) { c.AffinityGrace = -time.Second }, "AffinityGrace"},
		{"NegativeRewind", func(c *Config) { c.AffinityRewind = -1 }, "AffinityRewind"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := Config{Addr: "127.0.0.1:0", Bus: mem, History: history.NewMemory(history.MemoryConfig{}), Signer: signer, Affinity: true}
			tc.mod(&cfg)
			if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error saying %q", err, tc.want)
			}
		})
	}
}
