package main

import (
	"context"
	"io"
	"log/slog"
	"strconv"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/history/chstore"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestBenchSmall runs both measurements small against the test ClickHouse:
// the joins through the gateway App, and the logic App's writer storing
// every row, batch by batch.
func TestBenchSmall(t *testing.T) {
	addr := testenv.Addr(t, testenv.ClickHouse)
	ctx := context.Background()
	db := "danmaku_bench_history_test" + strconv.FormatInt(time.Now().UnixNano()%1e9, 10)
	t.Cleanup(func() { _ = dropMessages(context.Background(), addr, db) })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := chstore.New(ctx, chstore.Config{Addr: addr, Database: db, RetentionDays: -1, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := benchJoins(ctx, st, 20, 5, quiet); err != nil {
		t.Fatal(err)
	}
	const rows = 3000 // 30 per room of 100
	if err := benchInsert(ctx, st, rows, 500, quiet); err != nil {
		t.Fatal(err)
	}
	msgs, err := st.Range(ctx, "ins-7", history.Filter{Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if len(msgs) != rows/100 || msgs[0].Seq != 1 || msgs[len(msgs)-1].Seq != rows/100 {
		t.Fatalf("room ins-7 holds %d messages, want seqs 1..%d", len(msgs), rows/100)
	}
}
