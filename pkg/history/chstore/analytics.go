package chstore

import (
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/danmaku-live/danmaku/pkg/history"
)

// Interface guards.
var (
	_ history.Sessions   = (*Store)(nil)
	_ history.Analytics  = (*Store)(nil)
	_ history.VerdictLog = (*Store)(nil)
)

// PutSession inserts s; a later PutSession of the same (room, id) replaces
// it (the higher version wins when reading).
func (s *Store) PutSession(ctx context.Context, sess history.Session) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table+"_sessions (room, id, title, by_uid, start_ms, end_ms, version)")
	if err != nil {
		return fmt.Errorf("chstore: prepare session insert: %w", err)
	}
	defer b.Abort()
	if err := b.Append(sess.Room, sess.ID, sess.Title, sess.By, sess.StartMs, sess.EndMs, uint64(time.Now().UnixNano())); err != nil {
		return fmt.Errorf("chstore: append session: %w", err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("chstore: insert session: %w", err)
	}
	return nil
}

const sessionCols = "id, argMax(title, version), argMax(by_uid, version), argMax(start_ms, version) AS s, argMax(end_ms, version)"

func (s *Store) sessions(ctx context.Context, room, q string, args ...any) ([]history.Session, error) {
	return queryRows(ctx, s.conn, "sessions", q, args, func(rows driver.Rows) (history.Session, error) {
		x := history.Session{Room: room}
		err := rows.Scan(&x.ID, &x.Title, &x.By, &x.StartMs, &x.EndMs)
		return x, err
	})
}

// queryRows runs q and returns one T per row of its answer, made by scan
// (which scans the row into a T). what names the query in errors
// ("chstore: <what>: ...", "chstore: scan <what>: ...").
func queryRows[T any](ctx context.Context, conn driver.Conn, what, q string, args []any, scan func(driver.Rows) (T, error)) ([]T, error) {
	rows, err := conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("chstore: %s: %w", what, err)
	}
	defer rows.Close()
	var out []T
	for rows.Next() {
		v, err := scan(rows)
		if err != nil {
			return nil, fmt.Errorf("chstore: scan %s: %w", what, err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("chstore: %s: %w", what, err)
	}
	return out, nil
}

// Sessions returns up to limit sessions of room, newest start first.
func (s *Store) Sessions(ctx context.Context, room string, limit int) ([]history.Session, error) {
	q := "SELECT " + sessionCols + " FROM " + s.table + "_sessions WHERE room = ? GROUP BY id ORDER BY s DESC, id DESC"
	if limit > 0 {
		q += " LIMIT " + strconv.Itoa(limit)
	}
	return s.sessions(ctx, room, q, room)
}

// Session returns session id of room.
func (s *Store) Session(ctx context.Context, room, id string) (history.Session, bool, error) {
	out, err := s.sessions(ctx, room, "SELECT "+sessionCols+" FROM "+s.table+"_sessions WHERE room = ? AND id = ? GROUP BY id", room, id)
	if err != nil || len(out) == 0 {
		return history.Session{}, false, err
	}
	return out[0], true, nil
}

// analyticsCtx gives ctx the AnalyticsTimeout deadline when it has none:
// a context deadline replaces the connection's ReadTimeout in
// clickhouse-go, and a GROUP BY over a long range answers only when done.
func (s *Store) analyticsCtx(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.cfg.AnalyticsTimeout)
}

// liveRange is the FROM and WHERE of the analytics reads: the live
// (collapsed, not deleted) messages of a room in [fromMs, toMs). FINAL
// collapses redeliveries and deletions that are not merged yet; ts lets
// the server skip partitions and granules, ts_ms is the exact bound.
//
// On 18.16 FINAL merges the room's key range in one thread; a newer server
// reads FINAL in parallel (and per partition with
// do_not_merge_across_partitions_select_final), and a projection or a
// materialized view into an AggregatingMergeTree per room and minute
// (uniqState(uid), countState) would answer Minutes and Density without
// reading the messages at all.
func (s *Store) liveRange(room string, fromMs, toMs int64) (string, []any) {
	return " FROM " + s.table + " FINAL WHERE room = ? AND ts >= toDateTime(?) AND ts <= toDateTime(?)" +
			" AND ts_ms >= ? AND ts_ms < ? AND deleted = 0",
		[]any{room, secs(fromMs), secs(toMs - 1), fromMs, toMs}
}

