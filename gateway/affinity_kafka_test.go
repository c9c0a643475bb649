package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/bus/kafkabus"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestAffinityJoinGetsEverythingKafka is TestAffinityJoinGetsEverything on
// the Kafka bus (DANMAKU_TEST_KAFKA): partitions assigned and dropped on a
// broker, read by a reader per partition that dials its leader.
func TestAffinityJoinGetsEverythingKafka(t *testing.T) {
	addr := testenv.Addr(t, testenv.Kafka)
	var p [4]byte
	_, _ = rand.Read(p[:])
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kb, err := kafkabus.New(ctx, kafkabus.Config{Brokers: strings.Split(addr, ","), TopicPrefix: "gwaff" + hex.EncodeToString(p[:]) + ".",
		CreateTopics: true, Partitions: map[string]int{bus.StreamDispatch: 8}, HeartbeatInterval: 100 * time.Millisecond,
		SessionTimeout: 6 * time.Second, MaxWait: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = kb.Close() })
	gw, feed := startAffineGWOn(t, kb, 6, affineJoinConfig)
	testJoinGetsEverything(t, gw, feed)
}
