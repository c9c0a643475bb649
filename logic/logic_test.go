package logic

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync/atomic"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

type harness struct {
	b       *bus.Memory
	replies bus.Consumer
	acc     bus.Consumer
	ctl     bus.Consumer
	ingest  bus.Publisher
}

func newHarness(t *testing.T, b *bus.Memory, eng *moderation.Engine, wrap func(bus.Bus) bus.Bus) *harness {
	t.Helper()
	h := &harness{b: b, ingest: b.Publisher(bus.StreamIngest)}
	var err error
	if h.replies, err = b.Consumer(bus.StreamReply, bus.ConsumerOptions{Key: "gw1"}); err != nil {
		t.Fatal(err)
	}
	if h.acc, err = b.Consumer(bus.StreamAccepted, bus.ConsumerOptions{Group: "test"}); err != nil {
		t.Fatal(err)
	}
	if h.ctl, err = b.Consumer(bus.StreamControl, bus.ConsumerOptions{}); err != nil {
		t.Fatal(err)
	}
	var lb bus.Bus = b
	if wrap != nil {
		lb = wrap(b)
	}
	if eng == nil {
		eng, _ = moderation.New(moderation.Config{})
	}
	l, err := New(Config{Bus: lb, Moderation: eng, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = l.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return h
}

func (h *harness) send(t *testing.T, in bus.Ingest) {
	t.Helper()
	in.Gateway = "gw1"
	if in.Role == "" {
		in.Role = "viewer"
	}
	v, _ := bus.Marshal(in)
	if err := h.ingest.Publish(context.Background(), bus.Record{Key: in.Room, Value: v}); err != nil {
		t.Fatal(err)
	}
}

func (h *harness) reply(t *testing.T) bus.Reply {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	recs, err := h.replies.Fetch(ctx)
	if err != nil {
		t.Fatalf("no reply: %v", err)
	}
	if len(recs) != 1 {
		// Push extra records back by failing loudly: tests send one at a time.
		t.Fatalf("got %d replies at once", len(recs))
	}
	var rp bus.Reply
	if err := bus.Unmarshal(recs[0].Value, &rp); err != nil {
		t.Fatal(err)
	}
	return rp
}

func TestVerdictsAndSeq(t *testing.T) {
	h := newHarness(t, bus.NewMemory(bus.MemoryConfig{}), nil, nil)
	tests := []struct {
		name string
		in   bus.Ingest
		seq  uint64
		code protocol.Code
	}{
		{"first in room a", bus.Ingest{Room: "a", ID: "1", UID: "u1", Text: "hello", Conn: 1}, 1, ""},
		{"second in room a", bus.Ingest{Room: "a", ID: "2", UID: "u2", Text: "hello too", Conn: 2}, 2, ""},
		{"own seq in room b", bus.Ingest{Room: "b", ID: "1", UID: "u1", Text: "hi b", Conn: 3}, 1, ""},
		{"retry of an accepted id", bus.Ingest{Room: "a", ID: "1", UID: "u1", Text: "hello", Conn: 4}, 1, ""},
		{"same id other user", bus.Ingest{Room: "a", ID: "1", UID: "u3", Text: "mine", Conn: 5}, 3, ""},
		{"too long", bus.Ingest{Room: "a", ID: "3", UID: "u4", Text: string(make([]byte, 101)), Conn: 6}, 0, protocol.CodeTooLong},
		{"trusted skips moderation", bus.Ingest{Room: "a", ID: "4", UID: "svc", Role: "service", Text: string(make([]byte, 101)), Trusted: true, Conn: 7}, 4, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for i := range tt.in.Text {
				if tt.in.Text[i] == 0 {
					b := []byte(tt.in.Text)
					b[i] = 'x'
					tt.in.Text = string(b)
				}
			}
			h.send(t, tt.in)
			rp := h.reply(t)
			if rp.Conn != tt.in.Conn || rp.ID != tt.in.ID || rp.Room != tt.in.Room {
				t.Fatalf("reply addressed wrong: %+v", rp)
			}
			if rp.Seq != tt.seq || rp.Code != tt.code {
				t.Fatalf("reply %+v, want seq %d code %q", rp, tt.seq, tt.code)
			}
		})
	}
	// The accepted stream holds each accepted message once, in seq order per room.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var got []protocol.Message
	ff := bus.NewFenceFilter(h.b, bus.StreamAccepted)
	for len(got) < 5 {
		recs, err := h.acc.Fetch(ctx)
		if err != nil {
			t.Fatalf("accepted: got %d: %v", len(got), err)
		}
		for _, r := range recs {
			if ok, err := ff.Valid(ctx, r); err != nil || !ok {
				continue // a fence marker
			}
			var m protocol.Message
			_ = bus.Unmarshal(r.Value, &m)
			got = append(got, m)
		}
	}
	last := map[string]uint64{}
	for _, m := range got {
		if m.Seq != last[m.Room]+1 {
			t.Fatalf("room %s: seq %d after %d", m.Room, m.Seq, last[m.Room])
		}
		last[m.Room] = m.Seq
	}
	if last["a"] != 4 || last["b"] != 1 {
		t.Fatalf("last seqs %v", last)
	}
}

func TestHoldEmitsControl(t *testing.T) {
	eng, _ := moderation.New(moderation.Config{})
	if err := eng.SetRoomKeywords("h", moderation.KeywordList{Words: []string{"spoiler"}, Action: "hold"}); err != nil {
		t.Fatal(err)
	}
	h := newHarness(t, bus.NewMemory(bus.MemoryConfig{}), eng, nil)
	h.send(t, bus.Ingest{Room: "h", ID: "x", UID: "u", Text: "big spoiler ahead", Conn: 9})
	rp := h.reply(t)
	if !rp.Held || rp.Seq != 0 {
		t.Fatalf("reply %+v, want held", rp)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	recs, err := h.ctl.Fetch(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ev bus.Control
	_ = bus.Unmarshal(recs[0].Value, &ev)
	if ev.Op != bus.ControlHeld || ev.Room != "h" || len(ev.Data) == 0 {
		t.Fatalf("control %+v", ev)
	}
}

// flakyBus fails the first appends to the accepted stream.
type flakyBus struct {
	*bus.Memory
	fails atomic.Int32
}

func (f *flakyBus) Append(ctx context.Context, stream string, p int, recs ...bus.Record) (int64, error) {
	if _, marker := bus.ParseFence(recs[0].Value); !marker && stream == bus.StreamAccepted && f.fails.Add(-1) >= 0 {
		return 0, errors.New("broker down")
	}
	return f.Memory.Append(ctx, stream, p, recs...)
}

// TestPublishRetry: a failing accepted stream delays the ack but loses and
// repeats nothing.
func TestPublishRetry(t *testing.T) {
	fb := &flakyBus{Memory: bus.NewMemory(bus.MemoryConfig{})}
	fb.fails.Store(3)
	h := newHarness(t, fb.Memory, nil, func(bus.Bus) bus.Bus { return fb })
	h.send(t, bus.Ingest{Room: "f", ID: "1", UID: "u", Text: "survives", Conn: 1})
	rp := h.reply(t)
	if rp.Seq != 1 {
		t.Fatalf("reply %+v", rp)
	}
	if fb.fails.Load() >= 0 {
		t.Fatalf("publish was not retried")
	}
}
