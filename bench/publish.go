package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// zipfWeights returns n weights proportional to 1/(i+1)^s, summing to 1.
func zipfWeights(n int, s float64) []float64 {
	w := make([]float64, n)
	var sum float64
	for i := range w {
		w[i] = 1 / math.Pow(float64(i+1), s)
		sum += w[i]
	}
	for i := range w {
		w[i] /= sum
	}
	return w
}

// apportion splits total over weights by largest remainder, so the parts
// sum to total exactly.
func apportion(total int, w []float64) []int {
	out := make([]int, len(w))
	type rem struct {
		i int
		r float64
	}
	rs := make([]rem, len(w))
	left := total
	for i, x := range w {
		f := float64(total) * x
		out[i] = int(f)
		left -= out[i]
		rs[i] = rem{i, f - float64(out[i])}
	}
	sort.Slice(rs, func(a, b int) bool { return rs[a].r > rs[b].r })
	for k := 0; k < left; k++ {
		out[rs[k%len(rs)].i]++
	}
	return out
}

// roomName names room i of a run.
func roomName(i int) string { return "bench-r" + strconv.Itoa(i) }

// publisher posts messages to rooms over HTTP at a steady rate.
type publisher struct {
	http    string
	token   string
	rooms   []string
	cum     []float64 // cumulative room weights
	rate    float64
	workers int
	corpus  string // Options.Corpus
	role    string // publish API role: "viewer" (Options.AsViewers) or "" (the token's)

	client *http.Client
	n      atomic.Int64
	errs   atomic.Int64
	behind atomic.Int64
	mu     sync.Mutex
	final  map[string]uint64
	rtt    Hist // POST → verdict of each accepted message, µs (under mu)
}

func newPublisher(httpAddr, token string, rooms []string, weights []float64, rate float64) *publisher {
	cum := make([]float64, len(weights))
	var c float64
	for i, w := range weights {
		c += w
		cum[i] = c
	}
	workers := min(512, max(8, int(rate/4)))
	return &publisher{http: httpAddr, token: token, rooms: rooms, cum: cum, rate: rate, workers: workers,
		final: map[string]uint64{},
		client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			MaxIdleConns: workers, MaxIdleConnsPerHost: workers, IdleConnTimeout: time.Minute}}}
}

// run publishes until ctx is done.
func (p *publisher) run(ctx context.Context) {
	jobs := make(chan string, p.workers*4)
	var wg sync.WaitGroup
	for range p.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for room := range jobs {
				p.post(room)
			}
		}()
	}
	const step = 5 * time.Millisecond
	t := time.NewTicker(step)
	rng := rand.New(rand.NewPCG(1, uint64(time.Now().UnixNano())))
	start := time.Now()
	var issued float64
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-t.C:
		}
		want := p.rate * time.Since(start).Seconds()
		for ; issued+1 <= want; issued++ {
			i := sort.SearchFloat64s(p.cum, rng.Float64())
			if i >= len(p.rooms) {
				i = len(p.rooms) - 1
			}
			select {
			case jobs <- p.rooms[i]:
			default:
				p.behind.Add(1) // the server is slower than the rate
			}
		}
	}
	t.Stop()
	close(jobs)
	wg.Wait()
}

func (p *publisher) post(room string) {
	ns := time.Now().UnixNano()
	n := p.n.Add(1)
	text := benchText(ns, uint64(n))
	if p.corpus == CorpusChat {
		text += " " + chatText(rand.New(rand.NewPCG(uint64(n), 0x9e3779b97f4a7c15)))
	}
	fields := map[string]string{"text": text, "name": "bench"}
	if p.role != "" {
		fields["role"] = p.role
	}
	body, _ := json.Marshal(fields)
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.http+"/api/rooms/"+room+"/publish", bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+p.token)
	req.Header.Set("Content-Type", "application/json")
	resp, err := p.client.Do(req)
	if err != nil {
		p.errs.Add(1)
		return
	}
	defer resp.Body.Close()
	var out struct {
		Seq uint64 `json:"seq"`
	}
	if resp.StatusCode != http.StatusOK || json.NewDecoder(resp.Body).Decode(&out) != nil || out.Seq == 0 {
		p.errs.Add(1)
		return
	}
	p.mu.Lock()
	if out.Seq > p.final[room] {
		p.final[room] = out.Seq
	}
	p.rtt.Record(uint64(time.Since(time.Unix(0, ns)) / time.Microsecond))
	p.mu.Unlock()
}

// finals returns the highest seq published per room.
func (p *publisher) finals() map[string]uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make(map[string]uint64, len(p.final))
	for k, v := range p.final {
		out[k] = v
	}
	return out
}
