package gateway

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// consume opens a consumer and feeds what it fetches to handle until the
// server stops, reopening it after errors with a backoff. Runs on its own
// goroutine.
func (s *Server) consume(stream string, opts bus.ConsumerOptions, handle func([]bus.Record)) {
	bus.Follow(s.ctx, s.cfg.Bus, stream, opts, handle, func(err error) {
		s.cfg.Logger.Warn("gateway: consumer failed, retrying", "stream", stream, "err", err)
	})
}

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
			if len(b.Msgs) > 0 {
				d.born = s.born(b.Msgs[0].TS)
			}
			if s.ndeflate.Load() > 0 {
				d.zframe = smaller(z.AppendFrame(nil, ws.OpText, payload), d.frame)
			}
			s.post(loops, d)
		}
	})
}

// broadcast sends a frame that is not part of the seq stream to every local
// viewer of r.
func (s *Server) broadcast(r *room, payload []byte) {
	r.mu.Lock()
	loops := r.loopsLocked(nil)
	r.mu.Unlock()
	s.post(loops, delivery{room: r.name, frame: textFrame(payload)})
}

// post queues d on the loops (by index) with viewers of its room.
func (s *Server) post(loops []int, d delivery) {
	if len(loops) == 0 {
		return
	}
	all := s.loopList()
	for _, idx := range loops {
		for _, l := range all {
			if l.idx == idx {
				l.post(s, d)
			}
		}
	}
}

// runControl applies moderation events: deletions and purges retract
// messages on screens and in the ring, notices are shown, kicks close
// connections. Runs on its own goroutine.
func (s *Server) runControl() {
	s.consume(bus.StreamControl, bus.ConsumerOptions{}, func(recs []bus.Record) {
		for _, rec := range recs {
			var ev bus.Control
			if err := bus.Unmarshal(rec.Value, &ev); err != nil {
				s.cfg.Logger.Warn("gateway: bad control record", "err", err)
				continue
			}
			s.applyControl(ev)
		}
	})
}

func (s *Server) applyControl(ev bus.Control) {
	switch ev.Op {
	case bus.ControlDelete, bus.ControlPurge, bus.ControlNotice:
		r := s.rooms.get(ev.Room)
		if r == nil {
			return
		}
		var payload []byte
		r.mu.Lock()
		switch ev.Op {
		case bus.ControlDelete:
			for i := range r.ring {
				for _, seq := range ev.Seqs {
					if r.ring[i].Seq == seq {
						r.ring[i].Deleted = true
					}
				}
			}
			payload = protocol.Encode(protocol.Delete{Op: protocol.OpDelete, Room: ev.Room, Seqs: ev.Seqs})
		case bus.ControlPurge:
			for i := range r.ring {
				if r.ring[i].UID == ev.UID {
					r.ring[i].Deleted = true
				}
			}
			payload = protocol.Encode(protocol.Purge{Op: protocol.OpPurge, Room: ev.Room, UID: ev.UID})
		case bus.ControlNotice:
			payload = protocol.Encode(protocol.Notice{Op: protocol.OpNotice, Room: ev.Room, Text: ev.Text})
		}
		r.mu.Unlock()
		s.broadcast(r, payload)
	case bus.ControlKick:
		s.kickUser(ev.UID, ev.Device, ev.Except, ev.Reason)
	}
}

// kickUser closes uid's connections on this gateway (only those of device,
// when set; except the one addressed "gateway/conn" by except).
func (s *Server) kickUser(uid, device, except, reason string) {
	if reason == "" {
		reason = "kicked by a moderator"
	}
	s.usersMu.Lock()
	var victims []*conn
	for c := range s.users[uid] {
		victims = append(victims, c)
	}
	s.usersMu.Unlock()
	for _, c := range victims {
		if except != "" && except == s.connAddr(c.id) {
			continue
		}
		c.lp.execute(func() {
			if c.state != stateOpen || c.claims == nil {
				return
			}
			if device != "" && c.claims.Device != device {
				return
			}
			c.kick(reason)
		})
	}
}

// runReplies routes acks and rejects from logic to the sender's loop.
// Runs on its own goroutine.
func (s *Server) runReplies() {
	s.consume(bus.StreamReply, bus.ConsumerOptions{Key: s.cfg.ID}, func(recs []bus.Record) {
		for _, rec := range recs {
			var rp bus.Reply
			if err := bus.Unmarshal(rec.Value, &rp); err != nil || rp.Gateway != s.cfg.ID {
				continue
			}
			s.reply(rp)
		}
	})
}

