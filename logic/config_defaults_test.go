package logic

import (
	"testing"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestConfigCommentsStateDefaults checks that each Config field's comment
// states the default New gives it: the comment is the one place the docs
// link to for a logic default.
func TestConfigCommentsStateDefaults(t *testing.T) {
	l, err := New(Config{Bus: bus.NewMemory(bus.MemoryConfig{}), Moderation: allow{}})
	if err != nil {
		t.Fatal(err)
	}
	testenv.StatedDefaults(t, ".", l.cfg, map[string]string{
		"ID": "host name and pid, different per process",
	})
}
