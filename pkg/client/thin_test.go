package client

import (
	"slices"
	"testing"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

func TestThinnedBatchesAreNotGaps(t *testing.T) {
	var got []uint64
	var thinned [][2]uint64
	c := &Client{
		cfg: Config{OnMessage: func(_ string, m protocol.Message) { got = append(got, m.Seq) },
			OnThinned: func(_ string, from, to uint64) { thinned = append(thinned, [2]uint64{from, to}) }},
		rooms: map[string]*roomState{"r": {}},
	}
	frames := []string{
		`{"op":"joined","room":"r","seq":1,"online":1}`,
		`{"op":"history","room":"r","msgs":[{"seq":1}],"complete":true}`,
		`{"op":"batch","room":"r","from":2,"to":9,"msgs":[{"seq":4},{"seq":8}]}`,
		`{"op":"batch","room":"r","from":10,"to":12,"msgs":[]}`,
		`{"op":"batch","room":"r","msgs":[{"seq":13}]}`,
	}
	for _, f := range frames {
		c.handle([]byte(f))
	}
	rs := c.rooms["r"]
	if !slices.Equal(got, []uint64{1, 4, 8, 13}) || rs.last != 13 || rs.resuming {
		t.Fatalf("delivered %v, last %d, resuming %v", got, rs.last, rs.resuming)
	}
	if !slices.Equal(thinned, [][2]uint64{{2, 9}, {10, 12}}) {
		t.Fatalf("OnThinned heard %v, want 2..9 and 10..12", thinned)
	}
	// A thinned batch starting past the covered range is a gap.
	c.handle([]byte(`{"op":"batch","room":"r","from":20,"to":25,"msgs":[{"seq":21}]}`))
	if !rs.resuming || rs.last != 13 {
		t.Fatalf("gap not detected: last %d resuming %v", rs.last, rs.resuming)
	}
	if len(thinned) != 2 {
		t.Fatalf("a thinned batch past a gap was reported as thinned: %v", thinned)
	}
	// The history after the resume covers up to the joined seq.
	c.handle([]byte(`{"op":"joined","room":"r","seq":25,"online":1}`))
	c.handle([]byte(`{"op":"history","room":"r","msgs":[{"seq":21}],"complete":true}`))
	c.handle([]byte(`{"op":"batch","room":"r","from":26,"to":27,"msgs":[{"seq":27}]}`))
	if !slices.Equal(got, []uint64{1, 4, 8, 13, 21, 27}) || rs.last != 27 || rs.resuming {
		t.Fatalf("after resume: delivered %v, last %d, resuming %v", got, rs.last, rs.resuming)
	}
}

// TestIncompleteResumeAsksAgain: a resume answered complete:false delivers
// only what continues the stream, keeps ignoring batches and asks again;
// the next (complete) history fills the rest in order.
func TestIncompleteResumeAsksAgain(t *testing.T) {
	var got []uint64
	c := &Client{
		cfg:   Config{OnMessage: func(_ string, m protocol.Message) { got = append(got, m.Seq) }},
		rooms: map[string]*roomState{"r": {last: 10, resuming: true}},
	}
	rs := c.rooms["r"]
	c.handle([]byte(`{"op":"joined","room":"r","seq":14,"online":1}`))
	c.handle([]byte(`{"op":"history","room":"r","msgs":[{"seq":11},{"seq":12},{"seq":14}],"complete":false}`))
	if !slices.Equal(got, []uint64{11, 12}) || rs.last != 12 || !rs.resuming {
		t.Fatalf("after incomplete history: delivered %v, last %d, resuming %v", got, rs.last, rs.resuming)
	}
	c.handle([]byte(`{"op":"batch","room":"r","msgs":[{"seq":15}]}`)) // covered by the next history
	c.handle([]byte(`{"op":"joined","room":"r","seq":15,"online":1}`))
	c.handle([]byte(`{"op":"history","room":"r","msgs":[{"seq":13},{"seq":14},{"seq":15}],"complete":true}`))
	if !slices.Equal(got, []uint64{11, 12, 13, 14, 15}) || rs.last != 15 || rs.resuming {
		t.Fatalf("after complete history: delivered %v, last %d, resuming %v", got, rs.last, rs.resuming)
	}
	// Without progress the client gives up after maxIncomplete answers and
	// accepts the gap.
	rs.resuming = true
	for i := 0; i <= maxIncomplete; i++ {
		c.handle([]byte(`{"op":"history","room":"r","msgs":[{"seq":20}],"complete":false}`))
	}
	if !slices.Equal(got, []uint64{11, 12, 13, 14, 15, 20}) || rs.resuming {
		t.Fatalf("gap never accepted: delivered %v, resuming %v", got, rs.resuming)
	}
}
