// Overload shedding: the shed goroutine sets each room's budget; the dispatch goroutine thins batches with it (under room.mu).

package gateway

import (
	"time"

	"github.com/danmaku-live/danmaku/pkg/auth"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// Overload shedding.
//
// When a gateway cannot write a room's stream to its viewers in time — a
// batch waits more than Config.ShedDelay on an event loop with viewers of
// the room, from being queued there to being written to every viewer
// there that lacked it (lag.go), or most of the room's viewers on a loop
// are backed up at once — it thins the room's stream itself, once for the
// whole gateway, on the dispatch goroutine: every viewer of the room on
// this gateway gets the same messages and the same from/to marks. A slow
// socket alone does not shed anything (its own batches are dropped, then
// it is closed with 4000, as before); a stream the gateway cannot write
// to everyone does, instead of dropping batches for viewers at random. (A
// backlog over the OutboundBudget is not a reason by itself: one viewer
// that does not read can hold it. While a room is shed, its viewers are
// exempt from the budget's drops; the per-viewer soft and hard caps
// stay.)
//
// The first answer to pressure costs latency, not messages: the room
// goes "wide", and the loops with its viewers write to them at most every
// Config.ShedFlushDelay (or, while the wide rooms' writes in a pass
// average below shedFrameBytes, every write pass's duration if longer, up
// to ShedDelay; the loops' other rooms wait with it and are exempt from the
// outbound budget's drops meanwhile, as their frames grow too), so
// each viewer gets fewer, bigger frames (a write's fixed cost, not its
// bytes, is most of what a big room costs at a few messages per frame).
// Only if the room is still late on batches queued after that, with
// writes of shedFrameBytes or more on the wire at full delivery, or with
// most of its viewers backed up, does the gateway leave messages out: a
// loop late with smaller writes is late for their fixed cost, which
// leaving messages out does not lower (it keeps the room wide).
//
// Shedding never leaves out a protected message (system, paid, highlight,
// or one of a mod, streamer or service) nor a frame outside the seq stream
// (delete, purge, notice, online). The other messages are shown up to the
// room's shed budget in messages per second, spread evenly over each
// batch. The budget starts at half the room's incoming rate (or less: 70 %
// of what the gateway wrote per viewer over the last second), halves while
// the pressure lasts (at most once per shedCutEvery, and only for pressure
// measured on batches queued after the last cut), grows by half every
// shedCutEvery once it is gone for shedCalm, and leaving out ends when the
// budget reaches twice the incoming rate; the room's frames narrow again
// once it has had full delivery for shedWideCalm, no loop of its has been
// late for as long, and nothing is left to cover: the room returns to
// full delivery by itself.
//
// Every left-out seq is covered by a batch's from/to marks: by the next
// batch posted, or, when nothing was posted for shedCoverWait after a
// batch was left out entirely (the room went quiet, or the budget shows
// fewer messages than that), by a batch of no messages. Covering every
// shed step instead would cost the room one frame per viewer per step
// however few messages it shows, which keeps an overloaded gateway
// overloaded. The ring keeps every message: joins and resumes get the full
// history.

const (
	// shedStep is how often the gateway looks at the pressure on its
	// rooms and covers what shedding left out (a dispatch tick at most).
	shedStep = 50 * time.Millisecond
	// shedCalm is how long a room must be free of pressure before its
	// budget grows.
	shedCalm = time.Second
	// shedMin is the lowest budget in messages per second.
	shedMin = 5
	// shedBurst is the budget's bucket depth in seconds.
	shedBurst = 0.25
	// shedGrow is the budget's growth per shedCutEvery once calm: from
	// the floor to 1000 msg/s in about 7 s.
	shedGrow = 1.5
	// shedWindow is the shortest window achieved is measured over: a
	// pass over a big room takes hundreds of milliseconds.
	shedWindow = time.Second
	// shedHeadroom is the share of what the gateway achieved that a cut
	// keeps: below it, the queued batches drain.
	shedHeadroom = 0.7
	// shedCoverWait is how long what a room's shedding left out may stay
	// uncovered when no batch is posted after it.
	shedCoverWait = 250 * time.Millisecond
	// shedFrameBytes is the bytes on the wire per write of a room's
	// stream at full delivery (a pass's mean over its members, as each
	// got it: compressed, compact; the largest over the loops) below
	// which a wide room's lateness is taken as the cost of its writes,
	// not of their bytes (see shedStep); and, over a pass's writes of wide
	// rooms as made (thinned or not), the mean below which a wide loop's
	// wait stretches to the pass's length (flush.go): on the bench
	// machine a write's fixed cost is what its first 19 KB cost
	// (bench/model/costs.json, write_us / write_byte_ns), so below this
	// leaving messages out saves less than a bigger write does, and above
	// it a longer wait saves little. About 256 chat messages as JSON,
	// 1,300 compressed.
	shedFrameBytes = 32768
	// shedWideCalm is how long a wide room (see above) must be without
	// pressure and without a budget before its frames narrow again.
	shedWideCalm = 5 * time.Second
)

// fullWriteBytes is the room's bytes per write at full delivery: as
// measured, scaled up by rate / budget while messages are left out.
func (sh *shed) fullWriteBytes() int64 {
	if sh.budget > 0 && sh.rate > sh.budget {
		return int64(float64(sh.writeBytes) * sh.rate / sh.budget)
	}
	return sh.writeBytes
}

// shedCutEvery is the shortest interval between two cuts of a room's
// budget: the queued batches must be written before a cut shows.
func (s *Server) shedCutEvery() time.Duration {
	return max(s.cfg.ShedDelay, 250*time.Millisecond)
}

// shed is a room's overload shedding on this gateway. Guarded by room.mu.
type shed struct {
	// wide: the room is under overload handling (room.shedding): its
	// loops write it every Config.ShedFlushDelay; budget may be 0 then.
	wide   bool
	budget float64   // messages per second shown; 0 = full delivery
	tokens float64   // messages that may still be shown
	at     time.Time // when tokens was last topped up
	// cover..coverTo are seqs left out and not yet covered by a posted
	// batch (cover 0 = none), since coverAt.
	cover, coverTo uint64
	coverAt        time.Time
	cutAt          time.Time // the last cut
	pressedAt      time.Time // the last time the room was under pressure
	// busyAt is the last time a loop with the room's viewers was late at
	// all; fullAt when the room last went wide or got full delivery back.
	busyAt, fullAt time.Time
	grownAt        time.Time // the last time the budget grew
	// writeBytes is the largest mean bytes per write of the room's
	// stream a loop reported since the steps before (room.writeBytes).
	writeBytes int64
	seen       int64     // messages received since the last step
	rate       float64   // messages per second received (smoothed)
	stepAt     time.Time // the last step
	// achieved is the messages per second per viewer the gateway wrote
	// over the last window of at least shedWindow (0: not measured yet);
	// wsum and wstart accumulate the current window.
	achieved float64
	wsum     int64
	wstart   time.Time
}

// protected reports whether shedding must never leave m out.
func protected(m *protocol.Message) bool {
	switch m.Kind {
	case protocol.KindSystem, protocol.KindPaid, protocol.KindHighlight:
		return true
	}
	switch m.Role {
	case auth.RoleMod, auth.RoleStreamer, auth.RoleService:
		return true
	}
	return false
}

// apply sheds ms, the new messages of a batch covering first..last, and
// returns the messages to show, the first seq the posted batch covers and
// whether to post it (not when every message was left out: the next batch
// or shed step covers them), and how many it left out. room.mu must be
// held.
func (sh *shed) apply(ms []protocol.Message, first, last uint64, now time.Time) (shown []protocol.Message, from uint64, post bool, left int) {
	sh.seen += int64(len(ms))
	from = first
	if sh.cover != 0 {
		from = sh.cover
	}
	if sh.budget == 0 {
		sh.cover, sh.coverTo = 0, 0
		return ms, from, true, 0
	}
	if !sh.at.IsZero() {
		sh.tokens += sh.budget * now.Sub(sh.at).Seconds()
	}
	sh.tokens = min(sh.tokens, max(sh.budget*shedBurst, 1))
	sh.at = now
	prot := 0
	for i := range ms {
		if protected(&ms[i]) {
			prot++
		}
	}
	others := len(ms) - prot
	keep := min(max(int(sh.tokens)-prot, 0), others)
	if keep == others {
		shown = ms
	} else {
		// The kept ones spread evenly over the batch: the k-th other
		// message is shown when it crosses a multiple of others/keep.
		shown = make([]protocol.Message, 0, prot+keep)
		k := 0
		for i := range ms {
			if protected(&ms[i]) {
				shown = append(shown, ms[i])
				continue
			}
			if (k+1)*keep/others > k*keep/others {
				shown = append(shown, ms[i])
			}
			k++
		}
	}
	sh.tokens = max(sh.tokens-float64(len(shown)), -sh.budget)
	left = len(ms) - len(shown)
	if len(shown) == 0 {
		if sh.cover == 0 {
			sh.coverAt = now
		}
		sh.cover, sh.coverTo = from, last
		return nil, from, false, left
	}
	sh.cover, sh.coverTo = 0, 0
	return shown, from, true, left
}

// shedLocked applies the room's shedding to a batch from dispatch and
// counts what it left out. room.mu must be held.
func (s *Server) shedLocked(r *room, ms []protocol.Message, first, last uint64) (shown []protocol.Message, from uint64, post bool) {
	if r.shed.budget == 0 && r.shed.cover == 0 {
		r.shed.seen += int64(len(ms))
		return ms, first, true
	}
	shown, from, post, left := r.shed.apply(ms, first, last, time.Now())
	if left > 0 {
		s.m.shed.Add(float64(left))
		s.m.shedDeliveries.Add(float64(int64(left) * r.viewerCount()))
		r.shedMsgs.Add(int64(left))
	}
	return shown, from, post
}

// runShed runs shedStep every shedStep until the server stops. Runs on its
// own goroutine.
func (s *Server) runShed() {
	t := time.NewTicker(shedStep)
	defer t.Stop()
	for {
		select {
		case <-s.ctx.Done():
			return
		case now := <-t.C:
			s.shedStep(now)
		}
	}
}

// behind returns how late the loop's writes are, all on this gateway's
// clock: the longest wait of a delivery its last write pass wrote (from
// being queued on the loop to being written to every member that lacked
// it, passLag, less what of the wait for wide rooms before that pass it
// sat through; if that pass ended within a second), or the age of the
// oldest delivery waiting now less the wait the loop adds for wide rooms
// now, whichever is larger; and when that delivery was queued (Unix ns).
//
// Only the gateway's own lateness counts, never a message's age since
// logic accepted it: a pipeline that is late before the gateway (a slow
// logic or broker) is not helped by writing less, and logic's clock may
// be off from this one. Safe for concurrent use.
func (l *loop) behind(now time.Time) (lag time.Duration, head int64) {
	ns := now.UnixNano()
	var d int64
	if ns-l.delayAt.Load() < int64(time.Second) {
		d, head = l.delay.Load(), l.delayHead.Load()
	}
	// The wait wide rooms ask for is not lateness.
	wait := max(l.wideWait.Load(), 0)
	l.out.mu.Lock()
	if len(l.out.q) > 0 {
		if h := l.out.q[0].queued; ns-h-wait > d {
			d, head = ns-h-wait, h
		}
	}
	l.out.mu.Unlock()
	return time.Duration(max(d, 0)), head
}

// shedStep decides, for every room, whether it is under pressure, cuts or
// grows its budget, and covers what shedding left out without a batch to
// cover it. Runs on the shed goroutine (or a test).
func (s *Server) shedStep(now time.Time) {
	loops := s.loopList()
	// behind[i] is when the delivery loop i is latest with was queued
	// (0: not late): a room cut after that does not count it.
	behind := make([]int64, s.cfg.Loops)
	anyBehind := false
	for _, l := range loops {
		// Late by ShedDelay in the loop itself.
		lag, head := l.behind(now)
		if lag > s.cfg.ShedDelay {
			s.cfg.Logger.Debug("gateway: loop late", "loop", l.idx, "lag", lag)
		}
		if l.idx < len(behind) && lag > s.cfg.ShedDelay {
			behind[l.idx] = max(head, 1)
			anyBehind = true
		}
	}
	type cand struct {
		r       *room
		offered int64
	}
	var rooms []cand
	var total int64
	s.rooms.each(func(r *room) {
		offered := r.offered.Swap(0)
		if offered == 0 && !r.shedding.Load() && r.backedAt.Load() == 0 {
			return
		}
		total += offered
		rooms = append(rooms, cand{r, offered})
	})
	for _, c := range rooms {
		r := c.r
		// Heavy: the room asks at least an eighth of the gateway's
		// writes. A loop's lag cuts the heavy rooms with viewers on it;
		// a room whose viewers are backed up is cut whatever its share.
		// Either counts only when it was measured on deliveries queued
		// after the room's last cut: the batches queued before it were
		// shed at the old budget, and cutting again for them would cut
		// too deep.
		heavy := c.offered*8 >= total
		backedAt := r.backedAt.Swap(0)
		r.mu.Lock()
		var cutAt int64
		if !r.shed.cutAt.IsZero() {
			cutAt = r.shed.cutAt.UnixNano()
		}
		pressed, late := backedAt > cutAt, backedAt != 0
		var lagLate, lagPressed bool
		if heavy && anyBehind {
			for i, n := range r.viewers {
				if n > 0 && i < len(behind) && behind[i] != 0 {
					lagLate = true
					lagPressed = lagPressed || behind[i] > cutAt
				}
			}
		}
		// A wide room's loop lag cuts or holds its budget only while its
		// writes are big: below shedFrameBytes, a write's fixed cost is
		// most of a pass, and leaving messages out would not make the
		// loop faster. It still keeps the room wide. The size is that of
		// full delivery: thinned writes are smaller by budget / rate, and
		// judging those would let the budget grow back while the loop is
		// still late.
		if w := r.writeBytes.Swap(0); w > 0 {
			r.shed.writeBytes = w
		}
		if !r.shed.wide || r.shed.fullWriteBytes() >= shedFrameBytes {
			late = late || lagLate
			pressed = pressed || lagPressed
		}
		if late || lagLate {
			s.cfg.Logger.Debug("gateway: room under pressure", "room", r.name, "backed", backedAt != 0, "late_loops", lagLate, "since_cut", pressed)
		}
		s.stepRoomLocked(r, pressed, late, late || lagLate, now)
		r.mu.Unlock()
	}
}

// stepLocked is stepRoomLocked with busy = late.
func (s *Server) stepLocked(r *room, pressed, late bool, now time.Time) {
	s.stepRoomLocked(r, pressed, late, late, now)
}

// stepRoomLocked is shedStep for one room: pressed when the room is late on
// batches sent after its last cut (cut again), late when it is late at
// all (do not grow), busy when a loop with its viewers is late at all,
// also where leaving messages out would not help (stay wide). room.mu
// must be held.
func (s *Server) stepRoomLocked(r *room, pressed, late, busy bool, now time.Time) {
	sh := &r.shed
	if busy { // pressed implies late, late implies busy
		sh.busyAt = now
	}
	inst := sh.rate // messages per second since the last step
	if dt := now.Sub(sh.stepAt).Seconds(); !sh.stepAt.IsZero() && dt > 0 {
		inst = float64(sh.seen) / dt
		sh.rate = 0.7*sh.rate + 0.3*inst
	}
	sh.seen, sh.stepAt = 0, now
	sh.wsum += r.written.Swap(0)
	if sh.wstart.IsZero() {
		sh.wsum, sh.wstart = 0, now // written before: an unknown span
	} else if el := now.Sub(sh.wstart); el >= shedWindow {
		if v := r.online.Load(); v > 0 {
			sh.achieved = float64(sh.wsum) / el.Seconds() / float64(v)
		}
		sh.wsum, sh.wstart = 0, now
	}
	every := s.shedCutEvery()
	switch {
	case pressed && !sh.wide:
		// First answer: fewer, bigger frames (flush.go reads shedding).
		sh.wide = true
		r.shedding.Store(true)
		s.m.shedRooms.Inc()
		sh.cutAt, sh.pressedAt, sh.grownAt, sh.fullAt = now, now, now, now
		s.cfg.Logger.Debug("gateway: room wide", "room", r.name, "rate", sh.rate)
	case pressed && now.Sub(sh.cutAt) >= every:
		base := max(sh.rate, inst) // the smoothed rate lags a rising one
		if sh.budget != 0 {
			base = min(base, sh.budget)
		}
		if sh.budget == 0 {
			sh.tokens, sh.at = 0, now
		}
		// Half of it, and below what the gateway managed to write while
		// late: one cut then reaches a rate it can keep up with.
		next := base / 2
		if sh.achieved > 0 {
			next = min(next, shedHeadroom*sh.achieved)
		}
		sh.budget = max(next, shedMin)
		sh.cutAt, sh.pressedAt, sh.grownAt = now, now, now
		s.cfg.Logger.Debug("gateway: shedding cut", "room", r.name, "budget", sh.budget, "rate", sh.rate)
	case pressed || late:
		sh.pressedAt = now
	case sh.budget != 0 && now.Sub(sh.pressedAt) >= shedCalm && now.Sub(sh.grownAt) >= every:
		sh.budget = sh.budget*shedGrow + shedMin
		sh.grownAt = now
		s.cfg.Logger.Debug("gateway: shedding grows", "room", r.name, "budget", sh.budget, "rate", sh.rate)
		if sh.budget >= 2*sh.rate {
			sh.budget, sh.fullAt = 0, now
		}
	case sh.wide && sh.budget == 0 && sh.cover == 0 && now.Sub(sh.busyAt) >= shedWideCalm && now.Sub(sh.fullAt) >= shedWideCalm:
		// Narrow only with nothing left to cover: a narrow room that goes
		// quiet is no longer visited by shedStep.
		sh.wide = false
		r.shedding.Store(false)
		s.m.shedRooms.Dec()
		s.cfg.Logger.Debug("gateway: room narrow", "room", r.name, "rate", sh.rate)
	}
	if sh.cover != 0 && now.Sub(sh.coverAt) >= shedCoverWait {
		// A batch was left out entirely and no batch followed: a batch of
		// no messages covers it. Posted under room.mu, so that it stays
		// in order with the dispatch goroutine's next batch.
		payload := protocol.EncodeThinned(r.name, sh.cover, sh.coverTo, nil)
		d := delivery{room: r.name, frame: textFrame(payload), first: sh.cover, last: sh.coverTo, batch: []protocol.Message{}}
		if s.ndeflate.Load() > 0 {
			d.zframe = smaller(s.shedZ.AppendFrame(nil, ws.OpText, payload), d.frame)
		}
		sh.cover, sh.coverTo = 0, 0
		s.post(r.loopsLocked(nil), d)
	}
}
