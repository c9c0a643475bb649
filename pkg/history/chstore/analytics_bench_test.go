package chstore_test

import (
	"context"
	"flag"
	"fmt"
	"testing"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/history/chstore"
)

// The analytics benchmark reads one recorded stream of 10 million
// messages (a busy day: 100 messages/s for 27.8 hours, 200,000 chatters)
// from a database that outlives the run; it is loaded on the server with
// INSERT … SELECT FROM numbers() when missing. Drop the database to reload.
const (
	anaDB   = "danmaku_bench_analytics"
	anaRoom = "stream"
	anaRows = 10_000_000
	anaStep = 10 // ms between messages
)

// anaTexts are the texts the stream's messages cycle through.
var anaTexts = []string{"哈哈哈哈哈", "主播太强了 666", "gg wp", "进球了!!! ⚽⚽", "lol that was close",
	"前方高能 😂😂", "打得好", "nice play 👍", "这波操作可以 666", "what a comeback", "awsl 太可爱了", "弹幕护体"}

var exactPhrases = flag.Bool("exact-phrases", false, "BenchmarkAnalytics: TopPhrases never samples")

// loadAnalytics makes sure anaDB holds the stream and returns its start.
func loadAnalytics(b *testing.B, addr string, s *chstore.Store) int64 {
	b.Helper()
	ctx := context.Background()
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}, ReadTimeout: 10 * time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	var n, base uint64
	var minTS int64
	if err := conn.QueryRow(ctx, "SELECT count(), min(ts_ms) FROM "+anaDB+".messages WHERE room = ?", anaRoom).Scan(&n, &minTS); err != nil {
		b.Fatal(err)
	}
	if n == anaRows {
		return minTS
	}
	if n != 0 {
		b.Fatalf("%s.messages holds %d rows of %q, not %d: drop the database to reload", anaDB, n, anaRoom, anaRows)
	}
	base = uint64(time.Now().Add(-28 * time.Hour).UnixMilli())
	texts := "["
	for i, t := range anaTexts {
		if i > 0 {
			texts += ","
		}
		texts += "'" + t + "'"
	}
	texts += "]"
	start := time.Now()
	q := fmt.Sprintf(`INSERT INTO %s.messages (room, seq, id, uid, name, text, kind, role, color, ts_ms, ts, deleted, version)
		SELECT '%s', number + 1, concat('m', toString(number)), concat('u', toString(cityHash64(number) %% 200000)), 'viewer',
			arrayElement(%s, (intDiv(number, 7) %% %d) + 1), '', '', '', toInt64(%d + number * %d),
			toDateTime(intDiv(%d + number * %d, 1000)), 0, 0
		FROM numbers(%d)`, anaDB, anaRoom, texts, len(anaTexts), base, anaStep, base, anaStep, anaRows)
	if err := conn.Exec(ctx, q); err != nil {
		b.Fatalf("load: %v", err)
	}
	// Five rules' verdicts in every minute of the stream.
	var vc []history.VerdictCount
	for m := int64(base) / 60000 * 60000; m < int64(base)+anaRows*anaStep; m += 60000 {
		for i, rule := range []string{"keyword:room:垃圾", "rate_limit", "duplicate", "link", "spam"} {
			vc = append(vc, history.VerdictCount{Room: anaRoom, Minute: m, Action: "reject", Rule: rule, Count: int64(i + 1)})
		}
	}
	if err := s.AddVerdicts(ctx, vc); err != nil {
		b.Fatal(err)
	}
	b.Logf("loaded %d rows and %d verdict rows in %v", anaRows, len(vc), time.Since(start))
	return int64(base)
}

// BenchmarkAnalytics times each analytics query over the whole 10M-row
// stream and over one hour of it (360,000 rows), with the default config
// (TopPhrases samples ranges of more than 1M rows; -exact-phrases turns
// that off). make bench-analytics.
func BenchmarkAnalytics(b *testing.B) {
	addr := benchAddr(b)
	ctx := context.Background()
	cfg := chstore.Config{Addr: addr, Database: anaDB, RetentionDays: -1, ReadTimeout: 10 * time.Minute}
	if *exactPhrases {
		cfg.PhraseSampleRows = -1
	}
	s, err := chstore.New(ctx, cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	from := loadAnalytics(b, addr, s)
	to := from + anaRows*anaStep
	hourFrom := from + 10*3600_000
	hourTo := hourFrom + 3600_000
	blocked := []string{"垃圾", "awsl"}
	for _, c := range []struct {
		name string
		run  func(from, to int64) (int, error)
	}{
		{"Density200", func(f, t int64) (int, error) {
			d, err := s.Density(ctx, anaRoom, f, t, (t-f+199)/200)
			return len(d), err
		}},
		{"Minutes", func(f, t int64) (int, error) {
			m, err := s.Minutes(ctx, anaRoom, f, t)
			return len(m), err
		}},
		{"TopPhrases20", func(f, t int64) (int, error) {
			p, err := s.TopPhrases(ctx, anaRoom, f, t, blocked, 20)
			return len(p), err
		}},
		{"Verdicts", func(f, t int64) (int, error) {
			v, err := s.Verdicts(ctx, anaRoom, f, t)
			return len(v), err
		}},
		{"RangePage200", func(f, t int64) (int, error) {
			m, err := s.Range(ctx, anaRoom, history.Filter{FromMs: f + (t-f)/2, ToMs: t, Limit: 200})
			return len(m), err
		}},
		// What the replay page reads after a seek: 300 messages of a
		// window of at most 120 s from the playhead.
		{"ReplayPage300", func(f, t int64) (int, error) {
			at := f + (t-f)/2
			m, err := s.Range(ctx, anaRoom, history.Filter{FromMs: at, ToMs: min(at+120_000, t), Limit: 300})
			return len(m), err
		}},
	} {
		for _, r := range []struct {
			name     string
			from, to int64
		}{{"all10M", from, to}, {"hour360k", hourFrom, hourTo}} {
			b.Run(c.name+"/"+r.name, func(b *testing.B) {
				for b.Loop() {
					n, err := c.run(r.from, r.to)
					if err != nil || n == 0 {
						b.Fatalf("%s: %d results, %v", c.name, n, err)
					}
				}
			})
		}
	}
}
