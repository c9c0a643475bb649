package chstore_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"testing"
	"time"
	"unicode"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/danmaku-live/danmaku/logic/historywriter"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/history"
	"github.com/danmaku-live/danmaku/pkg/history/chstore"
	"github.com/danmaku-live/danmaku/pkg/history/historytest"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/testenv"
)

// envAddr returns the test server's address, empty when none is set.
func envAddr() string { return os.Getenv(testenv.ClickHouse) }

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
		dropDB(t, testenv.Addr(t, testenv.ClickHouse), cfg.Database)
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

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		cfg  chstore.Config
		want error
	}{
		{"noAddr", chstore.Config{}, chstore.ErrNoAddr},
		{"badDatabase", chstore.Config{Addr: "x:1", Database: "a;DROP"}, chstore.ErrIdentifier},
		{"badTable", chstore.Config{Addr: "x:1", Table: "t.u"}, chstore.ErrIdentifier},
		{"defaults", chstore.Config{Addr: "x:1"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := c.cfg.Validate(); !errors.Is(err, c.want) {
				t.Fatalf("Validate = %v, want %v", err, c.want)
			}
		})
	}
}

func TestSchemaIsReused(t *testing.T) {
	addr := testenv.Addr(t, testenv.ClickHouse)
	db := testDB()
	a := newStore(t, chstore.Config{Addr: addr, Database: db})
	ctx := context.Background()
	if err := a.Append(ctx, []protocol.Message{{Room: "r", Seq: 1, UID: "u", TS: time.Now().UnixMilli()}}); err != nil {
		t.Fatal(err)
	}
	b, err := chstore.New(ctx, chstore.Config{Addr: addr, Database: db})
	if err != nil {
		t.Fatalf("second New on the same schema: %v", err)
	}
	defer b.Close()
	if n, err := b.LastSeq(ctx, "r"); err != nil || n != 1 {
		t.Fatalf("LastSeq through the second store = %d, %v; want 1", n, err)
	}
}

func TestDropExpired(t *testing.T) {
	s := newStore(t, chstore.Config{RetentionDays: 7, JanitorInterval: time.Hour})
	ctx := context.Background()
	now := time.Now()
	day := 24 * time.Hour
	ms := []protocol.Message{
		{Room: "r", Seq: 1, UID: "u", Text: "old", TS: now.Add(-20 * day).UnixMilli()},
		{Room: "r", Seq: 2, UID: "u", Text: "old", TS: now.Add(-9 * day).UnixMilli()},
		{Room: "r", Seq: 3, UID: "u", Text: "kept", TS: now.Add(-6 * day).UnixMilli()},
		{Room: "r", Seq: 4, UID: "u", Text: "kept", TS: now.UnixMilli()},
	}
	if err := s.Append(ctx, ms); err != nil {
		t.Fatal(err)
	}
	dropped, err := s.DropExpired(ctx, now)
	if err != nil {
		t.Fatalf("DropExpired: %v", err)
	}
	want := []string{now.Add(-20 * day).UTC().Format("20060102"), now.Add(-9 * day).UTC().Format("20060102")}
	// The store's janitor makes a pass of its own when it starts, and may
	// have dropped some of them already: only what is left is the test's.
	for _, p := range dropped {
		if !slices.Contains(want, p) {
			t.Errorf("dropped %s, which is not expired (want only %v)", p, want)
		}
	}
	if again, err := s.DropExpired(ctx, now); err != nil || len(again) != 0 {
		t.Errorf("a second pass dropped %v (%v): expired partitions were left", again, err)
	}
	got, err := s.Range(ctx, "r", history.Filter{IncludeDeleted: true})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, m := range got {
		seqs = append(seqs, m.Seq)
	}
	if !slices.Equal(seqs, []uint64{3, 4}) {
		t.Errorf("after DropExpired seqs = %v, want [3 4]", seqs)
	}
	if again, err := s.DropExpired(ctx, now); err != nil || len(again) != 0 {
		t.Errorf("second DropExpired = %v, %v; want nothing", again, err)
	}
}

