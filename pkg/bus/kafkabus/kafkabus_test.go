package kafkabus

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/bus/bustest"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// testConfig returns a config for the test broker with a topic prefix no
// other test uses.
func testConfig(t testing.TB) Config {
	t.Helper()
	addr := testenv.Addr(t, testenv.Kafka)
	var b [4]byte
	_, _ = rand.Read(b[:])
	return Config{
		Brokers:           strings.Split(addr, ","),
		TopicPrefix:       "t" + hex.EncodeToString(b[:]) + ".",
		CreateTopics:      true,
		HeartbeatInterval: 100 * time.Millisecond,
		SessionTimeout:    6 * time.Second, // the broker's minimum
	}
}

func newTestBus(t testing.TB, cfg Config) *Bus {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b, err := New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = b.Close() })
	return b
}

func TestSuite(t *testing.T) {
	bustest.Run(t, func(t *testing.T) bus.Bus {
		return newTestBus(t, testConfig(t))
	})
}
