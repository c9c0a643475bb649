package dispatch

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

func msgs(from uint64, kinds ...string) []protocol.Message {
	var ms []protocol.Message
	for i, k := range kinds {
		m := protocol.Message{Seq: from + uint64(i), UID: "u"}
		switch k {
		case "sys":
			m.Kind = protocol.KindSystem
		case "paid":
			m.Kind = protocol.KindPaid
		case "hi":
			m.Kind = protocol.KindHighlight
		case "mod":
			m.Role = "mod"
		}
		ms = append(ms, m)
	}
	return ms
}

func seqs(ms []protocol.Message) []uint64 {
	var s []uint64
	for _, m := range ms {
		s = append(s, m.Seq)
	}
	return s
}

func TestThinRoom(t *testing.T) {
	t0 := time.Unix(1000, 0)
	tests := []struct {
		name   string
		budget int
		ticks  [][]protocol.Message
		gap    time.Duration // between ticks
		shown  [][]uint64    // per tick; nil = no batch
		from   []uint64      // per published tick
	}{
		{
			name: "under budget", budget: 10,
			ticks: [][]protocol.Message{msgs(1, "", "", "")},
			shown: [][]uint64{{1, 2, 3}}, from: []uint64{1},
		},
		{
			name: "priorities", budget: 3,
			ticks: [][]protocol.Message{msgs(1, "", "mod", "", "paid", "", "hi", "sys", "")},
			shown: [][]uint64{{4, 6, 7}}, from: []uint64{1},
		},
		{
			name: "oldest first within a priority", budget: 4,
			ticks: [][]protocol.Message{msgs(1, "", "mod", "", "", "")},
			shown: [][]uint64{{1, 2, 3, 4}}, from: []uint64{1},
		},
		{
			name: "system always shown", budget: 1,
			ticks: [][]protocol.Message{msgs(1, "sys", "", "sys", "paid")},
			shown: [][]uint64{{1, 3}}, from: []uint64{1},
		},
		{
			name: "budget spent: next tick covers the left-out seqs", budget: 2, gap: 100 * time.Millisecond,
			ticks: [][]protocol.Message{msgs(1, "", "", ""), msgs(4, "", ""), msgs(6, "", "", "")},
			// tick 1 shows 2 (tokens 0), tick 2 has 0.2 tokens: nothing,
			// tick 3 has 0.4: nothing... covered by the first batch after.
			shown: [][]uint64{{1, 2}, nil, nil}, from: []uint64{1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := New(Config{Bus: bus.NewMemory(bus.MemoryConfig{}), ThinBudget: tt.budget})
			if err != nil {
				t.Fatal(err)
			}
			now := t0
			pub := 0
			for i, ms := range tt.ticks {
				shown, from, ok := d.thinRoom("r", ms, d.budget("r"), now)
				if want := tt.shown[i]; (want == nil) == ok || !slices.Equal(seqs(shown), want) {
					t.Fatalf("tick %d: shown %v (publish %v), want %v", i, seqs(shown), ok, want)
				}
				if ok {
					if from != tt.from[pub] {
						t.Fatalf("tick %d: from %d, want %d", i, from, tt.from[pub])
					}
					pub++
				}
				now = now.Add(tt.gap)
			}
		})
	}
	t.Run("cover carried to the next batch", func(t *testing.T) {
		d, _ := New(Config{Bus: bus.NewMemory(bus.MemoryConfig{}), ThinBudget: 10})
		now := t0
		d.thinRoom("r", msgs(1, "", "", "", "", "", "", "", "", "", ""), 10, now) // spends all 10
		if _, _, ok := d.thinRoom("r", msgs(11, "", ""), 10, now); ok {
			t.Fatal("published with no budget left")
		}
		shown, from, ok := d.thinRoom("r", msgs(13, ""), 10, now.Add(time.Second))
		if !ok || from != 11 || !slices.Equal(seqs(shown), []uint64{13}) {
			t.Fatalf("shown %v from %d ok %v; want [13] from 11", seqs(shown), from, ok)
		}
	})
	t.Run("per-room override", func(t *testing.T) {
		d, _ := New(Config{Bus: bus.NewMemory(bus.MemoryConfig{})})
		if d.budget("r") != 0 {
			t.Fatal("thinning on by default")
		}
		d.SetBudget("r", 5)
		if d.budget("r") != 5 || d.budget("other") != 0 {
			t.Fatalf("override: r=%d other=%d", d.budget("r"), d.budget("other"))
		}
		d.SetBudget("r", -1)
		if d.budget("r") != 0 {
			t.Fatal("negative budget does not turn thinning off")
		}
		d.SetBudget("r", 0)
		if d.budget("r") != 0 {
			t.Fatal("reset to default")
		}
	})
}