// Density counts messages per bucket in one GROUP BY on the server.
func (s *Store) Density(ctx context.Context, room string, fromMs, toMs, bucketMs int64) ([]int64, error) {
	ctx, cancel := s.analyticsCtx(ctx)
	defer cancel()
	if err := history.CheckDensity(fromMs, toMs, bucketMs); err != nil {
		return nil, err
	}
	from, args := s.liveRange(room, fromMs, toMs)
	q := "SELECT intDiv(ts_ms - " + strconv.FormatInt(fromMs, 10) + ", " + strconv.FormatInt(bucketMs, 10) + ") AS b, count()" +
		from + " GROUP BY b"
	type bucket struct {
		b int64
		n uint64
	}
	counts, err := queryRows(ctx, s.conn, "density", q, args, func(rows driver.Rows) (bucket, error) {
		var x bucket
		err := rows.Scan(&x.b, &x.n)
		return x, err
	})
	if err != nil {
		return nil, err
	}
	out := make([]int64, (toMs-fromMs+bucketMs-1)/bucketMs)
	for _, x := range counts {
		if x.b >= 0 && x.b < int64(len(out)) {
			out[x.b] = int64(x.n)
		}
	}
	return out, nil
}

// Minutes counts messages and distinct senders per minute. uniqExact
// keeps the chatter counts exact (uniq would be cheaper and approximate).
func (s *Store) Minutes(ctx context.Context, room string, fromMs, toMs int64) ([]history.MinuteStat, error) {
	ctx, cancel := s.analyticsCtx(ctx)
	defer cancel()
	if toMs <= fromMs {
		return nil, history.ErrRange
	}
	from, args := s.liveRange(room, fromMs, toMs)
	return queryRows(ctx, s.conn, "minutes", "SELECT intDiv(ts_ms, 60000) * 60000 AS m, count(), uniqExact(uid)"+from+
		" GROUP BY m ORDER BY m", args, func(rows driver.Rows) (history.MinuteStat, error) {
		var m int64
		var n, u uint64
		err := rows.Scan(&m, &n, &u)
		return history.MinuteStat{Minute: m, Messages: int64(n), Chatters: int64(u)}, err
	})
}

// phrasesExpr is history.Phrases in 18.16's SQL over t, the message's
// text lower-cased with its blocked words replaced by history.BlockedMark
// (markExpr): an array of its distinct phrases before the filters. 18.16
// has no ngrams() or tokens(), no arrayFlatten, and substringUTF8 wants a
// constant offset, so Han bigrams pair each run's characters (extractAll
// '.') with themselves shifted by one (arrayPopBack/arrayPopFront), and
// groupUniqArrayArray flattens and dedupes the runs, the words and the
// emoji in one step. Words are a Latin letter or digit with its combining
// marks (\p{M}), two or more of them; an emoji takes its skin tone and
// U+FE0F and the emoji joined to it by U+200D (the same character classes
// as history.Phrases; the server's regexes are RE2, as Go's).
const phrasesExpr = `arrayReduce('groupUniqArrayArray', arrayConcat(
	arrayMap(c -> if(length(c) = 1, c, arrayMap((a, b) -> concat(a, b), arrayPopBack(c), arrayPopFront(c))),
		arrayMap(r -> extractAll(r, '.'), extractAll(t, '[\\p{Han}` + mark + `]+'))),
	[extractAll(t, '[\\p{Latin}0-9` + mark + `]\\p{M}*(?:[\\p{Latin}0-9` + mark + `]\\p{M}*)+'),
	 extractAll(t, '` + emoji + `(?:\\x{200D}` + emoji + `)*')]))`

// mark is history.BlockedMark in a regex; emoji an emoji with its
// modifiers (history.IsEmoji, IsEmojiModifier).
const (
	mark  = `\\x{FFFC}`
	emoji = `[\\x{1F300}-\\x{1F3FA}\\x{1F400}-\\x{1FAFF}\\x{2600}-\\x{27BF}][\\x{1F3FB}-\\x{1F3FF}\\x{FE0F}]*`
)

