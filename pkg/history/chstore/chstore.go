package chstore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"
	"github.com/ClickHouse/clickhouse-go/v2/lib/driver"

	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// Interface guards.
var (
	_ history.Store     = (*Store)(nil)
	_ history.Deleter   = (*Store)(nil)
	_ history.LastSeqer = (*Store)(nil)
)

// Errors.
var (
	ErrNoAddr     = errors.New("chstore: no address")
	ErrIdentifier = errors.New("chstore: database and table names must match [A-Za-z_][A-Za-z0-9_]*")
)

// Config configures a Store.
type Config struct {
	// Addr is the ClickHouse native-protocol address, host:port. Required.
	Addr string
	// Username and Password authenticate. Zero value means user "default"
	// without a password.
	Username, Password string
	// Database holds the tables; New creates it. Zero value means "danmaku".
	Database string
	// Table is the messages table; New creates it. Zero value means
	// "messages".
	Table string
	// RetentionDays is how many days of messages are kept: the janitor drops
	// daily partitions older than that. Zero value means 30; negative
	// disables the janitor.
	RetentionDays int
	// JanitorInterval is how often the janitor looks for expired
	// partitions. Zero value means 1 hour.
	JanitorInterval time.Duration
	// DialTimeout bounds connecting to the server. Zero value means 3 s.
	DialTimeout time.Duration
	// ReadTimeout bounds each wait for the server's reply. Zero value means
	// 10 s.
	ReadTimeout time.Duration
	// AnalyticsTimeout bounds each analytics query (Density, Minutes,
	// TopPhrases, Verdicts) whose context has no deadline of its own, in
	// place of ReadTimeout: they wait for the server's whole GROUP BY
	// before the first reply, seconds over a day-long stream (see
	// BENCHMARKS.md). Zero value means 25 s (under the HTTP server's 30 s
	// write timeout).
	AnalyticsTimeout time.Duration
	// PhraseSampleRows is how many of a range's messages TopPhrases
	// tokenises at most: over longer ranges it counts a 1-in-k sample
	// (by seq hash) and scales the counts up, marked Estimated. Zero value
	// means 1,000,000; negative means never sample.
	PhraseSampleRows int
	// MaxOpenConns caps the connection pool. Zero value means 8.
	MaxOpenConns int
	// Logger receives janitor and migration logs. Zero value means
	// slog.Default().
	Logger *slog.Logger
}

var identRe = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// withDefaults returns cfg with zero fields set to their defaults.
func (cfg Config) withDefaults() Config {
	if cfg.Username == "" {
		cfg.Username = "default"
	}
	if cfg.Database == "" {
		cfg.Database = "danmaku"
	}
	if cfg.Table == "" {
		cfg.Table = "messages"
	}
	if cfg.RetentionDays == 0 {
		cfg.RetentionDays = 30
	}
	if cfg.JanitorInterval <= 0 {
		cfg.JanitorInterval = time.Hour
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 3 * time.Second
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 10 * time.Second
	}
	if cfg.MaxOpenConns <= 0 {
		cfg.MaxOpenConns = 8
	}
	if cfg.AnalyticsTimeout <= 0 {
		cfg.AnalyticsTimeout = 25 * time.Second
	}
	if cfg.PhraseSampleRows == 0 {
		cfg.PhraseSampleRows = 1_000_000
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return cfg
}

// Validate reports whether cfg (with defaults applied) is usable.
func (cfg Config) Validate() error {
	cfg = cfg.withDefaults()
	if cfg.Addr == "" {
		return ErrNoAddr
	}
	if !identRe.MatchString(cfg.Database) || !identRe.MatchString(cfg.Table) {
		return fmt.Errorf("%w: %q.%q", ErrIdentifier, cfg.Database, cfg.Table)
	}
	return nil
}

// Store keeps history in a ClickHouse table. It is safe for concurrent use.
type Store struct {
	cfg   Config
	conn  driver.Conn
	table string // database.table, validated identifiers

	cancel    context.CancelFunc
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// New connects to ClickHouse, creates or migrates the schema and starts the
// retention janitor. Close stops it.
func New(ctx context.Context, cfg Config) (*Store, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	conn, err := clickhouse.Open(&clickhouse.Options{
		Addr: []string{cfg.Addr},
		// Connect to "default": cfg.Database may not exist yet. Every query
		// names database.table.
		Auth:            clickhouse.Auth{Database: "default", Username: cfg.Username, Password: cfg.Password},
		DialTimeout:     cfg.DialTimeout,
		ReadTimeout:     cfg.ReadTimeout,
		MaxOpenConns:    cfg.MaxOpenConns,
		MaxIdleConns:    cfg.MaxOpenConns,
		ConnMaxLifetime: time.Hour,
		Compression:     &clickhouse.Compression{Method: clickhouse.CompressionLZ4},
	})
	if err != nil {
		return nil, fmt.Errorf("chstore: open %s: %w", cfg.Addr, err)
	}
	s := &Store{cfg: cfg, conn: conn, table: cfg.Database + "." + cfg.Table}
	if err := s.migrate(ctx); err != nil {
		conn.Close()
		return nil, err
	}
	jctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	if cfg.RetentionDays > 0 {
		s.wg.Add(1)
		go s.janitor(jctx)
	}
	return s, nil
}

// Close stops the janitor and closes the connections.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		s.wg.Wait()
		s.closeErr = s.conn.Close()
	})
	return s.closeErr
}

