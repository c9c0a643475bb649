package client

import (
	"slices"
	"testing"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

func TestThinnedBatchesAreNotGaps(t *testing.T) {
	var got []uint64
	c := &Client{
		cfg:   Config{OnMessage: func(_ string, m protocol.Message) { got = append(got, m.Seq) }},
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
	// A thinned batch starting past the covered range is a gap.
	c.handle([]byte(`{"op":"batch","room":"r","from":20,"to":25,"msgs":[{"seq":21}]}`))
	if !rs.resuming || rs.last != 13 {
		t.Fatalf("gap not detected: last %d resuming %v", rs.last, rs.resuming)
	}
	// The history after the resume covers up to the joined seq.
	c.handle([]byte(`{"op":"joined","room":"r","seq":25,"online":1}`))
	c.handle([]byte(`{"op":"history","room":"r","msgs":[{"seq":21}],"complete":true}`))
	c.handle([]byte(`{"op":"batch","room":"r","from":26,"to":27,"msgs":[{"seq":27}]}`))
	if !slices.Equal(got, []uint64{1, 4, 8, 13, 21, 27}) || rs.last != 27 || rs.resuming {
		t.Fatalf("after resume: delivered %v, last %d, resuming %v", got, rs.last, rs.resuming)
	}
}
