package bench

import (
	"context"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestScrapeHistograms: two gateways' loop delay histograms add up
// bucket by bucket; quantiles interpolate within a bucket, and one in the
// +Inf bucket is the last finite bound. A process that does not answer
// or whose buckets differ is left out.
func TestScrapeHistograms(t *testing.T) {
	serve := func(body string) string {
		s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { fmt.Fprint(w, body) }))
		t.Cleanup(s.Close)
		return strings.TrimPrefix(s.URL, "http://")
	}
	const name = "danmaku_gateway_loop_delay_seconds"
	hist := func(counts ...int) string {
		var b strings.Builder
		fmt.Fprintf(&b, "# TYPE %s histogram\n", name)
		for i, le := range []string{"0.1", "0.5", "1", "+Inf"} {
			fmt.Fprintf(&b, "%s_bucket{le=%q} %d\n", name, le, counts[i])
		}
		fmt.Fprintf(&b, "%s_sum 12.5\n%s_count %d\nother_metric 3\n", name, name, counts[3])
		return b.String()
	}
	a := serve(hist(10, 50, 90, 100))
	b := serve(hist(0, 50, 90, 100))
	odd := serve(fmt.Sprintf("%s_bucket{le=\"7\"} 5\n%s_bucket{le=\"+Inf\"} 5\n", name, name))
	h := scrapeHistograms(context.Background(), []string{a, b, odd, "127.0.0.1:1", ""}, name)
	if h.total() != 200 || len(h.counts) != 4 || h.counts[0] != 10 || h.counts[1] != 100 {
		t.Fatalf("merged %+v, want the two gateways' buckets added (the odd one and the dead ones left out)", h)
	}
	for _, tc := range []struct{ q, want float64 }{
		{0.025, 0.05},            // rank 5 of the first bucket's 10: halfway to 0.1
		{0.5, 0.5},               // rank 100: the top of the 0.5 bucket
		{0.7, 0.5 + 0.5*40/80.0}, // rank 140: 40 of the 1 s bucket's 80
		{0.99, 1},                // rank 198: in +Inf, so the last finite bound
	} {
		if past := h.pastTop(tc.q); past != (tc.q == 0.99) {
			t.Errorf("pastTop(%v) = %v, want %v", tc.q, past, tc.q == 0.99)
		}
		if got := h.quantile(tc.q); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("quantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if h := scrapeHistograms(context.Background(), []string{"127.0.0.1:1"}, name); h.total() != 0 {
		t.Errorf("nothing to read gave %+v", h)
	}
}
