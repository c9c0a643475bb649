package moderation

import (
	"log/slog"
	"testing"

	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestConfigCommentsStateDefaults checks that the comments of Config and
// Settings state the defaults New and BuiltinSettings give: the comments
// are the one place the docs link to for a moderation default.
func TestConfigCommentsStateDefaults(t *testing.T) {
	e, err := New(Config{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	cfg := e.cfg
	cfg.HeldPerRoom, cfg.HeldTTL = e.held.max, e.held.ttl // NewHeldQueue applies these
	testenv.StatedDefaults(t, ".", cfg, nil)
	testenv.StatedDefaults(t, ".", BuiltinSettings(), map[string]string{
		"LinkPolicy":    "named by its constant, LinkAllow",
		"FloodAction":   "named by its constant, ActionHold",
		"ModePolicy":    "named by its constant, DisplayPrivileged",
		"SizePolicy":    "named by its constant, DisplayAll",
		"DisplayBudget": "the operator's --thin-budget",
	})
}
