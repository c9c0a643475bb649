package chstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/history/chstore"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// TestMigrateAddsDisplayColumns opens a store on a table of schema version
// 2 (before display modes) that holds a message: New adds the mode and size
// columns, the old message reads back as scroll at normal size, and new
// messages keep their mode and size.
func TestMigrateAddsDisplayColumns(t *testing.T) {
	addr := testenv.Addr(t, testenv.ClickHouse)
	db := testDB()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Cleanup(func() { dropDB(t, addr, db) })
	for _, q := range []string{
		"CREATE DATABASE " + db,
		"CREATE TABLE " + db + ".schema_version (tbl String, version UInt32, applied DateTime) ENGINE = MergeTree ORDER BY (tbl, version)",
		"CREATE TABLE " + db + `.messages (room String, seq UInt64, id String, uid String, name String, text String,
			kind String, role String, color String, ts_ms Int64, ts DateTime, deleted UInt8, version UInt64)
			ENGINE = ReplacingMergeTree(version) PARTITION BY toYYYYMMDD(ts) ORDER BY (room, seq)`,
		"CREATE TABLE " + db + ".messages_seq (room String, seq UInt64) ENGINE = ReplacingMergeTree(seq) ORDER BY room",
	} {
		if err := conn.Exec(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	now := time.Now()
	b, err := conn.PrepareBatch(ctx, "INSERT INTO "+db+".schema_version (tbl, version, applied)")
	if err != nil {
		t.Fatal(err)
	}
	for v := uint32(1); v <= 2; v++ {
		if err := b.Append("messages", v, now.UTC()); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}
	b, err = conn.PrepareBatch(ctx, "INSERT INTO "+db+".messages (room, seq, id, uid, name, text, kind, role, color, ts_ms, ts, deleted, version)")
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Append("r", uint64(1), "old", "u", "n", "before modes", "", "", "", now.UnixMilli(), now.UTC(), uint8(0), uint64(0)); err != nil {
		t.Fatal(err)
	}
	if err := b.Send(); err != nil {
		t.Fatal(err)
	}

	s, err := chstore.New(ctx, chstore.Config{Addr: addr, Database: db, RetentionDays: -1})
	if err != nil {
		t.Fatalf("New on a version 2 table: %v", err)
	}
	defer s.Close()
	m := protocol.Message{Room: "r", Seq: 2, ID: "new", UID: "u", Name: "n", Text: "on top", TS: now.UnixMilli(),
		Mode: protocol.ModeBottom, Size: protocol.SizeSmall}
	if err := s.Append(ctx, []protocol.Message{m}); err != nil {
		t.Fatal(err)
	}
	got, err := s.Range(ctx, "r", history.Filter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0].Text != "before modes" || got[0].Mode != "" || got[0].Size != "" || got[1] != m {
		t.Fatalf("Range after migration = %+v", got)
	}
	// A second store on the migrated schema (version 3 recorded) opens.
	s2, err := chstore.New(ctx, chstore.Config{Addr: addr, Database: db, RetentionDays: -1})
	if err != nil {
		t.Fatalf("New on the migrated schema: %v", err)
	}
	s2.Close()
}
