package kafkabus

import (
	"testing"

	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestConfigCommentsStateDefaults checks that each Config field's comment
// states the default withDefaults gives it (the --kafka-* flags' defaults).
func TestConfigCommentsStateDefaults(t *testing.T) {
	testenv.StatedDefaults(t, ".", Config{}.withDefaults(), nil)
}
