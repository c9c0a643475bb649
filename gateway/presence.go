// The presence reporter: counts to the presence store, online frames to viewers; runs on its own goroutine.

package gateway

import (
	"context"
	"time"

	"github.com/danmaku-live/danmaku/pkg/presence"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

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
