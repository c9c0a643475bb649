// The dispatch subscription: batches from the bus to the rings and the loops' outboxes; runs on its own goroutine.

package gateway

import (
	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// runDispatch reads every dispatch partition from the newest record on and
// hands each batch to the loops with viewers of its room. Runs on its own
// goroutine.
func (s *Server) runDispatch() {
	var loops []int
	var z ws.Deflater
	s.consume(bus.StreamDispatch, bus.ConsumerOptions{}, func(recs []bus.Record) {
		for _, rec := range recs {
			r := s.rooms.get(rec.Key)
			if r == nil {
				continue // no viewers here: skip without decoding
			}
			var b protocol.Batch
			err := bus.Unmarshal(rec.Value, &b)
			from, to := b.Range()
			if err != nil || b.Op != protocol.OpBatch || to == 0 || from > to {
				if b.Op != protocol.OpBatch && err == nil {
					// Other frames (notices from dispatch) go out as they are.
					s.broadcast(r, rec.Value)
					continue
				}
				s.cfg.Logger.Warn("gateway: bad dispatch record", "room", rec.Key, "err", err)
				continue
			}
			s.m.batches.Inc()
			r.mu.Lock()
			// Messages a purge covers that arrive after it (accepted
			// before the ban) go into the ring deleted and are not shown.
			// Checked under room.mu: the control goroutine remembers a
			// purge before it marks the ring, so each message is caught
			// by one or the other.
			purged := s.purges.mark(r.name, b.Msgs)
			fresh, first, last, ok := r.appendLocked(from, to, b.Msgs, s.cfg.RingSize)
			shown, cover, post := fresh, first, ok
			if ok {
				// The ring keeps every message; viewers get what the
				// gateway can write (see shed.go).
				shown, cover, post = s.shedLocked(r, fresh, first, last)
				r.offered.Add(int64(len(fresh)) * r.online.Load())
			}
			loops = r.loopsLocked(loops[:0])
			r.mu.Unlock()
			if !ok {
				continue // seen already (a redelivery)
			}
			if !post {
				continue // all left out: the next batch or shed step covers it
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
				d.zframe = smaller(z.AppendFrame(nil, ws.OpText, payload), d.frame)
			}
			if s.ncompact.Load() > 0 && len(fresh) > 0 {
				s.compactFrames(&d, &z)
			}
			s.post(loops, d)
		}
	})
}
