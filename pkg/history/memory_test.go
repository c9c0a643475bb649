package history_test

import (
	"testing"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/history/historytest"
)

func TestMemory(t *testing.T) {
	historytest.Run(t, func(t *testing.T) history.Store {
		return history.NewMemory(history.MemoryConfig{})
	})
}

func TestMemorySharedStore(t *testing.T) {
	s := history.NewMemory(history.MemoryConfig{})
	historytest.Run(t, func(t *testing.T) history.Store { return s })
}
