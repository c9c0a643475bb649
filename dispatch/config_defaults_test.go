package dispatch

import (
	"testing"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestConfigCommentsStateDefaults checks that each Config field's comment
// states the default New gives it: the comment is the one place the docs
// link to for a dispatch default.
func TestConfigCommentsStateDefaults(t *testing.T) {
	d, err := New(Config{Bus: bus.NewMemory(bus.MemoryConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	testenv.StatedDefaults(t, ".", d.cfg, nil)
}