// columns is the column list of every INSERT and SELECT of messages, in
// the order scanRow and appendRow use.
const columns = "room, seq, id, uid, name, text, kind, role, color, mode, size, ts_ms, ts, deleted, version"

// brokenConn reports whether err says the connection itself was gone
// (closed, reset, or ended by the server) rather than that ClickHouse
// refused the query.
func brokenConn(err error) bool {
	return errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE)
}

// insert writes rows and their rooms' highest seqs, once more on a fresh
// connection when the pooled one was gone before or while the batch went
// out (retryBroken).
func (s *Store) insert(ctx context.Context, rows []row) error {
	if len(rows) == 0 {
		return nil
	}
	return retryBroken(func() error {
		if err := s.insertRows(ctx, rows); err != nil {
			return err
		}
		return s.insertSeqs(ctx, rows)
	})
}

// retryBroken runs f, and once more if it failed on a connection that
// was gone (brokenConn: closed, reset, EOF), not on a ClickHouse error or
// a cancelled context. Safe for inserts: ClickHouse keeps nothing of an
// insert whose data did not all arrive, and a (room, seq) or a room's seq
// written twice collapses into one row.
func retryBroken(f func() error) error {
	err := f()
	if err != nil && brokenConn(err) {
		err = f()
	}
	return err
}

func (s *Store) insertRows(ctx context.Context, rows []row) error {
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table+" ("+columns+")")
	if err != nil {
		return fmt.Errorf("chstore: prepare insert: %w", err)
	}
	defer batch.Abort()
	for i := range rows {
		r := &rows[i]
		m := &r.msg
		del := uint8(0)
		if m.Deleted {
			del = 1
		}
		if err := batch.Append(m.Room, m.Seq, m.ID, m.UID, m.Name, m.Text, m.Kind, m.Role, m.Color,
			m.Mode, m.Size, m.TS, time.UnixMilli(m.TS).UTC(), del, r.version); err != nil {
			return fmt.Errorf("chstore: append row: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("chstore: insert %d rows: %w", len(rows), err)
	}
	return nil
}

// insertSeqs records each room's highest seq among rows in the seq table
// (schema version 2).
func (s *Store) insertSeqs(ctx context.Context, rows []row) error {
	top := make(map[string]uint64)
	for i := range rows {
		m := &rows[i].msg
		top[m.Room] = max(top[m.Room], m.Seq)
	}
	batch, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table+"_seq (room, seq)")
	if err != nil {
		return fmt.Errorf("chstore: prepare seq insert: %w", err)
	}
	defer batch.Abort()
	for room, seq := range top {
		if err := batch.Append(room, seq); err != nil {
			return fmt.Errorf("chstore: append seq row: %w", err)
		}
	}
	if err := batch.Send(); err != nil {
		return fmt.Errorf("chstore: insert %d seq rows: %w", len(top), err)
	}
	return nil
}

// row is a message with the version ReplacingMergeTree collapses by: the
// highest version of a (room, seq) wins.
type row struct {
	msg     protocol.Message
	version uint64
}

// Append stores msgs in one insert. A (room, seq) written again collapses
// into one row; an original never replaces a deletion (version 0 loses to
// any deletion's version). Then it marks deleted the messages that a
// remembered purge covers (see Purge).
func (s *Store) Append(ctx context.Context, msgs []protocol.Message) error {
	if len(msgs) == 0 {
		return nil
	}
	rows := make([]row, len(msgs))
	for i, m := range msgs {
		m.Deleted = false
		rows[i] = row{msg: m}
	}
	if err := s.insert(ctx, rows); err != nil {
		return err
	}
	return s.applyPurges(ctx, msgs)
}

