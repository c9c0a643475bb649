package moderation

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// chatLines are chat-like messages: short, mixed languages, emoji, some
// evasions and some links.
var chatLines = []string{
	"lol", "gg", "666666", "哈哈哈哈哈", "nice shot!", "what was that play", "LETS GOOOOO",
	"first time here, love the stream", "can you play the other map next?", "KEKW",
	"主播太强了", "这波操作可以的", "前方高能", "草", "wwwwww", "かわいい！", "I'm from Brazil 🇧🇷",
	"is this live or a replay?", "@streamer hi!", "what song is this", "PogChamp PogChamp",
	"that was a classic assassin move", "the analysis was great", "hello from the shell",
	"check my channel example.com/x", "f.u.c.k that boss", "ｆｕｃｋ", "so close!!!",
	"how many hours have you played?", "1v1 me", "noooo", "😂😂😂", "W", "L", "ratio",
	"this is the best stream on the platform right now honestly", "你好，主播晚上好",
}

func randomKeywords(n int, rng *rand.Rand) []string {
	out := make([]string, 0, n)
	seen := make(map[string]bool, n)
	for len(out) < n {
		var b strings.Builder
		l := 4 + rng.IntN(7)
		for range l {
			b.WriteByte(byte('a' + rng.IntN(26)))
		}
		if w := b.String(); !seen[w] {
			seen[w] = true
			out = append(out, w)
		}
	}
	// Real-world lists also carry CJK entries.
	cjk := []rune("傻逼垃圾操你妈死全家滚蛋废物脑残")
	for i := 0; i < n/20; i++ {
		out[i] = string([]rune{cjk[rng.IntN(len(cjk))], cjk[rng.IntN(len(cjk))], cjk[rng.IntN(len(cjk))]})
	}
	return out
}

func benchEngine(b *testing.B) *Engine {
	rng := rand.New(rand.NewPCG(7, 7))
	words := append(randomKeywords(10_000, rng), "fuck", "shit", "傻逼")
	// At production rates (≥ 1M msgs/s) a sweep every minute costs nothing
	// per message; the simulated clock here runs at only 200 msgs/s, so the
	// sweep interval is stretched to keep the same ratio.
	e := newTestEngine(b, Config{Global: KeywordList{Words: words}, SweepInterval: time.Hour})
	return e
}

// BenchmarkCheck10kKeywords runs Check on one core against a 10,000-keyword
// global list with the default room limits (rate limit, duplicate
// detection). 10,000 senders take turns and the clock advances 5 ms per
// message, so limits are evaluated but rarely fire.
func BenchmarkCheck10kKeywords(b *testing.B) {
	e := benchEngine(b)
	uids := make([]string, 10_000)
	for i := range uids {
		uids[i] = fmt.Sprint("user", i)
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := threadCPU()
	n, accepted := 0, 0
	for b.Loop() {
		v := e.Check(Input{
			Room: "room1",
			UID:  uids[n%len(uids)],
			Text: chatLines[(n*7+n/len(uids))%len(chatLines)],
			Now:  t0.Add(time.Duration(n) * 5 * time.Millisecond),
		})
		if v.Action == Accept {
			accepted++
		}
		n++
	}
	cpu := threadCPU() - cpu0
	b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
	// msgs/cpu-s divides by the CPU time of the benchmark's own thread, so
	// it stays meaningful on a machine shared with other work.
	if cpu > 0 {
		b.ReportMetric(float64(n)/cpu.Seconds(), "msgs/cpu-s")
	}
	b.ReportMetric(float64(accepted)/float64(n), "accepted/op")
}

// BenchmarkCheck10kKeywordsParallel is the same across GOMAXPROCS workers,
// each in its own set of rooms (as sharded logic workers are).
func BenchmarkCheck10kKeywordsParallel(b *testing.B) {
	e := benchEngine(b)
	var worker atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	var total atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		w := worker.Add(1)
		rooms := []string{fmt.Sprint("w", w, "a"), fmt.Sprint("w", w, "b")}
		uids := make([]string, 1000)
		for i := range uids {
			uids[i] = fmt.Sprint("w", w, "u", i)
		}
		n := 0
		for pb.Next() {
			e.Check(Input{Room: rooms[n%2], UID: uids[n%len(uids)], Text: chatLines[(n*7+n/len(uids))%len(chatLines)],
				Now: t0.Add(time.Duration(n) * 5 * time.Millisecond)})
			n++
		}
		total.Add(int64(n))
	})
	b.ReportMetric(float64(total.Load())/time.Since(start).Seconds(), "msgs/s")
}

func BenchmarkNormalize(b *testing.B) {
	var t normText
	b.ReportAllocs()
	n := 0
	for b.Loop() {
		t.normalize(chatLines[n%len(chatLines)])
		n++
	}
}