// TestBudgetFromSettings: a settings event with display_budget on the
// control stream sets the room's budget; -1 turns thinning off.
func TestBudgetFromSettings(t *testing.T) {
	b := bus.NewMemory(bus.MemoryConfig{})
	d, err := New(Config{Bus: b, ThinBudget: 50})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	time.Sleep(50 * time.Millisecond) // the control consumer starts at the newest record
	pub := b.Publisher(bus.StreamControl)
	for _, ev := range []struct {
		room string
		data string
	}{{"hot", `{"display_budget":5}`}, {"calm", `{"display_budget":-1}`}} {
		v, _ := bus.Marshal(bus.Control{Op: bus.ControlSettings, Room: ev.room, Data: []byte(ev.data)})
		if err := pub.Publish(ctx, bus.Record{Key: ev.room, Value: v}); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(2 * time.Second)
	for d.budget("hot") != 5 || d.budget("calm") != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("budgets hot=%d calm=%d, want 5 and 0 (off)", d.budget("hot"), d.budget("calm"))
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got := d.budget("other"); got != 50 {
		t.Fatalf("default budget %d, want 50", got)
	}
}

// TestThinnedTailCovered: when every message of a room's last ticks is left
// out and the room then goes quiet, a batch with no messages still covers
// them: 300 published, the marks reach 300.
func TestThinnedTailCovered(t *testing.T) {
	b := bus.NewMemory(bus.MemoryConfig{})
	out, err := b.Consumer(bus.StreamDispatch, bus.ConsumerOptions{})
	if err != nil {
		t.Fatal(err)
	}
	d, err := New(Config{Bus: b, ThinBudget: 10, MinTick: 5 * time.Millisecond, MaxTick: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = d.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	pub := b.Publisher(bus.StreamAccepted)
	publish := func(from, to uint64) {
		var recs []bus.Record
		for seq := from; seq <= to; seq++ {
			v, _ := bus.Marshal(protocol.Message{Room: "hot", Seq: seq, UID: "u", Text: "t"})
			recs = append(recs, bus.Record{Key: "hot", Value: v})
		}
		if err := pub.Publish(ctx, recs...); err != nil {
			t.Fatal(err)
		}
	}
	fctx, fcancel := context.WithTimeout(ctx, 3*time.Second)
	defer fcancel()
	var covered uint64 // highest seq covered by a batch, with every seq below it covered
	read := func(until uint64) {
		for covered < until {
			got, err := out.Fetch(fctx)
			if err != nil {
				t.Fatalf("covered up to %d, want %d: %v", covered, until, err)
			}
			for _, r := range got {
				var bt protocol.Batch
				if err := bus.Unmarshal(r.Value, &bt); err != nil {
					t.Fatal(err)
				}
				from, to := bt.Range()
				if from != covered+1 {
					t.Fatalf("batch covers %d..%d after %d: a gap", from, to, covered)
				}
				covered = to
			}
		}
	}
	publish(1, 290) // spends the budget of 10
	read(290)
	// The next ticks get 0.05 tokens each: every message is left out.
	for seq := uint64(291); seq <= 300; seq += 2 {
		publish(seq, seq+1)
		time.Sleep(5 * time.Millisecond)
	}
	read(300)
}
