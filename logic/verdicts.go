package logic

import (
	"context"
	"sync"
	"time"

	"github.com/danmaku-live/danmaku/moderation"
	"github.com/danmaku-live/danmaku/pkg/history"
)

// maxVerdictKeys bounds the verdict counts kept between flushes; past it
// new (room, minute, action, rule) keys are not counted until the next
// flush (see verdictCounter.dropped).
const maxVerdictKeys = 100_000

type verdictKey struct {
	room   string
	minute int64
	action string
	rule   string
}

// verdictCounter adds up moderation verdicts between flushes to
// Config.Verdicts. It is safe for concurrent use.
type verdictCounter struct {
	mu      sync.Mutex
	counts  map[verdictKey]int64
	dropped int64 // counts not kept for maxVerdictKeys
}

func newVerdictCounter() *verdictCounter {
	return &verdictCounter{counts: make(map[verdictKey]int64)}
}

// add counts v unless it is a plain accept.
func (c *verdictCounter) add(room string, now time.Time, v moderation.Verdict) {
	if v.Action == moderation.Accept && v.Rule == "" {
		return
	}
	k := verdictKey{room: room, minute: now.UnixMilli() / 60000 * 60000, action: v.Action.String(), rule: v.Rule}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.counts[k]; !ok && len(c.counts) >= maxVerdictKeys {
		c.dropped++
		return
	}
	c.counts[k]++
}

// take returns the counts so far and starts afresh.
func (c *verdictCounter) take() ([]history.VerdictCount, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make([]history.VerdictCount, 0, len(c.counts))
	for k, n := range c.counts {
		out = append(out, history.VerdictCount{Room: k.room, Minute: k.minute, Action: k.action, Rule: k.rule, Count: n})
	}
	clear(c.counts)
	d := c.dropped
	c.dropped = 0
	return out, d
}

// putBack returns counts that could not be written, to be written with
// the next flush.
func (c *verdictCounter) putBack(counts []history.VerdictCount) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, v := range counts {
		k := verdictKey{room: v.Room, minute: v.Minute, action: v.Action, rule: v.Rule}
		if _, ok := c.counts[k]; !ok && len(c.counts) >= maxVerdictKeys {
			c.dropped += v.Count
			continue
		}
		c.counts[k] += v.Count
	}
}

// runVerdicts writes the verdict counts to Config.Verdicts every
// VerdictFlush and once more when ctx ends. A failed write is kept and
// tried again with the next flush, so counts are lost only when the
// process ends while the store is down (or past maxVerdictKeys).
func (l *Logic) runVerdicts(ctx context.Context) {
	t := time.NewTicker(l.cfg.VerdictFlush)
	defer t.Stop()
	flush := func(ctx context.Context) {
		counts, dropped := l.vc.take()
		if dropped > 0 {
			l.cfg.Logger.Warn("logic: verdict counts dropped (too many rooms and rules between flushes)", "count", dropped)
		}
		if len(counts) == 0 {
			return
		}
		if err := l.cfg.Verdicts.AddVerdicts(ctx, counts); err != nil {
			l.cfg.Logger.Warn("logic: writing verdict counts failed; kept for the next flush", "err", err)
			l.vc.putBack(counts)
		}
	}
	for {
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			flush(fctx)
			cancel()
			return
		case <-t.C:
			flush(ctx)
		}
	}
}
