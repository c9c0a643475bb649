package chstore

import (
	"testing"

	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestConfigCommentsStateDefaults checks that each Config field's comment
// states the default withDefaults gives it.
func TestConfigCommentsStateDefaults(t *testing.T) {
	testenv.StatedDefaults(t, ".", Config{}.withDefaults(), map[string]string{
		"Username": `user "default" without a password, stated in words`,
		"Password": `user "default" without a password, stated in words`,
	})
}