// reply writes rp to its connection, if it is still open.
func (s *Server) reply(rp bus.Reply) {
	v, ok := s.senders.Load(rp.Conn)
	if !ok {
		return // the sender left; its retry will be answered from dedupe
	}
	var payload []byte
	switch {
	case rp.Code != "":
		var retry time.Duration
		if rp.RetryAfterMs > 0 {
			retry = time.Duration(rp.RetryAfterMs) * time.Millisecond
		}
		payload = protocol.EncodeReject(rp.ID, rp.Room, &protocol.Error{Code: rp.Code, Message: rp.Message, RetryAfter: retry})
	default:
		payload = protocol.Encode(protocol.Ack{Op: protocol.OpAck, ID: rp.ID, Room: rp.Room, Seq: rp.Seq, Held: rp.Held})
	}
	c := v.(*conn)
	c.lp.execute(func() { c.write(payload) })
}

// runIngest publishes queued sends in batches until the queue is closed by
// Shutdown. A failed publish is answered "unavailable" so the sender
// retries. Runs on its own goroutine.
func (s *Server) runIngest() {
	pub := s.cfg.Bus.Publisher(bus.StreamIngest)
	batch := make([]bus.Ingest, 0, 256)
	recs := make([]bus.Record, 0, 256)
	for in := range s.ingest {
		batch = append(batch[:0], in)
	drain:
		for len(batch) < cap(batch) {
			select {
			case in, ok := <-s.ingest:
				if !ok {
					break drain
				}
				batch = append(batch, in)
			default:
				break drain
			}
		}
		recs = recs[:0]
		for _, in := range batch {
			v, err := bus.Marshal(in)
			if err != nil {
				continue
			}
			recs = append(recs, bus.Record{Key: in.Room, Value: v})
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := pub.Publish(ctx, recs...)
		cancel()
		if err != nil {
			s.cfg.Logger.Warn("gateway: publishing sends failed", "n", len(batch), "err", err)
			for _, in := range batch {
				s.reply(bus.Reply{Gateway: s.cfg.ID, Conn: in.Conn, ID: in.ID, Room: in.Room,
					Code: protocol.CodeUnavailable, Message: "pipeline unavailable, retry", RetryAfterMs: 1000})
			}
		}
	}
}

// runPresence reports this gateway's counts, refreshes the global counts
// and sends online frames when a room's count changed; it also forgets
// rooms idle for a minute. Runs on its own goroutine.
func (s *Server) runPresence() {
	t := time.NewTicker(s.cfg.PresenceInterval)
	defer t.Stop()
	sweeps := 0
	for {
		select {
		case <-s.ctx.Done():
			return
		case <-t.C:
		}
		counts := make(map[string]int)
		var active []*room
		s.rooms.each(func(r *room) {
			if r.online.Load() > 0 {
				if n := r.viewerCount(); n > 0 {
					counts[r.name] = int(n)
				}
				active = append(active, r)
			}
		})
		if p := s.cfg.Presence; p != nil {
			ctx, cancel := context.WithTimeout(s.ctx, s.cfg.PresenceInterval)
			if err := p.Report(ctx, s.cfg.ID, counts, 3*s.cfg.PresenceInterval); err != nil {
				s.cfg.Logger.Debug("gateway: presence report failed", "err", err)
			}
			names := make([]string, len(active))
			for i, r := range active {
				names[i] = r.name
			}
			if ns, err := presence.OnlineMany(ctx, p, names); err == nil {
				for i, r := range active {
					r.global.Store(int64(ns[i]))
				}
			} else {
				s.cfg.Logger.Debug("gateway: presence online failed", "rooms", len(names), "err", err)
			}
			cancel()
		}
		now := time.Now()
		var viewers int64
		for _, r := range active {
			viewers += r.online.Load()
		}
		every, send := s.onlineEvery(viewers)
		for _, r := range active {
			n := int64(r.onlineCount())
			if !send || r.sent.Load() == n || now.Sub(r.sentAt) < every {
				continue
			}
			r.sent.Store(n)
			r.sentAt = now
			s.broadcast(r, protocol.Encode(protocol.Online{Op: protocol.OpOnline, Room: r.name, Count: int(n)}))
		}
		if sweeps++; sweeps%5 == 0 {
			s.rooms.sweep(time.Now(), time.Minute)
		}
	}
}

// onlineEvery is the shortest interval between online frames to a viewer,
// with viewers on this gateway (Config.OnlineRate); send is false when
// online frames are off.
func (s *Server) onlineEvery(viewers int64) (every time.Duration, send bool) {
	if s.cfg.OnlineRate < 0 {
		return 0, false
	}
	return max(s.cfg.PresenceInterval, time.Duration(viewers)*time.Second/time.Duration(s.cfg.OnlineRate)), true
}

// gnetLogger routes gnet's logs to slog.
type gnetLogger struct{ l *slog.Logger }

func (g gnetLogger) Debugf(f string, a ...any) { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Infof(f string, a ...any)  { g.l.Debug(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Warnf(f string, a ...any)  { g.l.Warn(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Errorf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
func (g gnetLogger) Fatalf(f string, a ...any) { g.l.Error(fmt.Sprintf(f, a...)) }
