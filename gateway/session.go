// One connection per user and device (Config.Sessions): registry calls off the loops; the refresher runs on its own goroutine.

package gateway

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/presence"
)

// kickReasonElsewhere is the reason a connection replaced by a newer login
// of the same user and device is given.
const kickReasonElsewhere = "logged in elsewhere"

// sessionCallTimeout bounds one call to the session registry, so a
// registry that stopped answering delays a claim, never a connection.
const sessionCallTimeout = 2 * time.Second

// session is one connection's hold on (uid, device) in the shared
// registry. uid, device, addr and c are immutable; claimed is guarded by
// sessions.mu. c is dereferenced only on its loop.
type session struct {
	uid, device, addr string
	c                 *conn
	claimed           bool // a Claim succeeded; until then the refresher claims
}

// sessions enforces one connection per (user, device) across gateways: a
// connection whose token names a device claims the session at handshake;
// when another connection held it, a kick naming that user and device and
// sparing the new connection goes out on the control stream, and whichever
// gateway holds the old connection closes it (kicked, then 4001). Holds
// are refreshed every TTL/3 and released on close; a gateway that dies
// leaves holds that expire after TTL.
//
// Every registry call runs off the event loops, bounded by
// sessionCallTimeout. When the registry fails (Redis down), connections
// are still served; their claims are retried by the refresher, and a
// second login is not detected until the registry answers again.
//
// sessions is safe for concurrent use.
type sessions struct {
	s     *Server
	reg   presence.Sessions
	ttl   time.Duration
	kicks bus.Publisher

	mu sync.Mutex          // guards m and every session's claimed
	m  map[uint64]*session // conn id → its hold
}

func newSessions(s *Server, reg presence.Sessions, ttl time.Duration) *sessions {
	return &sessions{s: s, reg: reg, ttl: ttl, kicks: s.cfg.Bus.Publisher(bus.StreamControl),
		m: make(map[uint64]*session)}
}

// connAddr is the registry address of connection id on this gateway, the
// form kicks name in Except.
func (s *Server) connAddr(id uint64) string {
	return s.cfg.ID + "/" + strconv.FormatUint(id, 10)
}

// open registers c, whose claims name a device, and claims its session on
// a goroutine. Runs on c's loop.
func (ss *sessions) open(c *conn) {
	se := &session{uid: c.claims.UID(), device: c.claims.Device, addr: ss.s.connAddr(c.id), c: c}
	ss.mu.Lock()
	ss.m[c.id] = se
	ss.mu.Unlock()
	go ss.claim(se)
}

// close forgets c's hold and releases it in the registry, on a goroutine.
// Runs on c's loop (OnClose).
func (ss *sessions) close(c *conn) {
	ss.mu.Lock()
	se := ss.m[c.id]
	delete(ss.m, c.id)
	ss.mu.Unlock()
	if se == nil {
		return
	}
	go ss.release(se)
}

func (ss *sessions) release(se *session) {
	ctx, cancel := context.WithTimeout(context.Background(), sessionCallTimeout)
	defer cancel()
	if err := ss.reg.Release(ctx, se.uid, se.device, se.addr); err != nil {
		ss.s.cfg.Logger.Debug("gateway: session release failed", "uid", se.uid, "err", err)
	}
}

// claim claims se's session and kicks the previous holder. It reports
// whether the registry answered. Runs on its own goroutine.
func (ss *sessions) claim(se *session) bool {
	ctx, cancel := context.WithTimeout(ss.s.ctx, sessionCallTimeout)
	prev, err := ss.reg.Claim(ctx, se.uid, se.device, se.addr, ss.ttl)
	cancel()
	if err != nil {
		ss.s.cfg.Logger.Debug("gateway: session claim failed; retrying later", "uid", se.uid, "err", err)
		return false
	}
	ss.mu.Lock()
	live := ss.m[se.c.id] == se
	if live {
		se.claimed = true
	}
	ss.mu.Unlock()
	if !live {
		// The connection closed while the claim was in flight: its
		// release may have run first, so release again.
		ss.release(se)
	}
	if prev != "" {
		ss.kick(se, prev)
	}
	return true
}

// kick asks every gateway to close se's user's other connections on that
// device (the previous holder prev among them).
func (ss *sessions) kick(se *session, prev string) {
	v, err := bus.Marshal(bus.Control{Op: bus.ControlKick, UID: se.uid, Device: se.device, Except: se.addr,
		Reason: kickReasonElsewhere, By: "system", TS: time.Now().UnixMilli()})
	if err != nil {
		return
	}
	ctx, cancel := context.WithTimeout(ss.s.ctx, 5*time.Second)
	defer cancel()
	if err := ss.kicks.Publish(ctx, bus.Record{Key: se.uid, Value: v}); err != nil {
		ss.s.cfg.Logger.Warn("gateway: publishing a session kick failed", "uid", se.uid, "prev", prev, "err", err)
		return
	}
	ss.s.m.sessionKicks.Inc()
}

// claimRetry is how often claims that failed (the registry was down) are
// tried again. Short, so that after an outage a connection that logged in
// meanwhile claims its session before a newer login could, and is not
// mistaken for the newer one.
const claimRetry = time.Second

// run refreshes the holds of live connections every ttl/3 and retries
// failed claims every claimRetry, until the server stops. A connection
// whose session another connection has claimed since is kicked. Runs on
// its own goroutine.
func (ss *sessions) run() {
	t := time.NewTicker(min(claimRetry, ss.ttl/3))
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-ss.s.ctx.Done():
			return
		case <-t.C:
		}
		refresh := time.Since(last) >= ss.ttl/3
		if refresh {
			last = time.Now()
		}
		ss.refreshAll(refresh)
	}
}

// refreshAll claims the sessions whose claim failed and, when refresh is
// set, refreshes the others.
func (ss *sessions) refreshAll(refresh bool) {
	ss.mu.Lock()
	all := make([]*session, 0, len(ss.m))
	claimed := make([]bool, 0, len(ss.m))
	for _, se := range ss.m {
		all = append(all, se)
		claimed = append(claimed, se.claimed)
	}
	ss.mu.Unlock()
	for i, se := range all {
		if ss.s.ctx.Err() != nil {
			return
		}
		if !claimed[i] {
			if !ss.claim(se) {
				return // the registry is down: try the rest next round
			}
			continue
		}
		if !refresh {
			continue
		}
		ctx, cancel := context.WithTimeout(ss.s.ctx, sessionCallTimeout)
		err := ss.reg.Refresh(ctx, se.uid, se.device, se.addr, ss.ttl)
		cancel()
		switch {
		case errors.Is(err, presence.ErrNotHolder):
			// A newer login holds the session; its kick may have been
			// missed (published while this gateway was not reading).
			c := se.c
			c.lp.execute(func() {
				if c.state == stateOpen {
					c.kick(kickReasonElsewhere)
				}
			})
		case err != nil:
			ss.s.cfg.Logger.Debug("gateway: session refresh failed", "err", err)
			return
		}
	}
}
