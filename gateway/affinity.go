// Room affinity (Config.Affinity): which dispatch partitions the gateway reads. The subscription set and grace timers live under affinity.mu; the subscription goroutine resolves where a partition's reading starts; the dispatch goroutine applies the set between fetches.

package gateway

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
)

// affinity is the set of dispatch partitions a gateway with
// Config.Affinity reads.
//
// A partition is read while a room on it (bus.KeyPartition) has a viewer
// here, and for AffinityGrace after the last one left. Each stretch of
// reading is a period, numbered by the partition's epoch: a room's ring
// holds what one period read (room.epoch), and a room whose first viewer
// arrives in a later period starts its ring again, since the batches
// dispatched between the periods were not read (join: adoptEpochLocked).
// A new period starts AffinityRewind records before the partition's end,
// so the batches read overlap the history store's answer to the join; the
// ring drops what it has seen by seq. Joins of the partition's rooms wait
// (await) until the dispatch goroutine has read the period up to where it
// went live (release; at most catchUpWait): the rings then hold what the
// store may not have yet, and the history and the batches after it meet.
//
// Who does what: event loops call enter and exit under room.mu when a
// room gets its first viewer or loses its last, and await for each join
// of a partition not caught up; a grace timer's goroutine calls expire,
// a wait timer's release; the subscription goroutine (runAffinity) resolves each new
// period's start offset with the bus's PartitionReader; the dispatch
// goroutine (runAffineDispatch) assigns and unassigns the partitions on its
// PartitionConsumer between fetches, so it knows which period every record
// it reads belongs to. kick wakes it from a fetch.
type affinity struct {
	pr     bus.PartitionReader
	ps     bus.PartitionSubscriber
	n      int // dispatch partitions
	grace  time.Duration
	rewind int64
	// resolve wakes the subscription goroutine (capacity 1).
	resolve chan struct{}
	// readGauge is the metric of the partitions read (set by apply).
	readGauge interface{ Set(float64) }

	// mu guards parts, wake and changed. A leaf lock: taken under room.mu,
	// never held while calling the bus.
	mu    sync.Mutex
	parts []affPart
	// wake cancels the dispatch goroutine's fetch in progress; nil when it
	// is not fetching.
	wake context.CancelFunc
	// changed: a partition's wanted reading changed since the dispatch
	// goroutine last applied the set.
	changed bool
}

// affPart is one dispatch partition's reading. Guarded by affinity.mu.
type affPart struct {
	rooms int  // rooms of the partition with a viewer here
	read  bool // wanted: from the first join until the grace ends
	epoch uint64
	// start is where this period's reading starts and live the
	// partition's end when it was resolved (records before it are replayed,
	// not live); start is -1 until the subscription goroutine resolved it.
	start, live int64
	// timer ends the grace after the last viewer left; nil when none
	// runs. timerGen tells a stale timer (stopped too late) from the
	// current one.
	timer    *time.Timer
	timerGen uint64
	// caught: the dispatch goroutine has read this period up to live
	// (or catchUpWait passed), so the rings of its rooms hold everything
	// dispatched before live. Until then joins wait (waiters: each
	// resumes its join on its loop; waitTimer bounds the wait).
	caught    bool
	waiters   []func()
	waitTimer *time.Timer
}

// catchUpWait bounds how long joins wait for a newly read partition to be
// read up to where it was live: past it they are answered with what the
// gateway has (a viewer that then sees a gap resumes).
const catchUpWait = 2 * time.Second

