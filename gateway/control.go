// The control subscription: deletions, purges, notices (to a room, to every room, to one user) and kicks from moderation; runs on its own goroutine.

package gateway

import (
	"maps"
	"slices"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// runControl applies moderation events: deletions and purges retract
// messages on screens and in the ring (an unban ends its purges' reach),
// notices are shown, kicks close connections. Runs on its own goroutine.
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
	// Remembered before the ring is marked, also for a room without
	// viewers here: see retractMemory.
	switch ev.Op {
	case bus.ControlPurge:
		if ev.Until == 0 {
			ev.Until = time.Now().UnixMilli() // from a publisher that sets no bound
		}
		s.retracts.addPurge(ev.Room, ev.UID, ev.Until, time.Now())
	case bus.ControlDelete:
		s.retracts.addDelete(ev.Room, ev.Seqs, time.Now())
	case bus.ControlUnban:
		if ev.Until == 0 {
			ev.Until = time.Now().UnixMilli() // from a publisher that sets no time
		}
		s.retracts.endPurges(ev.Room, ev.UID, ev.Until)
		return
	}
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
			// Only what the purge covers: the user's messages sent
			// before its until (one sent after a time-out stays).
			for i := range r.ring {
				if r.ring[i].UID == ev.UID && r.ring[i].TS < ev.Until {
					r.ring[i].Deleted = true
				}
			}
			payload = protocol.Encode(protocol.Purge{Op: protocol.OpPurge, Room: ev.Room, UID: ev.UID, Until: ev.Until})
		case bus.ControlNotice:
			payload = protocol.Encode(protocol.Notice{Op: protocol.OpNotice, Room: ev.Room, Text: ev.Text})
		}
		r.mu.Unlock()
		s.broadcast(r, payload)
	case bus.ControlKick:
		s.kickUser(ev.UID, ev.Device, ev.Except, ev.Reason)
	case bus.ControlNoticeAll:
		s.noticeAll(ev.Text)
	case bus.ControlUserNotice:
		s.noticeUser(ev.UID, ev.Text)
	}
}

// noticeAll shows text to the viewers of every room on this gateway: a
// notice frame per room, as a room notice is sent.
func (s *Server) noticeAll(text string) {
	var all []*room
	s.rooms.each(func(r *room) { all = append(all, r) })
	for _, r := range all {
		s.broadcast(r, protocol.Encode(protocol.Notice{Op: protocol.OpNotice, Room: r.name, Text: text}))
	}
}

// userConns returns uid's connections on this gateway now.
func (s *Server) userConns(uid string) []*conn {
	s.usersMu.Lock()
	defer s.usersMu.Unlock()
	return slices.Collect(maps.Keys(s.users[uid]))
}

// noticeUser shows text to uid's connections on this gateway: one notice
// frame each, marked with uid and naming the connection's first room.
func (s *Server) noticeUser(uid, text string) {
	for _, c := range s.userConns(uid) {
		c.lp.execute(func() {
			if c.state != stateOpen {
				return
			}
			n := protocol.Notice{Op: protocol.OpNotice, Text: text, UID: uid}
			if len(c.rooms) > 0 {
				n.Room = c.rooms[0].lr.r.name
			}
			c.writeOwn(protocol.Encode(n))
		})
	}
}

// kickUser closes uid's connections on this gateway (only those of device,
// when set; except the one addressed "gateway/conn" by except).
func (s *Server) kickUser(uid, device, except, reason string) {
	if reason == "" {
		reason = "kicked by a moderator"
	}
	for _, c := range s.userConns(uid) {
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
