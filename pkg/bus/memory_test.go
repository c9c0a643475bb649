package bus_test

import (
	"testing"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/bus/bustest"
)

func TestMemory(t *testing.T) {
	bustest.Run(t, func(t *testing.T) bus.Bus {
		m := bus.NewMemory(bus.MemoryConfig{})
		t.Cleanup(func() { _ = m.Close() })
		return m
	})
}

func TestMemorySmallFetch(t *testing.T) {
	bustest.Run(t, func(t *testing.T) bus.Bus {
		m := bus.NewMemory(bus.MemoryConfig{Partitions: 2, MaxFetch: 3})
		t.Cleanup(func() { _ = m.Close() })
		return m
	})
}