// newAffinity returns the subscription set for cfg, or nil without
// Config.Affinity. It asks the bus for the dispatch partition count.
func newAffinity(cfg *Config) (*affinity, error) {
	if !cfg.Affinity {
		return nil, nil
	}
	ps, ok := cfg.Bus.(bus.PartitionSubscriber)
	pr, ok2 := cfg.Bus.(bus.PartitionReader)
	if !ok || !ok2 {
		return nil, errors.New("gateway: Affinity needs a bus that reads chosen partitions (memory or kafka)")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := pr.Partitions(ctx, bus.StreamDispatch)
	if err != nil {
		return nil, fmt.Errorf("gateway: affinity: dispatch partitions: %w", err)
	}
	return &affinity{pr: pr, ps: ps, n: n, grace: cfg.AffinityGrace, rewind: int64(cfg.AffinityRewind),
		resolve: make(chan struct{}, 1), parts: make([]affPart, n)}, nil
}

// partition returns the dispatch partition of room.
func (a *affinity) partition(room string) int { return bus.KeyPartition(room, a.n) }

// enter notes that room got its first viewer here and returns the epoch of
// the period its partition is read in: a new one when the partition was
// not read (the subscription goroutine resolves where it starts), else
// the current one, whose grace ends. Called on an event loop under the
// room's mu.
func (a *affinity) enter(room string) uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	pt := &a.parts[a.partition(room)]
	pt.rooms++
	if pt.timer != nil {
		pt.timer.Stop()
		pt.timer = nil
		pt.timerGen++
	}
	if !pt.read {
		pt.read = true
		pt.epoch++
		pt.start = -1
		// Joins of an earlier period that never caught up left.
		pt.caught, pt.waiters = false, nil
		if pt.waitTimer != nil {
			pt.waitTimer.Stop()
			pt.waitTimer = nil
		}
		select {
		case a.resolve <- struct{}{}:
		default:
		}
	}
	return pt.epoch
}

// exit notes that room lost its last viewer here; the partition's grace
// starts when it was its last room with viewers. Called on an event loop
// under the room's mu.
func (a *affinity) exit(room string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.partition(room)
	pt := &a.parts[p]
	pt.rooms--
	if pt.rooms > 0 {
		return
	}
	pt.timerGen++
	gen := pt.timerGen
	pt.timer = time.AfterFunc(a.grace, func() { a.expire(p, gen) })
}

// expire ends partition p's reading when its grace (timer generation gen)
// ran out with no viewer back. Runs on the timer's goroutine.
func (a *affinity) expire(p int, gen uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	pt := &a.parts[p]
	if pt.timerGen != gen || pt.rooms > 0 || !pt.read {
		return
	}
	pt.timer = nil
	pt.read = false
	a.kickLocked()
}

// await makes fn run once room's partition, read in period epoch, has been
// read up to where that period went live, and reports true; it reports
// false (fn will not run) when that is so already or the period is not
// current. Called on an event loop under the room's mu.
func (a *affinity) await(room string, epoch uint64, fn func()) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.partition(room)
	pt := &a.parts[p]
	if pt.epoch != epoch || pt.caught {
		return false
	}
	pt.waiters = append(pt.waiters, fn)
	if pt.waitTimer == nil {
		pt.waitTimer = time.AfterFunc(catchUpWait, func() { a.release(p, epoch) })
	}
	return true
}

// release marks partition p's period epoch caught up and runs the joins
// waiting for it. Runs on the dispatch goroutine, or on the wait timer's.
func (a *affinity) release(p int, epoch uint64) {
	a.mu.Lock()
	pt := &a.parts[p]
	if pt.epoch != epoch || pt.caught {
		a.mu.Unlock()
		return
	}
	pt.caught = true
	waiters := pt.waiters
	pt.waiters = nil
	if pt.waitTimer != nil {
		pt.waitTimer.Stop()
		pt.waitTimer = nil
	}
	a.mu.Unlock()
	for _, fn := range waiters {
		fn()
	}
}

// kickLocked tells the dispatch goroutine the set changed, waking it from
// its fetch. mu must be held.
func (a *affinity) kickLocked() {
	a.changed = true
	if a.wake != nil {
		a.wake()
		a.wake = nil
	}
}

// reading reports the partitions read now (tests and metrics).
func (a *affinity) reading() []int {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []int
	for p := range a.parts {
		if a.parts[p].read {
			out = append(out, p)
		}
	}
	return out
}

