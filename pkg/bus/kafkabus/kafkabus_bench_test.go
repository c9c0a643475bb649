package kafkabus

import (
	"context"
	"runtime"
	"slices"
	"strconv"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

// benchValue is a typical accepted-message payload size.
var benchValue = make([]byte, 200)

func benchBus(b *testing.B, mod func(*Config)) *Bus {
	b.Helper()
	cfg := testConfig(b)
	if mod != nil {
		mod(&cfg)
	}
	return newTestBus(b, cfg)
}

// reportLatency adds p50/p99 of lat (one sample per op) to the results.
func reportLatency(b *testing.B, lat []time.Duration) {
	if len(lat) == 0 {
		return
	}
	slices.Sort(lat)
	q := func(f float64) float64 { return float64(lat[int(f*float64(len(lat)-1))].Microseconds()) }
	b.ReportMetric(q(0.50), "p50-µs")
	b.ReportMetric(q(0.99), "p99-µs")
}

// BenchmarkPublishSync measures one synchronous Publish of one record, as a
// gateway or logic worker does per message with nothing else in flight.
func BenchmarkPublishSync(b *testing.B) {
	for _, tc := range []struct {
		acks, compression string
		batchTimeout      time.Duration
	}{
		{"all", "lz4", DefaultBatchTimeout},
		{"one", "lz4", DefaultBatchTimeout},
		{"all", "none", DefaultBatchTimeout},
		{"all", "lz4", 200 * time.Microsecond},
	} {
		name := "acks=" + tc.acks + "/compression=" + tc.compression + "/batch-timeout=" + tc.batchTimeout.String()
		b.Run(name, func(b *testing.B) {
			bb := benchBus(b, func(c *Config) {
				c.RequiredAcks, c.Compression, c.BatchTimeout = tc.acks, tc.compression, tc.batchTimeout
			})
			p := bb.Publisher(bus.StreamAccepted)
			ctx := context.Background()
			if err := p.Publish(ctx, bus.Record{Key: "warm", Value: benchValue}); err != nil {
				b.Fatal(err)
			}
			lat := make([]time.Duration, 0, b.N)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				t0 := time.Now()
				if err := p.Publish(ctx, bus.Record{Key: "room-" + strconv.Itoa(i%64), Value: benchValue}); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(t0))
			}
			b.StopTimer()
			reportLatency(b, lat)
		})
	}
}

// BenchmarkPublishThroughput measures records/s: many concurrent
// synchronous publishers of single records (batched by the writer within
// BatchTimeout), and publishers of 100-record calls.
func BenchmarkPublishThroughput(b *testing.B) {
	for _, tc := range []struct {
		compression string
		perCall     int
		parallel    int
	}{
		{"lz4", 1, 64},
		{"none", 1, 64},
		{"lz4", 100, 4},
		{"none", 100, 4},
	} {
		name := "compression=" + tc.compression + "/records-per-call=" + strconv.Itoa(tc.perCall) +
			"/publishers=" + strconv.Itoa(tc.parallel)
		b.Run(name, func(b *testing.B) {
			bb := benchBus(b, func(c *Config) { c.Compression = tc.compression })
			p := bb.Publisher(bus.StreamAccepted)
			ctx := context.Background()
			if err := p.Publish(ctx, bus.Record{Key: "warm", Value: benchValue}); err != nil {
				b.Fatal(err)
			}
			var n atomic.Int64
			b.SetParallelism(max(1, tc.parallel/max(1, runtimeProcs())))
			b.ReportAllocs()
			b.ResetTimer()
			start := time.Now()
			b.RunParallel(func(pb *testing.PB) {
				recs := make([]bus.Record, tc.perCall)
				i := 0
				for pb.Next() {
					for j := range recs {
						i++
						recs[j] = bus.Record{Key: "room-" + strconv.Itoa(i%256), Value: benchValue}
					}
					if err := p.Publish(ctx, recs...); err != nil {
						b.Error(err)
						return
					}
					n.Add(int64(len(recs)))
				}
			})
			b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "records/s")
		})
	}
}

// BenchmarkEndToEnd measures publish-to-Fetch latency through a group-less
// consumer, the path a dispatch batch takes to a gateway.
func BenchmarkEndToEnd(b *testing.B) {
	bb := benchBus(b, nil)
	ctx := context.Background()
	c, err := bb.Consumer(bus.StreamDispatch, bus.ConsumerOptions{})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	p := bb.Publisher(bus.StreamDispatch)
	lat := make([]time.Duration, 0, b.N)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		t0 := time.Now()
		if err := p.Publish(ctx, bus.Record{Key: "room-" + strconv.Itoa(i%64), Value: benchValue}); err != nil {
			b.Fatal(err)
		}
		if _, err := c.Fetch(ctx); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(t0))
	}
	b.StopTimer()
	reportLatency(b, lat)
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

// BenchmarkConsumeCPU measures what reading the dispatch stream costs a
// gateway: the consumer's CPU (getrusage of this process, the broker runs
// elsewhere) per record fetched, for records of two sizes, published
// ahead in batches of 100 and read by a consumer group from the first
// offset. The scale model (bench/model, costs.json read_record_us and
// read_byte_ns) fits cost = a + b × bytes through the two sizes.
func BenchmarkConsumeCPU(b *testing.B) {
	for _, size := range []int{200, 2000} {
		b.Run("value="+strconv.Itoa(size), func(b *testing.B) {
			bb := benchBus(b, nil)
			ctx := context.Background()
			p := bb.Publisher(bus.StreamDispatch)
			val := make([]byte, size)
			for i := range val {
				val[i] = "abcdefghij{}\":,0123456789"[i%25] // JSON-like, compressible as batches are
			}
			recs := make([]bus.Record, 100)
			want := (b.N + len(recs) - 1) / len(recs) * len(recs)
			for n := 0; n < want; n += len(recs) {
				for j := range recs {
					recs[j] = bus.Record{Key: "room-" + strconv.Itoa((n+j)%512), Value: val}
				}
				if err := p.Publish(ctx, recs...); err != nil {
					b.Fatal(err)
				}
			}
			c, err := bb.Consumer(bus.StreamDispatch, bus.ConsumerOptions{Group: "bench-consume"})
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			b.ResetTimer()
			cpu0 := processCPU()
			for got := 0; got < want; {
				rs, err := c.Fetch(ctx)
				if err != nil {
					b.Fatal(err)
				}
				got += len(rs)
			}
			b.StopTimer()
			b.ReportMetric((processCPU()-cpu0).Seconds()*1e6/float64(want), "cpu-µs/record")
		})
	}
}

// processCPU is the user and system CPU time of this process so far.
func processCPU() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
