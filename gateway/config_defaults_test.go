package gateway

import (
	"testing"

	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestConfigCommentsStateDefaults checks that each Config field's comment
// states the default setDefaults gives it: the comment is the one place
// the docs link to for a gateway default.
func TestConfigCommentsStateDefaults(t *testing.T) {
	var c Config
	c.setDefaults()
	testenv.StatedDefaults(t, ".", c, map[string]string{
		"ID":       "host name and pid, different per process",
		"Loops":    "GOMAXPROCS, applied when the engine starts",
		"MaxConns": "derived from the process's open-file limit",
	})
}