// runAffinity is the subscription goroutine: it resolves where each new
// reading period starts, AffinityRewind records before the partition's
// end (not before its oldest record), retrying while the bus fails.
func (s *Server) runAffinity() {
	a := s.aff
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-a.resolve:
		}
		backoff := 50 * time.Millisecond
		for s.ctx.Err() == nil {
			p, epoch, ok := a.unresolved()
			if !ok {
				break
			}
			ctx, cancel := context.WithTimeout(s.ctx, 10*time.Second)
			o, err := a.pr.Offsets(ctx, bus.StreamDispatch, p, "")
			cancel()
			if err != nil {
				s.cfg.Logger.Warn("gateway: affinity: dispatch partition offsets, retrying", "partition", p, "err", err)
				select {
				case <-s.ctx.Done():
				case <-time.After(backoff):
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			a.resolved(p, epoch, max(o.Oldest, o.End-a.rewind), o.End)
		}
	}
}

// unresolved returns a partition whose current period has no start yet.
func (a *affinity) unresolved() (p int, epoch uint64, ok bool) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for p := range a.parts {
		if pt := &a.parts[p]; pt.read && pt.start < 0 {
			return p, pt.epoch, true
		}
	}
	return 0, 0, false
}

// resolved sets the start of partition p's period epoch, unless that
// period ended meanwhile.
func (a *affinity) resolved(p int, epoch uint64, start, live int64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	pt := &a.parts[p]
	if pt.epoch != epoch || !pt.read || pt.start >= 0 {
		return
	}
	pt.start, pt.live = start, live
	a.kickLocked()
}

// assigned is what the dispatch goroutine's consumer reads of one
// partition: the period (0: nothing), where its live records begin and
// whether it has read up to there. Owned by the dispatch goroutine.
type assigned struct {
	epoch  uint64
	live   int64
	caught bool
}

// readUpTo notes that the records of a fetch were handled: a partition
// whose period has now been read up to its live offset is caught up
// (release). Runs on the dispatch goroutine.
func (a *affinity) readUpTo(recs []bus.Record, cur []assigned) {
	for i := range recs {
		as := &cur[recs[i].Partition]
		if !as.caught && as.epoch != 0 && recs[i].Offset+1 >= as.live {
			as.caught = true
			a.release(recs[i].Partition, as.epoch)
		}
	}
}

// apply brings pc's assignment in line with the wanted set: a partition
// whose period has a start is assigned from it, one no longer wanted (or
// whose new period is not resolved yet) is unassigned. Runs on the
// dispatch goroutine, between fetches.
func (a *affinity) apply(pc bus.PartitionConsumer, cur []assigned) error {
	type change struct {
		p     int
		to    assigned
		start int64
	}
	var changes []change
	a.mu.Lock()
	a.changed = false
	read := 0
	for p := range a.parts {
		pt := &a.parts[p]
		if pt.read {
			read++
		}
		var want assigned
		if pt.read && pt.start >= 0 {
			want = assigned{epoch: pt.epoch, live: pt.live}
		}
		if want.epoch != cur[p].epoch {
			changes = append(changes, change{p: p, to: want, start: pt.start})
		}
	}
	a.mu.Unlock()
	a.readGauge.Set(float64(read))
	for _, c := range changes {
		var err error
		if c.to.epoch == 0 {
			err = pc.Unassign(c.p)
		} else {
			err = pc.Assign(c.p, c.start)
		}
		if err != nil {
			return err
		}
		cur[c.p] = c.to
		if c.to.epoch != 0 && c.start >= c.to.live {
			cur[c.p].caught = true // nothing before live to read
			a.release(c.p, c.to.epoch)
		}
	}
	return nil
}

// fetchContext returns the context of the dispatch goroutine's next fetch,
// which kick cancels, or nil when the set changed and apply must run
// first.
func (a *affinity) fetchContext(parent context.Context) (context.Context, context.CancelFunc) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.changed {
		return nil, nil
	}
	ctx, cancel := context.WithCancel(parent)
	a.wake = cancel
	return ctx, cancel
}

// fetched clears wake after a fetch.
func (a *affinity) fetched() {
	a.mu.Lock()
	a.wake = nil
	a.mu.Unlock()
}
