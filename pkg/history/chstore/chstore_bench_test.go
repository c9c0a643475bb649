package chstore_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/history/chstore"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// The read benchmarks use a database that outlives the run, so the million
// rows are loaded once per server: drop it to reload.
const (
	benchDB      = "danmaku_bench"
	benchHot     = "hot"   // the room read
	benchHotMsgs = 100_000 // its messages
	benchRows    = 1_000_000
	benchRooms   = 900 // other rooms share the rest
)

// benchEnv skips benchmarks without a server, also under CI: they run only
// with -bench, on purpose.
func benchAddr(b *testing.B) string {
	b.Helper()
	addr := envAddr()
	if addr == "" {
		b.Skip("DANMAKU_TEST_CLICKHOUSE not set")
	}
	return addr
}

var loadOnce sync.Once

// loadBench fills benchDB with benchRows rows in the order live traffic
// would write them: the hot room's messages interleaved with the others',
// in inserts of 10000 rows.
func loadBench(b *testing.B, s *chstore.Store) {
	b.Helper()
	ctx := context.Background()
	loadOnce.Do(func() {
		if n, err := s.LastSeq(ctx, benchHot); err == nil && n == benchHotMsgs {
			return
		}
		start := time.Now()
		base := time.Now().Add(-2 * time.Hour).UnixMilli()
		perOther := (benchRows - benchHotMsgs) / benchRooms
		otherSeq := make([]uint64, benchRooms)
		var hotSeq uint64
		batch := make([]protocol.Message, 0, 10_000)
		for i := range benchRows {
			var m protocol.Message
			// One row in ten is the hot room's.
			if i%10 == 0 && hotSeq < benchHotMsgs {
				hotSeq++
				m = protocol.Message{Room: benchHot, Seq: hotSeq}
			} else {
				r := i % benchRooms
				if otherSeq[r] >= uint64(perOther) {
					continue
				}
				otherSeq[r]++
				m = protocol.Message{Room: fmt.Sprintf("room-%d", r), Seq: otherSeq[r]}
			}
			m.ID = fmt.Sprintf("m%d", i)
			m.UID = fmt.Sprintf("u%d", i%5000)
			m.Name = "viewer"
			m.Text = "a typical danmaku message, thirty-some chars"
			m.TS = base + int64(i)*7
			batch = append(batch, m)
			if len(batch) == cap(batch) {
				if err := s.Append(ctx, batch); err != nil {
					b.Fatal(err)
				}
				batch = batch[:0]
			}
		}
		if err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
		b.Logf("loaded %d rows in %v", benchRows, time.Since(start))
	})
}

// latencies records per-call durations and reports p50 and p99.
type latencies []time.Duration

