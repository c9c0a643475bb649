// Package chstore keeps danmaku history in ClickHouse. It implements
// history.Store, history.Deleter and history.LastSeqer and passes the shared
// suite in pkg/history/historytest. It targets ClickHouse 18.16 (the
// server Debian ships) over the native protocol, so it uses nothing newer.
//
// # Schema
//
// New creates the database (Config.Database, "danmaku") and the table
// (Config.Table, "messages") if missing, and records the applied schema
// version in database.schema_version, so later releases can migrate:
//
//	CREATE TABLE danmaku.messages (
//		room String, seq UInt64, id String, uid String, name String,
//		text String, kind String, role String, color String,
//		mode String, size String, -- display mode and size (version 3)
//		ts_ms   Int64,    -- message time, Unix ms (protocol.Message.TS)
//		ts      DateTime, -- the same time in seconds, for partitions
//		deleted UInt8,
//		version UInt64    -- 0 for a message, the deletion time (ns) for a deletion
//	) ENGINE = ReplacingMergeTree(version)
//	PARTITION BY toYYYYMMDD(ts)
//	ORDER BY (room, seq)
//
// ORDER BY (room, seq) makes every read a range of the primary key: a
// room's newest 50 messages sit in one or two granules.
//
// # Why ReplacingMergeTree
//
// Delivery from the bus is at-least-once: after a crash the history writer
// appends a batch again. ReplacingMergeTree collapses rows with the same
// sorting key (room, seq) into the one with the highest version, so a
// redelivered message leaves one copy. The same mechanism does deletions
// without mutations (ALTER ... UPDATE/DELETE are asynchronous and heavy on
// 18.16): Delete and Purge read the live rows and insert copies with
// deleted = 1 and version = now in ns, which replace the originals. An
// original has version 0, so a message redelivered after its deletion
// stays deleted. A copy has the original's ts and therefore lands in the
// same daily partition, which is where ReplacingMergeTree collapses.
//
// # Reads: argMax for windows, FINAL for open ranges
//
// Merges happen in the background, at no set time, so reads cannot rely on
// them; every read collapses versions itself, in one of two forms:
//
//   - GROUP BY seq with argMax(col, version), HAVING on the collapsed
//     deleted flag;
//   - SELECT ... FINAL with deleted = 0 in WHERE. Under FINAL the WHERE
//     applies to the collapsed row, because the server does not move it to
//     PREWHERE (checked on 18.16.1: an original plus its unmerged deletion
//     row returns nothing).
//
// Neither form on 18.16 stops early for ORDER BY seq DESC LIMIT 50: both
// read every row of the key range. So a Range with a Limit (and no time
// bound on the side it starts from) first asks for the room's highest seq
// (max(seq) reads only the seq column of the room's key range), then reads
// a window of seqs next to where it starts — the newest max(4*Limit, 256)
// seqs for Tail, the ones just after AfterSeq otherwise — and widens it
// 16-fold only when deletions leave it short. Windows of up to 16384 seqs
// are read with argMax, wider windows and open ranges (replays by time,
// no Limit) with FINAL, because each form wins on its side. Measured with
// BenchmarkRangeTail50 on a room of 100k messages among 1M rows, 2 shared
// and busy cores (load average 10-50), ClickHouse 18.16.1:
//
//	newest 50, whole room:        FINAL  p50  38-104 ms   argMax p50 85-229 ms
//	newest 50, window of 200:     FINAL  p50   9-15 ms    argMax p50   4.5-8.7 ms
//	Store.Range(Tail, Limit 50):  p50 10.6-11.8 ms, p99 51-250 ms (max(seq) + window)
//	Store.Range(AfterSeq = last-50, Limit 500): p50 14-15 ms
//	memory store, same Tail read: p50 5-12 µs
//
// p99 figures on that machine mostly measure other processes; at load
// average ~10 the whole-room numbers were p99 104 ms (FINAL) and 416 ms
// (argMax).
//
// # Writes
//
// Append sends one INSERT per call with PrepareBatch (columns named). With
// batches of 1000 rows BenchmarkAppend1000 measured 70-81k rows/s at load
// average ~10 and 11-22k rows/s when the 2 cores were shared with 15-50
// runnable processes; the history writer (logic/historywriter) batches up to
// 1000 messages or 200 ms, and a busy deployment's accepted stream is a
// few thousand messages a second.
//
// Every call is bounded by Config.DialTimeout (3 s) and
// Config.ReadTimeout (10 s) besides its context, so a server that is down
// or unreachable makes Append fail promptly; the writer retries the batch
// and commits nothing meanwhile.
//
// # Retention
//
// A janitor goroutine (started by New, stopped by Close) runs at start and
// every Config.JanitorInterval, and drops with ALTER TABLE ... DROP
// PARTITION each daily partition older than Config.RetentionDays (30).
// DropExpired does one pass on demand. Dropping a partition is cheap and
// immediate, unlike deleting rows.
//
// # Sessions, analytics and verdict counts
//
// Schema version 3 adds {table}_sessions (ReplacingMergeTree(version)
// ORDER BY (room, id): ending a session inserts it again with a higher
// version; reads collapse with argMax), version 4 {table}_verdicts
// (SummingMergeTree(n), PARTITION BY day, ORDER BY (room, minute, action,
// rule); reads sum(n) again because merges are not immediate; the janitor
// drops its expired days with the messages'), version 6 {table}_purges
// (room, uid, since_ms, until_ms, at; MergeTree by day of the purge):
// Purge records itself there before marking the stored rows, and Append
// reads it after each insert and marks the rows it covers, so a message
// written after its purge (late or redelivered) is deleted too, whichever
// process writes it — one query per Append, on a table of a few rows per
// ban. Version 7 adds at_ms and ends to it: EndPurges (an unban) inserts
// a row with ends = 1 that cuts the purges of its (room, uid) recorded up
// to its at_ms to end at its until_ms; Append reads those rows with the
// purges. It costs a round trip: 1000-row Appends took 37–58 ms against
// 23–40 ms for the insert alone (interleaved, 4 × 10 each, load average
// 13–16, 6 Dec 2026), so the writer's top rate drops by about a third.
//
// Density, Minutes and TopPhrases run one GROUP BY each over the room's
// live rows in the range (FINAL, deleted = 0, ts for partition and
// granule pruning, ts_ms for the exact bound). Chatters per minute use
// uniqExact. TopPhrases computes history.Phrases in SQL with what 18.16
// has: lowerUTF8(text) (history.Lower is the same folding; the blocked
// words' pattern also matches the capitals lowerUTF8 leaves, such as İ)
// with the blocked words replaced by a mark
// (replaceRegexpAll), then extractAll with \p{Han} runs, Latin words
// (\p{Latin} and digits with their \p{M} marks) and the emoji with their
// modifiers; Han bigrams by pairing extractAll(run, '.') with itself
// shifted (arrayPopBack/arrayPopFront, since substringUTF8 takes no
// column offset there); arrayReduce('groupUniqArrayArray', …) flattens
// and dedupes per message (no arrayFlatten on 18.16); phrases holding the
// mark or part of a blocked word are filtered after arrayJoin. Tokenising dominates: over
// more than Config.PhraseSampleRows (1,000,000) rows TopPhrases counts the
// messages with cityHash64(seq) % k = 0 and scales by k (marked
// Estimated). These queries send nothing until the GROUP BY is done, so
// they wait under Config.AnalyticsTimeout (25 s) instead of ReadTimeout
// (10 s) when their context has no deadline. BenchmarkAnalytics (make
// bench-analytics) measures them over 10 million rows; the figures are in
// BENCHMARKS.md.
//
// On a newer server: a materialized view into an AggregatingMergeTree per
// (room, minute) with countState and uniqState(uid) would answer Density
// (at minute resolution) and Minutes without reading messages; ngrams()
// and tokens() (or a text index) would replace the regex-and-array
// tokenizer; parallel FINAL and
// do_not_merge_across_partitions_select_final make the collapsed reads
// cheaper.
//
// # On a newer server
//
// A current ClickHouse would let the schema use:
//   - ts DateTime64(3) in place of the ts_ms/ts pair;
//   - TTL ts + INTERVAL 30 DAY (with ttl_only_drop_parts = 1) in place of
//     the janitor;
//   - lightweight DELETE or an is_deleted column
//     (ReplacingMergeTree(version, deleted)) for deletions;
//   - a faster FINAL (do_not_merge_across_partitions_select_final,
//     parallel FINAL) and read-in-order for ORDER BY seq DESC LIMIT n,
//     which would make the seq window and the argMax form unnecessary;
//   - async_insert for many small writers.
package chstore