// TopPhrases counts, per phrase, the messages that contain it, on the
// server. Stopwords and phrases touching a blocked word are filtered after
// arrayJoin, before counting.
func (s *Store) TopPhrases(ctx context.Context, room string, fromMs, toMs int64, blocked []string, limit int) ([]history.PhraseCount, error) {
	ctx, cancel := s.analyticsCtx(ctx)
	defer cancel()
	if toMs <= fromMs {
		return nil, history.ErrRange
	}
	if limit <= 0 {
		limit = 20
	}
	from, args := s.liveRange(room, fromMs, toMs)
	// Tokenising is the expensive part (regexes over every text): over
	// more than PhraseSampleRows rows, count the messages whose
	// cityHash64(seq) falls in a 1-in-k sample (every version of a
	// message has its seq, so FINAL still collapses them) and scale up.
	k, err := s.phraseSample(ctx, room, fromMs, toMs)
	if err != nil {
		return nil, err
	}
	if k > 1 {
		from += " AND cityHash64(seq) % " + strconv.FormatInt(k, 10) + " = 0"
	}
	// t: the text lower-cased (lowerUTF8, as history.Lower), each blocked
	// word replaced by the mark, so the phrases overlapping one hold it
	// and are left out.
	markExpr := "lowerUTF8(text)"
	if blocked = history.NormBlocked(blocked); len(blocked) > 0 {
		markExpr = "replaceRegexpAll(" + markExpr + ", ?, '" + string(history.BlockedMark) + "')"
		args = append([]any{history.BlockedPattern(blocked)}, args...)
	}
	where := " WHERE NOT has(?, p) AND position(p, '" + string(history.BlockedMark) + "') = 0"
	args = append(args, history.Stopwords)
	if len(blocked) > 0 {
		// The phrase with the characters lowerUTF8 left folded as the
		// blocked words are ("İb" is part of "ibne"), as history.Phrases.
		folded := "p"
		for _, f := range history.BlockedFolds(blocked) {
			folded = "replaceAll(" + folded + ", ?, ?)"
			args = append(args, f[0], f[1])
		}
		where += " AND NOT arrayExists(w -> position(w, " + folded + ") > 0, ?)"
		args = append(args, blocked)
	}
	q := "SELECT p, count() AS n FROM (SELECT arrayJoin(" + phrasesExpr + ") AS p FROM (SELECT " + markExpr + " AS t" + from + "))" +
		where + " GROUP BY p ORDER BY n DESC, p LIMIT " + strconv.Itoa(limit)
	return queryRows(ctx, s.conn, "phrases", q, args, func(rows driver.Rows) (history.PhraseCount, error) {
		pc := history.PhraseCount{Estimated: k > 1}
		var n uint64
		err := rows.Scan(&pc.Phrase, &n)
		pc.Count = int64(n) * k
		return pc, err
	})
}

// phraseSample returns 1, or k when the range holds more than
// PhraseSampleRows rows (counted without FINAL: a cheap upper bound).
func (s *Store) phraseSample(ctx context.Context, room string, fromMs, toMs int64) (int64, error) {
	limit := int64(s.cfg.PhraseSampleRows)
	if limit <= 0 {
		return 1, nil
	}
	var n uint64
	if err := s.conn.QueryRow(ctx, "SELECT count() FROM "+s.table+" WHERE room = ? AND ts >= toDateTime(?) AND ts <= toDateTime(?)"+
		" AND ts_ms >= ? AND ts_ms < ?", room, secs(fromMs), secs(toMs-1), fromMs, toMs).Scan(&n); err != nil {
		return 0, fmt.Errorf("chstore: phrases: %w", err)
	}
	if int64(n) <= limit {
		return 1, nil
	}
	return (int64(n) + limit - 1) / limit, nil
}

// AddVerdicts inserts verdict counts; SummingMergeTree adds rows of the
// same (room, minute, action, rule) when it merges.
func (s *Store) AddVerdicts(ctx context.Context, counts []history.VerdictCount) error {
	if len(counts) == 0 {
		return nil
	}
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table+"_verdicts (room, minute, action, rule, n)")
	if err != nil {
		return fmt.Errorf("chstore: prepare verdict insert: %w", err)
	}
	defer b.Abort()
	for _, c := range counts {
		if c.Count <= 0 {
			continue
		}
		if err := b.Append(c.Room, time.UnixMilli(c.Minute/60000*60000).UTC(), c.Action, c.Rule, uint64(c.Count)); err != nil {
			return fmt.Errorf("chstore: append verdicts: %w", err)
		}
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("chstore: insert verdicts: %w", err)
	}
	return nil
}

// Verdicts sums a room's verdict counts per rule and action.
func (s *Store) Verdicts(ctx context.Context, room string, fromMs, toMs int64) ([]history.VerdictCount, error) {
	ctx, cancel := s.analyticsCtx(ctx)
	defer cancel()
	// Minutes start on whole seconds: minute >= ceil(from s), < ceil(to s).
	out, err := queryRows(ctx, s.conn, "verdicts", "SELECT rule, action, sum(n) AS c FROM "+s.table+"_verdicts"+
		" WHERE room = ? AND minute >= toDateTime(?) AND minute < toDateTime(?) GROUP BY rule, action",
		[]any{room, ceilSecs(fromMs), ceilSecs(toMs)}, func(rows driver.Rows) (history.VerdictCount, error) {
			var v history.VerdictCount
			var n uint64
			err := rows.Scan(&v.Rule, &v.Action, &n)
			v.Count = int64(n)
			return v, err
		})
	if err != nil {
		return nil, err
	}
	history.SortVerdicts(out)
	return out, nil
}
