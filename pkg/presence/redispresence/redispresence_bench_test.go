package redispresence_test

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/presence/redispresence"
)

// benchClient connects under a fresh prefix (so Prefix() is known) and
// cleans up after b.
func benchClient(b *testing.B) (*redispresence.Client, string) {
	b.Helper()
	c := newClient(b)
	return c, c.Prefix()
}

// fill reports gws gateways with rooms rooms each, every room watched on
// every gateway.
func fill(b *testing.B, c *redispresence.Client, gws, rooms int) {
	b.Helper()
	counts := make(map[string]int, rooms)
	for r := range rooms {
		counts["room-"+strconv.Itoa(r)] = 1 + r%97
	}
	for g := range gws {
		if err := c.Report(context.Background(), "gw-"+strconv.Itoa(g), counts, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
}

var sizes = []struct{ gws, rooms int }{{1, 10}, {50, 100}, {50, 1000}}

// BenchmarkReport is one gateway's heartbeat: Report of all its rooms.
func BenchmarkReport(b *testing.B) {
	for _, rooms := range []int{10, 1000} {
		b.Run(fmt.Sprintf("rooms=%d", rooms), func(b *testing.B) {
			c, _ := benchClient(b)
			counts := make(map[string]int, rooms)
			for r := range rooms {
				counts["room-"+strconv.Itoa(r)] = r + 1
			}
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if err := c.Report(ctx, "gw-0", counts, time.Minute); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkReportOnline is a Report then an Online: two round trips.
func BenchmarkReportOnline(b *testing.B) {
	c, _ := benchClient(b)
	ctx := context.Background()
	counts := map[string]int{"r1": 3, "r2": 5}
	b.ReportAllocs()
	for b.Loop() {
		if err := c.Report(ctx, "gw-0", counts, time.Minute); err != nil {
			b.Fatal(err)
		}
		if n, err := c.Online(ctx, "r1"); err != nil || n != 3 {
			b.Fatalf("Online = %d, %v", n, err)
		}
	}
}

// BenchmarkOnline is Online of one room over G live gateways.
func BenchmarkOnline(b *testing.B) {
	for _, sz := range sizes {
		b.Run(fmt.Sprintf("gws=%d/rooms=%d", sz.gws, sz.rooms), func(b *testing.B) {
			c, _ := benchClient(b)
			fill(b, c, sz.gws, sz.rooms)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if _, err := c.Online(ctx, "room-3"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkTop is Top(10) aggregated inside Redis by the script.
func BenchmarkTop(b *testing.B) {
	for _, sz := range sizes {
		b.Run(fmt.Sprintf("gws=%d/rooms=%d", sz.gws, sz.rooms), func(b *testing.B) {
			c, _ := benchClient(b)
			fill(b, c, sz.gws, sz.rooms)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if top, err := c.Top(ctx, 10); err != nil || len(top) != 10 {
					b.Fatalf("Top = %d rooms, %v", len(top), err)
				}
			}
		})
	}
}

// BenchmarkTopClientSide is the alternative the package documentation
// weighs: fetch every live gateway's hash in one pipeline and sum in Go,
// which spends client CPU and bandwidth instead of Redis time.
func BenchmarkTopClientSide(b *testing.B) {
	for _, sz := range sizes {
		b.Run(fmt.Sprintf("gws=%d/rooms=%d", sz.gws, sz.rooms), func(b *testing.B) {
			c, prefix := benchClient(b)
			fill(b, c, sz.gws, sz.rooms)
			rdb := c.Redis()
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				now := strconv.FormatInt(time.Now().UnixMilli(), 10)
				gws, err := rdb.ZRangeArgs(ctx, redis.ZRangeArgs{Key: prefix + "gws", Start: now, Stop: "+inf", ByScore: true}).Result()
				if err != nil {
					b.Fatal(err)
				}
				cmds := make([]*redis.MapStringStringCmd, len(gws))
				if _, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
					for i, g := range gws {
						cmds[i] = p.HGetAll(ctx, prefix+"gw:"+g)
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				sum := make(map[string]int)
				for _, cmd := range cmds {
					for r, v := range cmd.Val() {
						n, _ := strconv.Atoi(v)
						sum[r] += n
					}
				}
				out := make([]presence.RoomCount, 0, len(sum))
				for r, n := range sum {
					out = append(out, presence.RoomCount{Room: r, Online: n})
				}
				slices.SortFunc(out, func(x, y presence.RoomCount) int { return y.Online - x.Online })
				if len(out) < 10 {
					b.Fatalf("%d rooms", len(out))
				}
			}
		})
	}
}

// BenchmarkSendPath is the per-message Redis work of the send path: a
// ban check and a dedupe.
func BenchmarkSendPath(b *testing.B) {
	c, _ := benchClient(b)
	ctx := context.Background()
	if err := c.Ban(ctx, "", "someone-else", time.Time{}, "", ""); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		if _, ok, err := c.Banned(ctx, "r1", "u1"); err != nil || ok {
			b.Fatalf("Banned = %v, %v", ok, err)
		}
		if _, dup, err := c.Remember(ctx, "u1:"+strconv.Itoa(i), []byte("ack"), time.Minute); err != nil || dup {
			b.Fatalf("Remember = %v, %v", dup, err)
		}
	}
}

// BenchmarkOnlineMany is a gateway's heartbeat read: the counts of all R
// rooms it serves over G live gateways, against R Online calls.
func BenchmarkOnlineMany(b *testing.B) {
	for _, sz := range []struct{ gws, rooms int }{{10, 100}, {50, 1000}} {
		rooms := make([]string, sz.rooms)
		for r := range rooms {
			rooms[r] = "room-" + strconv.Itoa(r)
		}
		b.Run(fmt.Sprintf("gws=%d/rooms=%d/many", sz.gws, sz.rooms), func(b *testing.B) {
			c, _ := benchClient(b)
			fill(b, c, sz.gws, sz.rooms)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				if ns, err := c.OnlineMany(ctx, rooms); err != nil || len(ns) != len(rooms) {
					b.Fatalf("OnlineMany = %d counts, %v", len(ns), err)
				}
			}
		})
		b.Run(fmt.Sprintf("gws=%d/rooms=%d/one-by-one", sz.gws, sz.rooms), func(b *testing.B) {
			c, _ := benchClient(b)
			fill(b, c, sz.gws, sz.rooms)
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				for _, r := range rooms {
					if _, err := c.Online(ctx, r); err != nil {
						b.Fatal(err)
					}
				}
			}
		})
	}
}