func TestJanitorRuns(t *testing.T) {
	addr := testenv.Addr(t, testenv.ClickHouse)
	db := testDB()
	ctx := context.Background()
	// Write old rows with the janitor off, then open a store whose janitor
	// runs at start.
	s := newStore(t, chstore.Config{Addr: addr, Database: db, RetentionDays: -1})
	old := time.Now().Add(-40 * 24 * time.Hour).UnixMilli()
	if err := s.Append(ctx, []protocol.Message{
		{Room: "r", Seq: 1, UID: "u", TS: old},
		{Room: "r", Seq: 2, UID: "u", TS: time.Now().UnixMilli()},
	}); err != nil {
		t.Fatal(err)
	}
	j, err := chstore.New(ctx, chstore.Config{Addr: addr, Database: db, JanitorInterval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got, err := s.Range(ctx, "r", history.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 1 && got[0].Seq == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("janitor (30-day retention) left %d rows, want only seq 2", len(got))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestNewFailsFastWhenDown(t *testing.T) {
	testenv.Addr(t, testenv.ClickHouse) // a backend test: skip with the others
	port := testenv.FreePort(t)
	start := time.Now()
	_, err := chstore.New(context.Background(), chstore.Config{Addr: fmt.Sprintf("127.0.0.1:%d", port), DialTimeout: time.Second})
	if err == nil {
		t.Fatal("New on a closed port succeeded")
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("New on a closed port took %v", d)
	}
}

// proxy forwards TCP connections to upstream until stopped; it can be
// restarted on the same address.
type proxy struct {
	upstream string
	addr     string
	mu       sync.Mutex
	ln       net.Listener
	conns    map[net.Conn]struct{}
}

func (p *proxy) start(t *testing.T) {
	t.Helper()
	addr := p.addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	var ln net.Listener
	var err error
	for try := 0; try < 50; try++ { // the old socket may linger a moment
		if ln, err = net.Listen("tcp", addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("proxy listen: %v", err)
	}
	p.mu.Lock()
	p.ln, p.addr = ln, ln.Addr().String()
	if p.conns == nil {
		p.conns = make(map[net.Conn]struct{})
	}
	p.mu.Unlock()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			u, err := net.Dial("tcp", p.upstream)
			if err != nil {
				c.Close()
				continue
			}
			p.mu.Lock()
			if p.ln != ln { // stopped while this connection was being set up
				p.mu.Unlock()
				c.Close()
				u.Close()
				return
			}
			p.conns[c], p.conns[u] = struct{}{}, struct{}{}
			p.mu.Unlock()
			go func() { io.Copy(u, c); u.Close() }()
			go func() { io.Copy(c, u); c.Close() }()
		}
	}()
}

func (p *proxy) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.ln == nil {
		return
	}
	p.ln.Close()
	p.ln = nil
	for c := range p.conns {
		c.Close()
	}
	clear(p.conns)
}

func TestOutage(t *testing.T) {
	addr := testenv.Addr(t, testenv.ClickHouse)
	p := &proxy{upstream: addr}
	p.start(t)
	defer p.stop()
	db := testDB()
	direct := newStore(t, chstore.Config{Addr: addr, Database: db})
	s := newStore(t, chstore.Config{Addr: p.addr, Database: db, DialTimeout: time.Second, ReadTimeout: 2 * time.Second})
	ctx := context.Background()
	msg := func(seq uint64) protocol.Message {
		return protocol.Message{Room: "out", Seq: seq, UID: "u", Text: "t", TS: time.Now().UnixMilli()}
	}
	if err := s.Append(ctx, []protocol.Message{msg(1)}); err != nil {
		t.Fatalf("Append before the outage: %v", err)
	}

	p.stop()
	start := time.Now()
	if err := s.Append(ctx, []protocol.Message{msg(2)}); err == nil {
		t.Fatal("Append during the outage succeeded")
	}
	if _, err := s.Range(ctx, "out", history.Filter{}); err == nil {
		t.Fatal("Range during the outage succeeded")
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("failing Append and Range took %v, want bounded by the timeouts", d)
	}

	// The writer holds its batch while the server is unreachable and
	// stores it once it is back.
	b := bus.NewMemory(bus.MemoryConfig{Partitions: 2})
	w, err := historywriter.New(historywriter.Config{Bus: b, Store: s, BatchSize: 50, FlushInterval: 10 * time.Millisecond,
		MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	wctx, cancel := context.WithCancel(ctx)
	errc := make(chan error, 1)
	go func() { errc <- w.Run(wctx) }()
	defer func() {
		cancel()
		if err := <-errc; err != nil {
			t.Errorf("Run = %v", err)
		}
	}()
	var recs []bus.Record
	for seq := uint64(2); seq <= 200; seq++ {
		v, _ := bus.Marshal(msg(seq))
		recs = append(recs, bus.Record{Key: "out", Value: v})
	}
	if err := b.Publisher(bus.StreamAccepted).Publish(ctx, recs...); err != nil {
		t.Fatal(err)
	}
	for w.Stats().Retries < 2 {
		time.Sleep(10 * time.Millisecond)
	}
	p.start(t)
	deadline := time.Now().Add(15 * time.Second)
	for {
		got, err := direct.Range(ctx, "out", history.Filter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the outage %d of 200 messages stored (writer stats %+v)", len(got), w.Stats())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestMatchesMemory compares Range with the memory store on a room large
// enough, and with enough deletions, that the windowed reads must widen,
// up to windows read with FINAL.
func TestMatchesMemory(t *testing.T) {
	s := newStore(t, chstore.Config{})
	const n = 20000
	mem := history.NewMemory(history.MemoryConfig{PerRoom: n})
	ctx := context.Background()
	base := time.Now().Add(-time.Hour).UnixMilli()
	var ms []protocol.Message
	for seq := uint64(1); seq <= n; seq++ {
		ms = append(ms, protocol.Message{Room: "big", Seq: seq, UID: fmt.Sprintf("u%d", seq%7), Text: "t", TS: base + int64(seq)*10})
	}
	var del []uint64
	for seq := uint64(1); seq <= n; seq++ {
		if seq <= 300 || seq > n-600 || seq%3 == 0 {
			del = append(del, seq)
		}
	}
	for _, st := range []history.Store{s, mem} {
		if err := st.Append(ctx, ms); err != nil {
			t.Fatal(err)
		}
		if _, err := st.(history.Deleter).Delete(ctx, "big", del); err != nil {
			t.Fatal(err)
		}
	}
	filters := []history.Filter{
		{Tail: true, Limit: 50},
		{Tail: true, Limit: 1},
		{Tail: true, Limit: 50, AfterSeq: n - 610},
		{Tail: true, Limit: 5000},
		{Tail: true, Limit: 50, FromMs: base + (n-610)*10},
		{Tail: true, Limit: 50, IncludeDeleted: true},
		{Limit: 50},
		{Limit: 50, AfterSeq: 100},
		{Limit: 50, AfterSeq: n - 650},
		{Limit: 5000, AfterSeq: 10},
		{Limit: 10, FromMs: base + 5000},
		{Limit: 10, FromMs: base + 5000, ToMs: base + 5100},
		{Limit: 10, AfterSeq: n - 5},
		{Limit: 10, AfterSeq: n},
		{AfterSeq: n - 1000},
		{Tail: true, Limit: 17000}, // wider than maxGroupedWindow: FINAL with seq bounds
		{Limit: 17000, AfterSeq: 100},
	}
	for i, f := range filters {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			want, _ := mem.Range(ctx, "big", f)
			got, err := s.Range(ctx, "big", f)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, want, func(a, b protocol.Message) bool { return a == b }) {
				t.Errorf("Range(%+v) = %d msgs %v, want %d msgs %v", f, len(got), seqList(got), len(want), seqList(want))
			}
		})
	}
}

func seqList(ms []protocol.Message) string {
	if len(ms) > 6 {
		return fmt.Sprintf("[%d %d %d ... %d %d %d]", ms[0].Seq, ms[1].Seq, ms[2].Seq, ms[len(ms)-3].Seq, ms[len(ms)-2].Seq, ms[len(ms)-1].Seq)
	}
	var out []uint64
	for _, m := range ms {
		out = append(out, m.Seq)
	}
	return fmt.Sprint(out)
}

// TestLastSeqSurvivesRetention: a room whose messages the janitor dropped
// by age keeps its last seq, so logic continues it instead of starting the
// room again at 1 (which every gateway and client that saw the higher
// seqs would drop as seen).
func TestLastSeqSurvivesRetention(t *testing.T) {
	s := newStore(t, chstore.Config{RetentionDays: 7, JanitorInterval: time.Hour})
	ctx := context.Background()
	old := time.Now().Add(-30 * 24 * time.Hour).UnixMilli()
	if err := s.Append(ctx, []protocol.Message{
		{Room: "quiet", Seq: 41, UID: "u", Text: "a", TS: old},
		{Room: "quiet", Seq: 42, UID: "u", Text: "b", TS: old},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DropExpired(ctx, time.Now()); err != nil {
		t.Fatalf("DropExpired: %v", err)
	}
	if msgs, err := s.Range(ctx, "quiet", history.Filter{}); err != nil || len(msgs) != 0 {
		t.Fatalf("Range after the drop = %d messages, %v; want none (the partition is gone)", len(msgs), err)
	}
	if seq, err := s.LastSeq(ctx, "quiet"); err != nil || seq != 42 {
		t.Fatalf("LastSeq = %d, %v; want 42", seq, err)
	}
}

// TestTopPhrasesSample: over more than PhraseSampleRows rows TopPhrases
// counts a sample by seq hash and scales up, marked Estimated; under it the
// counts are exact.
func TestTopPhrasesSample(t *testing.T) {
	s := newStore(t, chstore.Config{PhraseSampleRows: 100, RetentionDays: -1})
	ctx := context.Background()
	base := time.Now().Add(-time.Hour).UnixMilli() / 60000 * 60000
	var ms []protocol.Message
	for i := range 400 {
		text := "gg 好的"
		if i%4 == 0 {
			text = "nice"
		}
		ms = append(ms, protocol.Message{Room: "sample", Seq: uint64(i + 1), UID: "u", Text: text, TS: base + int64(i)*100})
	}
	if err := s.Append(ctx, ms); err != nil {
		t.Fatal(err)
	}
	got, err := s.TopPhrases(ctx, "sample", base, base+40000, nil, 5)
	if err != nil || len(got) != 3 {
		t.Fatalf("TopPhrases over 400 rows = %+v, %v", got, err)
	}
	want := map[string]int64{"gg": 300, "好的": 300, "nice": 100}
	for _, p := range got {
		if !p.Estimated || p.Count%4 != 0 || p.Count < want[p.Phrase]*7/10 || p.Count > want[p.Phrase]*13/10 {
			t.Errorf("sampled %+v, want an estimate (multiple of k=4) within 30%% of %d", p, want[p.Phrase])
		}
	}
	got, err = s.TopPhrases(ctx, "sample", base, base+8000, nil, 5) // 80 rows: under the limit
	if want := []history.PhraseCount{{Phrase: "gg", Count: 60}, {Phrase: "好的", Count: 60}, {Phrase: "nice", Count: 20}}; err != nil || !slices.Equal(got, want) {
		t.Errorf("TopPhrases over 80 rows = %+v, %v; want exact %+v", got, err, want)
	}
}

// TestTopPhrasesLowerMatchesServer: history.Lower, the memory store's case
// folding, is the server's lowerUTF8 on every code point (all of them, in
// strings under the server's query size), so both stores count the same
// phrases.
func TestTopPhrasesLowerMatchesServer(t *testing.T) {
	addr := testenv.Addr(t, testenv.ClickHouse)
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx := context.Background()
	var chunk []rune
	diffs := 0
	check := func() {
		in := string(chunk)
		var got string
		if err := conn.QueryRow(ctx, "SELECT lowerUTF8(?)", in).Scan(&got); err != nil {
			t.Fatal(err)
		}
		want := []rune(history.Lower(in))
		for i, r := range []rune(got) {
			if i < len(want) && r != want[i] && diffs < 20 {
				diffs++
				t.Errorf("U+%04X: lowerUTF8 gives U+%04X, history.Lower U+%04X", chunk[i], r, want[i])
			}
		}
		if len([]rune(got)) != len(want) {
			t.Errorf("lowerUTF8 gave %d characters for %d", len([]rune(got)), len(want))
		}
		chunk = chunk[:0]
	}
	for r := rune(1); r <= unicode.MaxRune; r++ {
		if r >= 0xD800 && r <= 0xDFFF {
			continue
		}
		if chunk = append(chunk, r); len(chunk) == 16000 {
			check()
		}
	}
	check()
	// The cases the review found: Go's own lower case differs on these.
	for _, r := range "İẞKⒶǅᎠ" {
		if !history.KeptCase(r) || history.Lower(string(r)) != string(r) {
			t.Errorf("history.Lower(%q) = %q, want it left as lowerUTF8 leaves it", r, history.Lower(string(r)))
		}
	}
}

// TestAnalyticsTimeout: analytics queries wait for the server under
// AnalyticsTimeout, not ReadTimeout (a long range's GROUP BY sends nothing
// until it is done), unless the caller's context has a deadline.
func TestAnalyticsTimeout(t *testing.T) {
	dl, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	s := newStore(t, chstore.Config{ReadTimeout: time.Microsecond, RetentionDays: -1})
	base := time.Now().Add(-time.Hour).UnixMilli() / 60000 * 60000
	if err := s.Append(dl, []protocol.Message{{Room: "slow", Seq: 1, UID: "u", Text: "gg", TS: base + 1}}); err != nil {
		t.Fatalf("Append with a deadline: %v", err)
	}
	// Without a deadline a plain read gets ReadTimeout (1 µs) and fails ...
	if _, err := s.Range(context.Background(), "slow", history.Filter{}); err == nil {
		t.Fatal("Range under a 1 µs ReadTimeout succeeded: the test proves nothing")
	}
	// ... while analytics get AnalyticsTimeout.
	m, err := s.Minutes(context.Background(), "slow", base, base+60000)
	if err != nil || len(m) != 1 || m[0].Messages != 1 {
		t.Fatalf("Minutes = %+v, %v; want one minute with 1 message", m, err)
	}
	if d, err := s.Density(context.Background(), "slow", base, base+60000, 60000); err != nil || d[0] != 1 {
		t.Fatalf("Density = %v, %v", d, err)
	}
}

// TestPurgeAcrossInstances: the ban's purge goes through one process's
// store (moderation), the late message through another's (a history
// writer, or a writer started again after a crash): it is stored deleted.
func TestPurgeAcrossInstances(t *testing.T) {
	db := testDB()
	mod := newStore(t, chstore.Config{Database: db})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	writer, err := chstore.New(ctx, chstore.Config{Addr: testenv.Addr(t, testenv.ClickHouse), Database: db})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	defer writer.Close()
	now := time.Now().UnixMilli()
	if _, err := mod.Purge(ctx, "r", "bad", now-60000, now+1000); err != nil {
		t.Fatalf("Purge: %v", err)
	}
	late := []protocol.Message{{Room: "r", Seq: 1, UID: "bad", Text: "accepted before the ban", TS: now - 10},
		{Room: "r", Seq: 2, UID: "ok", Text: "someone else", TS: now - 5},
		{Room: "r", Seq: 3, UID: "bad", Text: "after the timeout", TS: now + 1000}}
	if err := writer.Append(ctx, late); err != nil {
		t.Fatalf("Append: %v", err)
	}
	for _, s := range []*chstore.Store{mod, writer} {
		got, err := s.Range(ctx, "r", history.Filter{})
		if err != nil {
			t.Fatalf("Range: %v", err)
		}
		var seqs []uint64
		for _, m := range got {
			seqs = append(seqs, m.Seq)
		}
		if !slices.Equal(seqs, []uint64{2, 3}) {
			t.Errorf("Range seqs = %v, want [2 3] (seq 1 purged on its way)", seqs)
		}
	}
}
