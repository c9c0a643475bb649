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
// # Reads: FINAL, not argMax
//
// Merges happen in the background, at no set time, so reads cannot rely on
// them. Range reads with SELECT ... FINAL, which collapses the selected key
// ranges at read time; its WHERE (deleted = 0 included) applies to the
// collapsed row, because the server does not move WHERE to PREWHERE under
// FINAL (checked on 18.16.1: an original plus its unmerged deletion row
// returns nothing). The alternative, GROUP BY seq with argMax(col,
// version) and HAVING on the deleted flag, was measured slower: on a room
// of 100k messages among 1M rows (2 shared cores, 18.16.1), the newest 50
// over the whole room took p50 38 ms / p99 104 ms with FINAL and p50
// 129 ms / p99 416 ms with argMax (BenchmarkRangeTail50, sub-benchmarks
// sql-final and sql-argmax).
//
// Neither form on 18.16 stops early for ORDER BY seq DESC LIMIT 50: both
// read the whole room. So a Range with a Limit (and no time bound on the
// side it starts from) first asks for the room's highest seq (max(seq),
// which reads only the seq column of the room's key range), then reads a
// window of seqs next to where it starts — the newest max(4*Limit, 256)
// seqs for Tail, the ones just after AfterSeq otherwise — and widens the
// window 16-fold only when deletions leave it short. Reading the newest 50
// of that room through Store.Range took p50 17-30 ms, p99 ~110 ms on a
// machine with load average 10-17 on 2 cores; by hand, at lower load, the
// windowed FINAL query took 5-10 ms and the max(seq) query 6-9 ms
// (clickhouse-client --time). The memory store answers the same read in
// ~10 µs (p50).
//
// # Writes
//
// Append sends one INSERT per call with PrepareBatch (columns named). With
// batches of 1000 rows the rate was 70-80k rows/s on the loaded machine
// (BenchmarkAppend1000), far above what one history writer needs; the
// history writer (history.Writer) batches up to 1000 messages or 200 ms.
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
// # On a newer server
//
// A current ClickHouse would let the schema use:
//   - ts DateTime64(3) in place of the ts_ms/ts pair;
//   - TTL ts + INTERVAL 30 DAY (with ttl_only_drop_parts = 1) in place of
//     the janitor;
//   - lightweight DELETE or an is_deleted column
//     (ReplacingMergeTree(version, deleted)) for deletions, and
//     FINAL with do_not_merge_across_partitions_select_final and
//     read-in-order optimisation, which would make the seq window
//     unnecessary;
//   - async_insert for many small writers.
package chstore