// applyPurges marks deleted those of msgs, just inserted, that a purge in
// the purges table covers. It reads the purges after the insert and Purge
// records a purge before it reads the rows to mark, so of a purge and a
// write racing each other at least one sees the other: the purge the
// inserted rows, or the write the purge.
func (s *Store) applyPurges(ctx context.Context, msgs []protocol.Message) error {
	var rooms []string
	minTS, maxTS := msgs[0].TS, msgs[0].TS
	for i := range msgs {
		if !slices.Contains(rooms, msgs[i].Room) {
			rooms = append(rooms, msgs[i].Room)
		}
		minTS, maxTS = min(minTS, msgs[i].TS), max(maxTS, msgs[i].TS)
	}
	// The purges that may cover msgs, and every end (of a purge of these
	// rooms) that may cut one short before maxTS.
	rows, err := s.conn.Query(ctx, "SELECT room, uid, since_ms, until_ms, at_ms, ends FROM "+s.table+
		"_purges WHERE has(?, room) AND ((ends = 0 AND until_ms > ? AND since_ms <= ?) OR (ends = 1 AND until_ms <= ?))",
		rooms, minTS, maxTS, maxTS)
	if err != nil {
		return fmt.Errorf("chstore: read purges: %w", err)
	}
	type recorded struct {
		room string
		history.PurgeRange
		atMs int64
	}
	var found, ends []recorded
	for rows.Next() {
		var p recorded
		var end uint8
		if err := rows.Scan(&p.room, &p.UID, &p.SinceMs, &p.UntilMs, &p.atMs, &end); err != nil {
			rows.Close()
			return fmt.Errorf("chstore: scan purge: %w", err)
		}
		if end == 1 {
			ends = append(ends, p)
		} else {
			found = append(found, p)
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return fmt.Errorf("chstore: read purges: %w", err)
	}
	if len(found) == 0 {
		return nil
	}
	purges := make(map[string][]history.PurgeRange)
	for _, p := range found {
		for _, e := range ends {
			// An end cuts the purges recorded up to it, not a later ban's.
			if e.room == p.room && e.UID == p.UID && p.atMs <= e.atMs {
				p.PurgeRange = p.EndAt(e.UntilMs)
			}
		}
		purges[p.room] = append(purges[p.room], p.PurgeRange)
	}
	var hit []protocol.Message
	for i := range msgs {
		for _, p := range purges[msgs[i].Room] {
			if p.Covers(&msgs[i]) {
				hit = append(hit, msgs[i])
				break
			}
		}
	}
	if len(hit) == 0 {
		return nil
	}
	return s.markDeleted(ctx, hit)
}

// selectCols are the columns Range reads; room is known.
const selectCols = "seq, id, uid, name, text, kind, role, color, mode, size, ts_ms, deleted"

// argMaxCols are selectCols collapsed per seq to the highest version.
const argMaxCols = "seq, argMax(id, version), argMax(uid, version), argMax(name, version), argMax(text, version), " +
	"argMax(kind, version), argMax(role, version), argMax(color, version), argMax(mode, version), argMax(size, version), " +
	"argMax(ts_ms, version), " +
	"argMax(deleted, version) AS del"

// Range returns messages of room matching f, ascending by seq.
//
// Duplicates and deletions that have not been merged yet are collapsed at
// read time: with GROUP BY seq and argMax over a bounded window of seqs,
// with FINAL over open ranges (see the package documentation for the
// measurements behind the choice). With a Limit and no time bound on the side
// it reads from, it first reads a window of seqs next to the start (the
// newest for Tail, just after AfterSeq otherwise) and widens it only when
// the window holds too few messages, so reading 50 messages of a room of
// millions touches a few granules, not the whole room.
func (s *Store) Range(ctx context.Context, room string, f history.Filter) ([]protocol.Message, error) {
	windowed := f.Limit > 0 && f.ToMs <= 0 && (f.Tail || f.FromMs <= 0)
	if !windowed {
		return s.rangeSeqs(ctx, room, f, f.AfterSeq, 0, false)
	}
	last, err := s.lastStored(ctx, room)
	if err != nil {
		return nil, err
	}
	if last <= f.AfterSeq {
		return nil, nil
	}
	window := uint64(max(4*f.Limit, 256))
	for {
		lo, hi := f.AfterSeq, last // seq in (lo, hi]
		if f.Tail {
			if last-f.AfterSeq > window {
				lo = last - window
			}
		} else if last-f.AfterSeq > window {
			hi = f.AfterSeq + window
		}
		out, err := s.rangeSeqs(ctx, room, f, lo, hi, hi-lo <= maxGroupedWindow)
		if err != nil || len(out) >= f.Limit || (lo == f.AfterSeq && hi == last) {
			return out, err
		}
		window *= 16
	}
}

// maxGroupedWindow is the widest seq window read with GROUP BY and argMax;
// wider ones read with FINAL.
const maxGroupedWindow = 16384

// maxDateTime is the last second a DateTime holds (2106-02-07 06:28:15
// UTC); 18.16's toDateTime wraps a larger number modulo 2^32.
const maxDateTime = 1<<32 - 1

// secs is Unix ms as the seconds of a DateTime bound, rounded down and
// held to [0, maxDateTime]: a time past 2106 (a client's "no upper bound")
// bounds ts at the end of DateTime, not at the wrapped second, and the
// exact ts_ms bound next to it decides.
func secs(ms int64) int64 { return min(max(ms, 0)/1000, maxDateTime) }

// ceilSecs is secs rounded up.
func ceilSecs(ms int64) int64 {
	if ms <= 0 {
		return 0
	}
	return min(ms/1000+min(ms%1000, 1), maxDateTime)
}

// rangeSeqs runs Range's query for seq in (lo, hi]; hi 0 means no upper
// bound. grouped selects GROUP BY seq with argMax instead of FINAL.
func (s *Store) rangeSeqs(ctx context.Context, room string, f history.Filter, lo, hi uint64, grouped bool) ([]protocol.Message, error) {
	var where strings.Builder
	args := []any{room}
	where.WriteString("room = ?")
	if lo > 0 {
		where.WriteString(" AND seq > ?")
		args = append(args, lo)
	}
	if hi > 0 {
		where.WriteString(" AND seq <= ?")
		args = append(args, hi)
	}
	if f.FromMs > 0 {
		// ts (seconds) lets the server skip whole partitions and granules;
		// ts_ms is the exact bound.
		where.WriteString(" AND ts >= toDateTime(?) AND ts_ms >= ?")
		args = append(args, secs(f.FromMs), f.FromMs)
	}
	if f.ToMs > 0 {
		where.WriteString(" AND ts <= toDateTime(?) AND ts_ms < ?")
		args = append(args, secs(f.ToMs-1), f.ToMs)
	}
	order := "seq"
	if f.Tail && f.Limit > 0 {
		order = "seq DESC"
	}
	var q string
	if grouped {
		// A bounded window: GROUP BY seq with argMax is the faster form
		// for a few hundred rows. The time conditions may stay in WHERE
		// because every version of a row has the same ts.
		q = "SELECT " + argMaxCols + " FROM " + s.table + " WHERE " + where.String() + " GROUP BY seq"
		if !f.IncludeDeleted {
			q += " HAVING del = 0"
		}
	} else {
		// An open range: FINAL is the faster form over many rows. Its
		// WHERE filters the collapsed row, not the raw rows: the server
		// does not move conditions to PREWHERE under FINAL.
		if !f.IncludeDeleted {
			where.WriteString(" AND deleted = 0")
		}
		q = "SELECT " + selectCols + " FROM " + s.table + " FINAL WHERE " + where.String()
	}
	q += " ORDER BY " + order
	if f.Limit > 0 {
		q += " LIMIT " + strconv.Itoa(f.Limit)
	}
	out, err := s.query(ctx, room, q, args...)
	if err != nil {
		return nil, err
	}
	if f.Tail && f.Limit > 0 {
		slices.Reverse(out)
	}
	return out, nil
}

// query runs a SELECT of selectCols and scans the messages of room.
func (s *Store) query(ctx context.Context, room, q string, args ...any) ([]protocol.Message, error) {
	rows, err := s.conn.Query(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("chstore: query: %w", err)
	}
	defer rows.Close()
	var out []protocol.Message
	for rows.Next() {
		m := protocol.Message{Room: room}
		var del uint8
		if err := rows.Scan(&m.Seq, &m.ID, &m.UID, &m.Name, &m.Text, &m.Kind, &m.Role, &m.Color, &m.Mode, &m.Size, &m.TS, &del); err != nil {
			return nil, fmt.Errorf("chstore: scan: %w", err)
		}
		m.Deleted = del != 0
		out = append(out, m)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("chstore: read rows: %w", err)
	}
	return out, nil
}

// markDeleted re-inserts msgs with deleted set and a version above every
// earlier one, so they replace the originals.
func (s *Store) markDeleted(ctx context.Context, msgs []protocol.Message) error {
	version := uint64(time.Now().UnixNano())
	rows := make([]row, len(msgs))
	for i, m := range msgs {
		m.Deleted = true
		rows[i] = row{msg: m, version: version}
	}
	return s.insert(ctx, rows)
}

// Delete marks messages of room deleted and reports how many of seqs are
// stored (deleted before or not).
func (s *Store) Delete(ctx context.Context, room string, seqs []uint64) (int, error) {
	if len(seqs) == 0 {
		return 0, nil
	}
	list := make([]string, len(seqs))
	for i, seq := range seqs {
		list[i] = strconv.FormatUint(seq, 10)
	}
	found, err := s.query(ctx, room, "SELECT "+selectCols+" FROM "+s.table+" FINAL WHERE room = ? AND seq IN ("+
		strings.Join(list, ",")+")", room)
	if err != nil {
		return 0, err
	}
	live := slices.DeleteFunc(slices.Clone(found), func(m protocol.Message) bool { return m.Deleted })
	if err := s.markDeleted(ctx, live); err != nil {
		return 0, err
	}
	return len(found), nil
}

// Purge records the purge in the purges table (for Append to apply to
// the messages written later with sinceMs <= TS < untilMs), then marks
// every stored live message of uid in room with TS >= sinceMs deleted
// (stored now, it was accepted before the purge, whatever its TS) and
// returns their seqs, ascending.
func (s *Store) Purge(ctx context.Context, room, uid string, sinceMs, untilMs int64) ([]uint64, error) {
	if untilMs <= sinceMs {
		return nil, nil
	}
	if err := s.recordPurge(ctx, room, uid, sinceMs, untilMs, false); err != nil {
		return nil, err
	}
	found, err := s.query(ctx, room, "SELECT "+selectCols+" FROM "+s.table+
		" FINAL WHERE room = ? AND uid = ? AND ts >= toDateTime(?) AND ts_ms >= ? AND deleted = 0 ORDER BY seq",
		room, uid, secs(sinceMs), sinceMs)
	if err != nil {
		return nil, err
	}
	if err := s.markDeleted(ctx, found); err != nil {
		return nil, err
	}
	out := make([]uint64, len(found))
	for i, m := range found {
		out[i] = m.Seq
	}
	return out, nil
}

// EndPurges records an end of uid's purges in room: Append cuts the
// purges recorded up to now (by this host's clock, at_ms) to end at atMs.
// The rows stored already are left as they are.
func (s *Store) EndPurges(ctx context.Context, room, uid string, atMs int64) error {
	return s.recordPurge(ctx, room, uid, atMs, atMs, true)
}

// recordPurge inserts one row into the purges table: a purge, or with
// ends an end of the earlier purges at untilMs.
func (s *Store) recordPurge(ctx context.Context, room, uid string, sinceMs, untilMs int64, ends bool) error {
	b, err := s.conn.PrepareBatch(ctx, "INSERT INTO "+s.table+"_purges (room, uid, since_ms, until_ms, at, at_ms, ends)")
	if err != nil {
		return fmt.Errorf("chstore: prepare purge insert: %w", err)
	}
	defer b.Abort()
	now := time.Now()
	var end uint8
	if ends {
		end = 1
	}
	if err := b.Append(room, uid, sinceMs, untilMs, now.UTC(), now.UnixMilli(), end); err != nil {
		return fmt.Errorf("chstore: append purge row: %w", err)
	}
	if err := b.Send(); err != nil {
		return fmt.Errorf("chstore: insert purge: %w", err)
	}
	return nil
}

// LastSeq returns the highest seq room ever had stored (deleted or not,
// and also after the janitor dropped it by age), 0 if none.
func (s *Store) LastSeq(ctx context.Context, room string) (uint64, error) {
	stored, err := s.lastStored(ctx, room)
	if err != nil {
		return 0, err
	}
	var kept uint64
	if err := s.conn.QueryRow(ctx, "SELECT max(seq) FROM "+s.table+"_seq WHERE room = ?", room).Scan(&kept); err != nil {
		return 0, fmt.Errorf("chstore: last seq: %w", err)
	}
	return max(stored, kept), nil
}

// lastStored returns the highest seq of room's stored messages.
func (s *Store) lastStored(ctx context.Context, room string) (uint64, error) {
	var seq uint64
	if err := s.conn.QueryRow(ctx, "SELECT max(seq) FROM "+s.table+" WHERE room = ?", room).Scan(&seq); err != nil {
		return 0, fmt.Errorf("chstore: last seq: %w", err)
	}
	return seq, nil
}
