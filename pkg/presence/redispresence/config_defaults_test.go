package redispresence

import (
	"testing"

	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestConfigCommentsStateDefaults checks that each Config field's comment
// states the default withDefaults gives it.
func TestConfigCommentsStateDefaults(t *testing.T) {
	testenv.StatedDefaults(t, ".", Config{}.withDefaults(), map[string]string{
		"DB":       "database 0, stated in words",
		"PoolSize": "go-redis's own default",
	})
}