func (l latencies) report(b *testing.B) {
	if len(l) == 0 {
		return
	}
	slices.Sort(l)
	b.ReportMetric(float64(l[len(l)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(l[len(l)*99/100].Microseconds()), "p99-µs")
}

// BenchmarkRangeTail50 reads the newest 50 messages of a room of 100k
// messages among 1M rows: through Store.Range, through the two candidate
// SQL forms (FINAL and argMax), and from the memory store.
func BenchmarkRangeTail50(b *testing.B) {
	addr := benchAddr(b)
	ctx := context.Background()
	s, err := chstore.New(ctx, chstore.Config{Addr: addr, Database: benchDB, RetentionDays: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	loadBench(b, s)
	f := history.Filter{Tail: true, Limit: 50}

	b.Run("store", func(b *testing.B) {
		var lat latencies
		for b.Loop() {
			t := time.Now()
			got, err := s.Range(ctx, benchHot, f)
			lat = append(lat, time.Since(t))
			if err != nil || len(got) != 50 || got[49].Seq != benchHotMsgs {
				b.Fatalf("Range = %d msgs, %v", len(got), err)
			}
		}
		lat.report(b)
	})

	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	queries := map[string]string{
		"sql-final": `SELECT seq, id, uid, name, text, kind, role, color, ts_ms, deleted
			FROM ` + benchDB + `.messages FINAL
			WHERE room = ? AND deleted = 0 ORDER BY seq DESC LIMIT 50`,
		"sql-argmax": `SELECT seq, argMax(id, version), argMax(uid, version), argMax(name, version),
			argMax(text, version), argMax(kind, version), argMax(role, version), argMax(color, version),
			argMax(ts_ms, version), argMax(deleted, version) AS del
			FROM ` + benchDB + `.messages
			WHERE room = ? GROUP BY seq HAVING del = 0 ORDER BY seq DESC LIMIT 50`,
	}
	// The same two forms over the window Range reads (the newest 200 seqs).
	window := fmt.Sprintf(" AND seq > %d", benchHotMsgs-200)
	queries["sql-final-window"] = strings.Replace(queries["sql-final"], " AND deleted = 0", window+" AND deleted = 0", 1)
	queries["sql-argmax-window"] = strings.Replace(queries["sql-argmax"], "WHERE room = ?", "WHERE room = ?"+window, 1)
	for _, name := range []string{"sql-final", "sql-argmax", "sql-final-window", "sql-argmax-window"} {
		b.Run(name, func(b *testing.B) {
			var lat latencies
			for b.Loop() {
				t := time.Now()
				rows, err := conn.Query(ctx, queries[name], benchHot)
				if err != nil {
					b.Fatal(err)
				}
				n := 0
				for rows.Next() {
					n++
				}
				rows.Close()
				lat = append(lat, time.Since(t))
				if n != 50 {
					b.Fatalf("%s returned %d rows", name, n)
				}
			}
			lat.report(b)
		})
	}

	b.Run("memory", func(b *testing.B) {
		mem := history.NewMemory(history.MemoryConfig{PerRoom: benchHotMsgs})
		msgs := make([]protocol.Message, benchHotMsgs)
		for i := range msgs {
			msgs[i] = protocol.Message{Room: benchHot, Seq: uint64(i + 1), UID: "u", Name: "viewer", Text: "a typical danmaku message", TS: int64(i)}
		}
		if err := mem.Append(ctx, msgs); err != nil {
			b.Fatal(err)
		}
		var lat latencies
		b.ReportAllocs()
		for b.Loop() {
			t := time.Now()
			got, _ := mem.Range(ctx, benchHot, f)
			lat = append(lat, time.Since(t))
			if len(got) != 50 {
				b.Fatalf("Range = %d msgs", len(got))
			}
		}
		lat.report(b)
	})
}

// BenchmarkRangeAfterSeq reads the gap of a viewer that reconnects 50
// messages behind in the same room.
func BenchmarkRangeAfterSeq(b *testing.B) {
	addr := benchAddr(b)
	ctx := context.Background()
	s, err := chstore.New(ctx, chstore.Config{Addr: addr, Database: benchDB, RetentionDays: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	loadBench(b, s)
	var lat latencies
	for b.Loop() {
		t := time.Now()
		got, err := s.Range(ctx, benchHot, history.Filter{AfterSeq: benchHotMsgs - 50, Limit: 500})
		lat = append(lat, time.Since(t))
		if err != nil || len(got) != 50 {
			b.Fatalf("Range = %d msgs, %v", len(got), err)
		}
	}
	lat.report(b)
}

// BenchmarkAppend1000 inserts batches of 1000 messages (one insert each)
// and reports rows per second.
func BenchmarkAppend1000(b *testing.B) {
	addr := benchAddr(b)
	ctx := context.Background()
	db := testDB()
	s, err := chstore.New(ctx, chstore.Config{Addr: addr, Database: db, RetentionDays: -1})
	if err != nil {
		b.Fatal(err)
	}
	defer func() {
		s.Close()
		dropDB(b, addr, db)
	}()
	batch := make([]protocol.Message, 1000)
	now := time.Now().UnixMilli()
	var seq uint64
	start := time.Now()
	for b.Loop() {
		for i := range batch {
			seq++
			batch[i] = protocol.Message{Room: fmt.Sprintf("room-%d", seq%100), Seq: seq, ID: "m", UID: "u", Name: "viewer",
				Text: "a typical danmaku message, thirty-some chars", TS: now + int64(seq)}
		}
		if err := s.Append(ctx, batch); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(seq)/time.Since(start).Seconds(), "rows/s")
}
