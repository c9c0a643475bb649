package chstore_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/history/chstore"
	"github.com/danmaku-live/danmaku/pkg/history/historytest"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// testDB returns a database name unique to this test run.
func testDB() string {
	return fmt.Sprintf("danmaku_test_%d_%d", os.Getpid(), time.Now().UnixNano()%1e9)
}

// newStore opens a store on the test server with cfg's blanks filled and
// drops its database when the test ends.
func newStore(t testing.TB, cfg chstore.Config) *chstore.Store {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = testenv.Addr(t, testenv.ClickHouse)
	}
	if cfg.Database == "" {
		cfg.Database = testDB()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	s, err := chstore.New(ctx, cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
		dropDB(t, cfg.Addr, cfg.Database)
	})
	return s
}

// dropDB drops a test database.
func dropDB(t testing.TB, addr, db string) {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
	if err != nil {
		t.Errorf("open: %v", err)
		return
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db); err != nil {
		t.Errorf("drop database %s: %v", db, err)
	}
}

func TestSuite(t *testing.T) {
	s := newStore(t, chstore.Config{})
	historytest.Run(t, func(t *testing.T) history.Store { return s })
}
