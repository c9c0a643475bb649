package bus

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"
)

// flakyOpen fails to open the first consumer, then behaves like its Memory.
type flakyOpen struct {
	*Memory
	opens atomic.Int32
}

func (f *flakyOpen) Consumer(stream string, opts ConsumerOptions) (Consumer, error) {
	if f.opens.Add(1) == 1 {
		return nil, errors.New("broker unreachable")
	}
	return f.Memory.Consumer(stream, opts)
}

func TestFollowReopensAndStops(t *testing.T) {
	m := NewMemory(MemoryConfig{})
	b := &flakyOpen{Memory: m}
	ctx, cancel := context.WithCancel(context.Background())
	got := make(chan Control, 4)
	var errs atomic.Int32
	done := make(chan struct{})
	go func() {
		// Never block the handler: the loop below may publish a few
		// events before it sees one, and a handler stuck on a full
		// channel would keep Follow from seeing the cancel.
		FollowControl(ctx, b, func(ev Control) {
			select {
			case got <- ev:
			default:
			}
		}, func(error) { errs.Add(1) })
		close(done)
	}()
	// Publish until the reopened consumer (which starts at the newest
	// record) sees one.
	v, _ := Marshal(Control{Op: ControlNotice, Room: "r", Text: "hi"})
	deadline := time.After(5 * time.Second)
loop:
	for {
		if err := m.Publisher(StreamControl).Publish(ctx, Record{Key: "r", Value: v}); err != nil {
			t.Fatal(err)
		}
		select {
		case ev := <-got:
			if ev.Op != ControlNotice || ev.Text != "hi" {
				t.Fatalf("event %+v", ev)
			}
			break loop
		case <-time.After(20 * time.Millisecond):
		case <-deadline:
			t.Fatal("no event after the consumer was reopened")
		}
	}
	if errs.Load() != 1 {
		t.Fatalf("onErr called %d times, want 1", errs.Load())
	}
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("Follow did not return after ctx was cancelled")
	}
}
