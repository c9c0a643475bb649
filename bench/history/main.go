// Command history measures the history figures of BENCHMARKS.md against a
// ClickHouse server:
//
//   - history on join: the time from a viewer's join frame to its history
//     frame (50 messages), when the gateway's ring of the room is warm
//     (served from memory) and when it is cold (loaded from ClickHouse);
//   - the insert rate of the history writer: messages on the accepted
//     stream appended to ClickHouse, in rows per second.
//
// It runs the gateway process (for the joins) and the logic process (for
// the writer), each the App that `danmaku gateway` and `danmaku logic` run,
// in this process on the in-memory bus, so the figures are the gateway's,
// the writer's and the store's, without Kafka. Usage:
//
//	go run ./bench/history -clickhouse 127.0.0.1:9000 [-joins 2000] [-rooms 300] [-rows 200000]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/ClickHouse/clickhouse-go/v2"

	"github.com/danmaku-live/danmaku/app"
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/client"
	"github.com/danmaku-live/danmaku/pkg/history/chstore"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "history bench:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("clickhouse", os.Getenv("DANMAKU_TEST_CLICKHOUSE"), "ClickHouse native address (env DANMAKU_TEST_CLICKHOUSE)")
	db := flag.String("db", "danmaku_bench_history", "database (dropped and created again)")
	joins := flag.Int("joins", 2000, "joins of the warm room")
	rooms := flag.Int("rooms", 300, "cold rooms, one join each")
	rows := flag.Int("rows", 200_000, "messages the writer inserts")
	batch := flag.Int("batch", 1000, "writer batch size (rows per INSERT)")
	flag.Parse()
	if *addr == "" {
		return errors.New("-clickhouse (or DANMAKU_TEST_CLICKHOUSE) is required")
	}
	ctx := context.Background()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := dropMessages(ctx, *addr, *db); err != nil {
		return err
	}
	st, err := chstore.New(ctx, chstore.Config{Addr: *addr, Database: *db, RetentionDays: -1, Logger: quiet})
	if err != nil {
		return err
	}
	defer st.Close()
	fmt.Printf("history bench: ClickHouse %s, database %s\n", *addr, *db)

	if err := benchJoins(ctx, st, *joins, *rooms, quiet); err != nil {
		return err
	}
	return benchInsert(ctx, st, *rows, *batch, quiet)
}

// msgs returns n messages of room with seqs from..from+n-1.
func msgs(room string, from uint64, n int) []protocol.Message {
	now := time.Now().UnixMilli()
	out := make([]protocol.Message, n)
	for i := range out {
		seq := from + uint64(i)
		out[i] = protocol.Message{Room: room, Seq: seq, ID: "id-" + strconv.FormatUint(seq, 10), UID: "u" + strconv.Itoa(i%97),
			Name: "viewer", Text: "message number " + strconv.FormatUint(seq, 10) + " 前方高能", TS: now - int64(n-i)}
	}
	return out
}

// benchJoins times joins of a room whose ring is warm and of rooms only
// ClickHouse holds, through a gateway in this process, and prints both.
func benchJoins(ctx context.Context, st *chstore.Store, joins, rooms int, log *slog.Logger) error {
	const perRoom = 200
	if err := seedRooms(ctx, st, rooms, perRoom); err != nil {
		return err
	}
	b := bus.NewMemory(bus.MemoryConfig{})
	defer b.Close()
	cfg := appConfig(app.RoleGateway, b, st, log)
	cfg.Gateway.Addr, cfg.Gateway.Loops, cfg.Gateway.DrainTimeout = "127.0.0.1:0", 1, time.Second
	gw, stop, err := startApp(cfg)
	if err != nil {
		return err
	}
	defer func() { _ = stop() }()
	url := "ws://" + gw.WSAddr() + "/ws"
	resident, err := warmRing(ctx, b, url, perRoom)
	if err != nil {
		return err
	}
	defer resident.Close()

	joiner, err := client.Dial(ctx, client.Config{URL: url})
	if err != nil {
		return err
	}
	defer joiner.Close()
	warm, err := timeJoins(ctx, joiner, joins, func(int) string { return "warm" })
	if err != nil {
		return err
	}
	cold, err := timeJoins(ctx, joiner, rooms, func(r int) string { return "cold-" + strconv.Itoa(r) })
	if err != nil {
		return err
	}
	report("history on join, ring warm (gateway memory)", warm)
	report("history on join, ring cold (ClickHouse)", cold)
	return nil
}

// seedRooms appends perRoom messages to each cold room and to the warm
// one: cold rooms exist only in ClickHouse; the warm room also in the ring.
func seedRooms(ctx context.Context, st *chstore.Store, rooms, perRoom int) error {
	for r := range rooms {
		if err := st.Append(ctx, msgs("cold-"+strconv.Itoa(r), 1, perRoom)); err != nil {
			return err
		}
	}
	return st.Append(ctx, msgs("warm", 1, perRoom))
}

// appConfig is the Config of a process of role on b, with st as its
// history store.
func appConfig(role app.Role, b bus.Bus, st *chstore.Store, log *slog.Logger) app.Config {
	return app.Config{Role: role, HTTPAddr: "127.0.0.1:0", JWTSecret: "bench-history", Logger: log,
		Backends: app.Backends{Given: b, GivenHistory: st}}
}

// startApp builds the App of cfg and starts it (App.Start).
func startApp(cfg app.Config) (*app.App, func() error, error) {
	a, err := app.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	stop, err := a.Start()
	return a, stop, err
}

