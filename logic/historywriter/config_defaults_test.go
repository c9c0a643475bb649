package historywriter

import (
	"testing"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestConfigCommentsStateDefaults checks that each Config field's comment
// states the default New gives it.
func TestConfigCommentsStateDefaults(t *testing.T) {
	w, err := New(Config{Bus: bus.NewMemory(bus.MemoryConfig{}), Store: history.NewMemory(history.MemoryConfig{})})
	if err != nil {
		t.Fatal(err)
	}
	testenv.StatedDefaults(t, ".", w.cfg, map[string]string{
		"Stream":      "named by its constant, bus.StreamAccepted",
		"MaxBuffered": "a multiple of BatchSize",
		"MaxBackoff":  "stated second in the comment it shares with MinBackoff",
	})
}
