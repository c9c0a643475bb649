package chstore

import (
	"context"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// migrations are applied in order; migration i brings the schema to
// version i+1. {db} and {table} are replaced by the configured names. Each
// statement is idempotent, so two processes migrating at once do no harm.
// Append new versions, never edit applied ones.
var migrations = [][]string{
	// Version 1: the messages table.
	{`CREATE TABLE IF NOT EXISTS {db}.{table} (
		room    String,
		seq     UInt64,
		id      String,
		uid     String,
		name    String,
		text    String,
		kind    String,
		role    String,
		color   String,
		ts_ms   Int64,
		ts      DateTime,
		deleted UInt8,
		version UInt64
	) ENGINE = ReplacingMergeTree(version)
	PARTITION BY toYYYYMMDD(ts)
	ORDER BY (room, seq)`},
	// Version 2: each room's highest seq, kept when the janitor drops the
	// room's messages by age, so LastSeq (which logic continues a room's
	// seq from) never goes back: a room quiet for longer than the
	// retention would otherwise start again at seq 1 and every gateway and
	// client that saw its higher seqs would drop its new messages as seen.
	{`CREATE TABLE IF NOT EXISTS {db}.{table}_seq (
		room String,
		seq  UInt64
	) ENGINE = ReplacingMergeTree(seq)
	ORDER BY room`,
		`INSERT INTO {db}.{table}_seq (room, seq) SELECT room, max(seq) FROM {db}.{table} GROUP BY room`},
	// Version 3: stream sessions. Ending a session inserts the row again
	// with a higher version; reads collapse with argMax.
	{`CREATE TABLE IF NOT EXISTS {db}.{table}_sessions (
		room     String,
		id       String,
		title    String,
		by_uid   String,
		start_ms Int64,
		end_ms   Int64,
		version  UInt64
	) ENGINE = ReplacingMergeTree(version)
	ORDER BY (room, id)`},
	// Version 4: moderation verdict counts per room, minute, action and
	// rule, added up by SummingMergeTree (reads sum again: merges are
	// not immediate). Partitioned by day like the messages, so the
	// janitor drops them with the messages.
	{`CREATE TABLE IF NOT EXISTS {db}.{table}_verdicts (
		room   String,
		minute DateTime,
		action String,
		rule   String,
		n      UInt64
	) ENGINE = SummingMergeTree(n)
	PARTITION BY toYYYYMMDD(minute)
	ORDER BY (room, minute, action, rule)`},
	// Version 5: each message's display mode and size (docs/protocol.md),
	// empty for scroll and normal, which is also what the rows written
	// before read back.
	{`ALTER TABLE {db}.{table} ADD COLUMN mode String DEFAULT ''`,
		`ALTER TABLE {db}.{table} ADD COLUMN size String DEFAULT ''`},
	// Version 6: purges, remembered so that Append marks the messages a
	// purge covers that reach history after it (accepted before the ban,
	// still on their way to the writer, or redelivered). Partitioned by
	// the purge's day, so the janitor drops them with the messages.
	{`CREATE TABLE IF NOT EXISTS {db}.{table}_purges (
		room     String,
		uid      String,
		since_ms Int64,
		until_ms Int64,
		at       DateTime
	) ENGINE = MergeTree
	PARTITION BY toYYYYMMDD(at)
	ORDER BY (room, uid)`},
	// Version 7: ends of purges (an unban cuts its ban's purge short).
	// at_ms is when a row was recorded (0 on the rows written before); a
	// row with ends = 1 cuts the purges of its (room, uid) recorded up to
	// its at_ms to end at its until_ms.
	{`ALTER TABLE {db}.{table}_purges ADD COLUMN at_ms Int64 DEFAULT 0`,
		`ALTER TABLE {db}.{table}_purges ADD COLUMN ends UInt8 DEFAULT 0`},
}

// addColumnRe matches the migrations that add a column. ClickHouse 18.16
// has no ADD COLUMN IF NOT EXISTS, so migrate skips them when the column is
// there already (another process migrated at the same time, or a run
// stopped between the statement and recording the version).
var addColumnRe = regexp.MustCompile(`^ALTER TABLE (\w+)\.(\w+) ADD COLUMN (\w+) `)

// exec runs one migration statement; see addColumnRe.
func (s *Store) exec(ctx context.Context, q string) error {
	m := addColumnRe.FindStringSubmatch(q)
	if m == nil {
		return s.conn.Exec(ctx, q)
	}
	has := func() (bool, error) {
		var n uint64
		err := s.conn.QueryRow(ctx, "SELECT count() FROM system.columns WHERE database = ? AND table = ? AND name = ?", m[1], m[2], m[3]).Scan(&n)
		return n > 0, err
	}
	if ok, err := has(); err != nil || ok {
		return err
	}
	err := s.conn.Exec(ctx, q)
	if err != nil {
		if ok, _ := has(); ok {
			return nil // added by another process meanwhile
		}
	}
	return err
}

func (s *Store) ddl(q string) string {
	return strings.NewReplacer("{db}", s.cfg.Database, "{table}", s.cfg.Table).Replace(q)
}

// migrate creates the database and the schema_version table, then applies
// the migrations newer than the recorded version.
func (s *Store) migrate(ctx context.Context) error {
	for _, q := range []string{
		"CREATE DATABASE IF NOT EXISTS {db}",
		`CREATE TABLE IF NOT EXISTS {db}.schema_version (
			tbl String, version UInt32, applied DateTime
		) ENGINE = MergeTree ORDER BY (tbl, version)`,
	} {
		if err := s.conn.Exec(ctx, s.ddl(q)); err != nil {
			return fmt.Errorf("chstore: create schema: %w", err)
		}
	}
	var current uint32
	if err := s.conn.QueryRow(ctx, s.ddl("SELECT max(version) FROM {db}.schema_version WHERE tbl = ?"), s.cfg.Table).
		Scan(&current); err != nil {
		return fmt.Errorf("chstore: read schema version: %w", err)
	}
	for v := int(current); v < len(migrations); v++ {
		for _, q := range migrations[v] {
			if err := s.exec(ctx, s.ddl(q)); err != nil {
				return fmt.Errorf("chstore: migrate to version %d: %w", v+1, err)
			}
		}
		if err := s.recordVersion(ctx, uint32(v+1)); err != nil {
			return fmt.Errorf("chstore: record schema version %d: %w", v+1, err)
		}
		s.cfg.Logger.Info("chstore: schema migrated", "table", s.table, "version", v+1)
	}
	return nil
}

// recordVersion inserts a schema_version row. It goes through a batch:
// servers of the 18.x line do not take inline VALUES over the native
// protocol.
func (s *Store) recordVersion(ctx context.Context, v uint32) error {
	b, err := s.conn.PrepareBatch(ctx, s.ddl("INSERT INTO {db}.schema_version (tbl, version, applied)"))
	if err != nil {
		return err
	}
	defer b.Abort()
	if err := b.Append(s.cfg.Table, v, time.Now().UTC()); err != nil {
		return err
	}
	return b.Send()
}

// janitor drops expired partitions at start and every JanitorInterval
// until ctx is done.
func (s *Store) janitor(ctx context.Context) {
	defer s.wg.Done()
	t := time.NewTicker(s.cfg.JanitorInterval)
	defer t.Stop()
	for {
		dropped, err := s.DropExpired(ctx, time.Now())
		switch {
		case err != nil && ctx.Err() == nil:
			s.cfg.Logger.Warn("chstore: drop expired partitions", "table", s.table, "err", err)
		case len(dropped) > 0:
			s.cfg.Logger.Info("chstore: dropped expired partitions", "table", s.table, "partitions", dropped)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// DropExpired drops the daily partitions whose whole day is more than
// RetentionDays before now, and returns their ids (YYYYMMDD). The janitor
// calls it every JanitorInterval.
func (s *Store) DropExpired(ctx context.Context, now time.Time) ([]string, error) {
	if s.cfg.RetentionDays <= 0 {
		return nil, nil
	}
	var dropped []string
	for _, table := range []string{s.cfg.Table, s.cfg.Table + "_verdicts", s.cfg.Table + "_purges"} {
		d, err := s.dropExpired(ctx, now, table)
		for _, p := range d {
			if !slices.Contains(dropped, p) {
				dropped = append(dropped, p)
			}
		}
		if err != nil {
			return dropped, err
		}
	}
	return dropped, nil
}

// dropExpired drops table's expired daily partitions.
func (s *Store) dropExpired(ctx context.Context, now time.Time, table string) ([]string, error) {
	cutoff := now.UTC().AddDate(0, 0, -s.cfg.RetentionDays).Format("20060102")
	rows, err := s.conn.Query(ctx, "SELECT DISTINCT partition FROM system.parts WHERE database = ? AND table = ? AND active",
		s.cfg.Database, table)
	if err != nil {
		return nil, fmt.Errorf("chstore: list partitions: %w", err)
	}
	var old []string
	for rows.Next() {
		var p string
		if err := rows.Scan(&p); err != nil {
			rows.Close()
			return nil, fmt.Errorf("chstore: scan partition: %w", err)
		}
		// Partition ids are YYYYMMDD, so string order is date order.
		if _, err := strconv.ParseUint(p, 10, 32); err == nil && len(p) == 8 && p < cutoff {
			old = append(old, p)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("chstore: list partitions: %w", err)
	}
	var dropped []string
	for _, p := range old {
		if err := s.conn.Exec(ctx, "ALTER TABLE "+s.cfg.Database+"."+table+" DROP PARTITION "+p); err != nil {
			return dropped, fmt.Errorf("chstore: drop partition %s: %w", p, err)
		}
		dropped = append(dropped, p)
	}
	return dropped, nil
}
