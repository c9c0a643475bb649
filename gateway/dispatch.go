// The dispatch subscription: batches from the bus to the rings and the loops' outboxes; runs on its own goroutine.

package gateway

import (
	"context"
	"errors"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// dispatchScratch is the dispatch goroutine's reusable state.
type dispatchScratch struct {
	loops []int
	z     ws.Deflater
}

// runDispatch reads every dispatch partition from the newest record on
// (with Config.Affinity, only the partitions of its rooms:
// runAffineDispatch) and hands each batch to the loops with viewers of its
// room. Runs on its own goroutine.
func (s *Server) runDispatch() {
	if s.aff != nil {
		s.runAffineDispatch()
		return
	}
	var sc dispatchScratch
	s.consume(bus.StreamDispatch, bus.ConsumerOptions{}, func(recs []bus.Record) {
		s.countRead(recs)
		for _, rec := range recs {
			s.dispatchRecord(rec, 0, true, &sc)
		}
	})
}

// runAffineDispatch reads the dispatch partitions the affinity set wants
// (affinity.go), reopening the consumer after a failure (50 ms doubling to
// 5 s). Runs on the dispatch goroutine.
func (s *Server) runAffineDispatch() {
	backoff := 50 * time.Millisecond
	for s.ctx.Err() == nil {
		pc, err := s.aff.ps.PartitionConsumer(bus.StreamDispatch)
		if err == nil {
			err = s.readAssigned(pc)
			_ = pc.Close()
			backoff = 50 * time.Millisecond
		}
		if s.ctx.Err() != nil || errors.Is(err, bus.ErrClosed) {
			return
		}
		s.cfg.Logger.Warn("gateway: consumer failed, retrying", "stream", bus.StreamDispatch, "err", err)
		select {
		case <-s.ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 5*time.Second)
	}
}

// readAssigned applies the affinity set to pc and handles what it reads,
// each record in the reading period its partition was assigned for, until
// the server stops or pc fails. Runs on the dispatch goroutine.
func (s *Server) readAssigned(pc bus.PartitionConsumer) error {
	a := s.aff
	cur := make([]assigned, a.n)
	var sc dispatchScratch
	for {
		ctx, cancel := a.fetchContext(s.ctx)
		if ctx == nil {
			if err := a.apply(pc, cur); err != nil {
				return err
			}
			continue
		}
		recs, err := pc.Fetch(ctx)
		a.fetched()
		cancel()
		switch {
		case s.ctx.Err() != nil:
			return nil
		case errors.Is(err, context.Canceled):
			continue // woken: the set changed
		case err != nil:
			return err
		}
		s.countRead(recs)
		for _, rec := range recs {
			as := cur[rec.Partition]
			s.dispatchRecord(rec, as.epoch, rec.Offset >= as.live, &sc)
		}
		a.readUpTo(recs, cur)
	}
}

// countRead counts a fetch's records and bytes.
func (s *Server) countRead(recs []bus.Record) {
	n := 0
	for i := range recs {
		n += len(recs[i].Key) + len(recs[i].Value)
	}
	s.m.dispatchRecords.Add(float64(len(recs)))
	s.m.dispatchBytes.Add(float64(n))
}

// dispatchRecord handles one dispatch record read in reading period epoch
// of its partition (0 without affinity): a batch goes to its room's ring
// and to the loops with viewers; another frame (a notice) only when
// current (not replayed by a new period's rewind). Runs on the dispatch goroutine.
func (s *Server) dispatchRecord(rec bus.Record, epoch uint64, current bool, sc *dispatchScratch) {
	r := s.rooms.get(rec.Key)
	if r == nil {
		return // no viewers here: skip without decoding
	}
	var b protocol.Batch
	err := bus.Unmarshal(rec.Value, &b)
	from, to := b.Range()
	if err != nil || b.Op != protocol.OpBatch || to == 0 || from > to {
		if b.Op != protocol.OpBatch && err == nil {
			// Other frames (notices from dispatch) go out as they are.
			if current {
				s.broadcast(r, rec.Value)
			}
			return
		}
		s.cfg.Logger.Warn("gateway: bad dispatch record", "room", rec.Key, "err", err)
		return
	}
	s.m.batches.Inc()
	if len(b.Msgs) > 0 && b.Msgs[0].TS > 0 {
		s.m.dispatchAge.Observe(max(float64(time.Now().UnixMilli()-b.Msgs[0].TS), 0) / 1e3)
	}
	r.mu.Lock()
	if !r.adoptEpochLocked(epoch) {
		r.mu.Unlock()
		return // read before the room's current period began
	}
	// Messages a purge or delete covers that arrive after it (accepted
	// before the ban, or deleted while on their way here) go into the ring
	// deleted and are not shown. Checked under room.mu: the control
	// goroutine remembers a retraction before it marks the ring, so each
	// message is caught by one or the other.
	purged := s.retracts.mark(r.name, b.Msgs)
	fresh, first, last, ok := r.appendLocked(from, to, b.Msgs, s.cfg.RingSize)
	shown, cover, post := fresh, first, ok
	if ok {
		// The ring keeps every message; viewers get what the
		// gateway can write (see shed.go).
		shown, cover, post = s.shedLocked(r, fresh, first, last)
		r.offered.Add(int64(len(fresh)) * r.online.Load())
	}
	sc.loops = r.loopsLocked(sc.loops[:0])
	r.mu.Unlock()
	if !ok || !post {
		// Seen already (a redelivery, or the overlap of a new period
		// with the ring), or all left out: the next batch or shed step
		// covers it.
		return
	}
	if purged > 0 {
		shown = live(shown)
	}
	payload := rec.Value
	switch {
	case cover != first || len(shown) != len(fresh):
		payload = protocol.EncodeThinned(r.name, cover, last, shown)
		first, fresh = cover, shown
	case b.To != 0 && (first != from || len(fresh) != len(b.Msgs)):
		payload = protocol.EncodeThinned(r.name, first, last, fresh)
	case b.To == 0 && len(fresh) != len(b.Msgs):
		payload = protocol.EncodeBatch(r.name, fresh)
	}
	if fresh == nil {
		fresh = []protocol.Message{} // in the seq stream all the same
	}
	d := delivery{room: r.name, frame: textFrame(payload), first: first, last: last, msgs: len(fresh), batch: fresh}
	if s.ndeflate.Load() > 0 {
		d.zframe = smaller(sc.z.AppendFrame(nil, ws.OpText, payload), d.frame)
	}
	if s.ncompact.Load() > 0 && len(fresh) > 0 {
		s.compactFrames(&d, &sc.z)
	}
	s.post(sc.loops, d)
}