// warmRing fills the gateway's ring of the warm room: a resident viewer,
// then the room's messages through the dispatch stream, as dispatch would
// send them. It returns the resident viewer; the caller closes it.
func warmRing(ctx context.Context, b *bus.Memory, url string, perRoom int) (*client.Client, error) {
	resident, err := client.Dial(ctx, client.Config{URL: url})
	if err != nil {
		return nil, err
	}
	if err := resident.Join(ctx, "warm", 0); err != nil {
		resident.Close()
		return nil, err
	}
	pub := b.Publisher(bus.StreamDispatch)
	if err := pub.Publish(ctx, bus.Record{Key: "warm", Value: protocol.EncodeBatch("warm", msgs("warm", 1, perRoom))}); err != nil {
		resident.Close()
		return nil, err
	}
	for resident.LastSeq("warm") < uint64(perRoom) {
		time.Sleep(5 * time.Millisecond)
	}
	return resident, nil
}

// timeJoins times n joins by joiner, the i-th of room(i) (Join returns
// with its history), leaving the room after each.
func timeJoins(ctx context.Context, joiner *client.Client, n int, room func(int) string) ([]time.Duration, error) {
	out := make([]time.Duration, 0, n)
	for i := range n {
		start := time.Now()
		if err := joiner.Join(ctx, room(i), 0); err != nil {
			return nil, err
		}
		out = append(out, time.Since(start))
		if err := joiner.Leave(room(i)); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func report(what string, ds []time.Duration) {
	slices.Sort(ds)
	q := func(p float64) time.Duration { return ds[min(len(ds)-1, int(p*float64(len(ds))))] }
	fmt.Printf("%-45s n=%-5d p50 %-9v p99 %-9v max %v\n", what, len(ds), q(0.50).Round(time.Microsecond),
		q(0.99).Round(time.Microsecond), ds[len(ds)-1].Round(time.Microsecond))
}

// benchInsert times the history writer of a logic process appending rows
// messages from the accepted stream to ClickHouse, batch rows per INSERT.
func benchInsert(ctx context.Context, st *chstore.Store, rows, batch int, log *slog.Logger) error {
	b := bus.NewMemory(bus.MemoryConfig{Retain: rows})
	defer b.Close()
	cfg := appConfig(app.RoleLogic, b, st, log)
	cfg.HistoryWriter.BatchSize = batch
	lg, stop, err := startApp(cfg)
	if err != nil {
		return err
	}
	stopped := false
	defer func() {
		if !stopped {
			_ = stop()
		}
	}()
	// Encode first, so the timing covers the writer and the store only.
	const rooms = 100
	recs := make([]bus.Record, 0, rows)
	for i := range rows {
		room := "ins-" + strconv.Itoa(i%rooms)
		m := msgs(room, uint64(i/rooms+1), 1)[0]
		v, err := bus.Marshal(m)
		if err != nil {
			return err
		}
		recs = append(recs, bus.Record{Key: room, Value: v})
	}
	time.Sleep(200 * time.Millisecond) // let the writer's group join
	pub := b.Publisher(bus.StreamAccepted)
	start := time.Now()
	for i := 0; i < len(recs); i += 1000 {
		if err := pub.Publish(ctx, recs[i:min(i+1000, len(recs))]...); err != nil {
			return err
		}
	}
	// The writer commits what it appended: poll the bus, which is cheap,
	// rather than gather the metrics registry.
	for {
		stored, err := committed(ctx, b, bus.StreamAccepted, "history")
		if err != nil {
			return err
		}
		if stored >= int64(rows) {
			break
		}
		time.Sleep(2 * time.Millisecond)
	}
	took := time.Since(start)
	retries, err := metric(lg, "danmaku_history_writer_append_retries_total")
	if err != nil {
		return err
	}
	stopped = true
	if err := stop(); err != nil {
		return err
	}
	fmt.Printf("%-45s %d rows in %v: %.0f rows/s (batch %d, %.0f retries)\n", "history writer insert rate", rows,
		took.Round(time.Millisecond), float64(rows)/took.Seconds(), batch, retries)
	return nil
}

// committed is how many records of stream group has committed, over
// every partition.
func committed(ctx context.Context, b *bus.Memory, stream, group string) (int64, error) {
	parts, err := b.Partitions(ctx, stream)
	if err != nil {
		return 0, err
	}
	var n int64
	for p := range parts {
		o, err := b.Offsets(ctx, stream, p, group)
		if err != nil {
			return 0, err
		}
		if o.Committed > o.Oldest {
			n += o.Committed - o.Oldest
		}
	}
	return n, nil
}

// metric reads the value of the counter or gauge name, without labels,
// from a's metrics registry (what /metrics serves).
func metric(a *app.App, name string) (float64, error) {
	mfs, err := a.Registry().Gather()
	if err != nil {
		return 0, err
	}
	for _, mf := range mfs {
		if mf.GetName() != name || len(mf.GetMetric()) == 0 {
			continue
		}
		m := mf.GetMetric()[0]
		if c := m.GetCounter(); c != nil {
			return c.GetValue(), nil
		}
		return m.GetGauge().GetValue(), nil
	}
	return 0, fmt.Errorf("no metric %s", name)
}

// dropMessages drops the benchmark's database, so every run starts from
// an empty table.
func dropMessages(ctx context.Context, addr, db string) error {
	conn, err := clickhouse.Open(&clickhouse.Options{Addr: []string{addr}})
	if err != nil {
		return err
	}
	defer conn.Close()
	return conn.Exec(ctx, "DROP DATABASE IF EXISTS "+db)
}
