// Join and leave of a room: run on the connection's event loop.

package gateway

import (
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
)

// join adds the connection to room and sends joined + history: the newest
// HistoryOnJoin messages, or with resume every message after that seq.
// History comes from the room's ring when it covers the request, else from
// a fill of the room (fill.go), loaded off the loop while batches for the
// viewer are queued.
// A join of a room the connection is already in acts as a resume.
// Runs on the loop.
func (c *conn) join(name string, resume *uint64) {
	s := c.s
	if resume != nil && *resume == 0 {
		// "Everything after nothing": a viewer that has seen nothing
		// gets what a join without resume gets (the newest
		// HistoryOnJoin messages), not the room from seq 1.
		resume = nil
	}
	if m := c.member(name); m != nil {
		c.removeMember(m)
	}
	if len(c.rooms) >= s.cfg.MaxRoomsPerConn {
		c.writeOwn(protocol.EncodeError(&protocol.Error{Code: protocol.CodeInvalid, Message: "too many rooms on one connection"}))
		return
	}
	var r *room
	for {
		r = s.rooms.getOrCreate(name)
		r.mu.Lock()
		if !r.dead {
			break
		}
		r.mu.Unlock()
	}
	// r.mu is held: register and snapshot atomically with respect to
	// the dispatch goroutine (see room).
	lr := c.lp.rooms[name]
	if lr == nil {
		lr = &loopRoom{r: r}
		c.lp.rooms[name] = lr
	}
	m := &member{c: c, lr: lr, pos: len(lr.members)}
	m.observer = c.observe && c.claims != nil && c.claims.CanModerate(name)
	lr.members = append(lr.members, m)
	c.rooms = append(c.rooms, m)
	r.viewers[c.lp.idx]++
	if m.observer {
		r.observers.Add(1)
	}
	if r.online.Add(1) == 1 {
		s.m.rooms.Inc()
		if s.aff != nil {
			// The room's partition is read (from now on, if it was
			// not): its ring must be of the current reading period.
			r.adoptEpochLocked(s.aff.enter(name))
		}
	}

	if c.awaitReadLocked(r, m, resume) {
		return
	}
	last := r.last
	after := r.joinAfterLocked(resume, s.cfg.HistoryOnJoin)
	if msgs, ok := r.ringHistoryLocked(after, resume, s.cfg.HistoryOnJoin); ok {
		online := r.onlineCount()
		r.mu.Unlock()
		m.from = last
		s.m.historyLoads.WithLabelValues("memory").Inc()
		c.writeOwn(protocol.Encode(protocol.Joined{Op: protocol.OpJoined, Room: name, Seq: last, Online: online}))
		c.writeOwn(protocol.EncodeHistory(name, msgs, true))
		return
	}
	m.catching = true
	m.from = last
	// Joins the ring does not serve (a restarted gateway, a storm, a room
	// filling up, an old resume point) wait on a fill of the room: one
	// store load serves all the joins that need about the same history
	// (fill.go).
	c.waitFillUnlock(r, m, resume)
}

// waitFillUnlock makes m's join wait on a fill of r and releases r.mu,
// which must be held. Runs on the loop.
func (c *conn) waitFillUnlock(r *room, m *member, resume *uint64) {
	f := r.waitFillLocked(fillWaiter{c: c, m: m, resume: resume}, &c.s.cfg)
	r.mu.Unlock()
	if f != nil {
		c.s.runFill(r, f)
	}
}

// awaitReadLocked holds m's join, with Config.Affinity, while r's
// partition, just read again, has not been read up to where its reading
// went live (the ring then holds what the history store may not have yet;
// affinity.go): it reports true, having released r.mu, and joinCaughtUp
// answers the join later. r.mu must be held. Runs on the loop.
func (c *conn) awaitReadLocked(r *room, m *member, resume *uint64) bool {
	if c.s.aff == nil {
		return false
	}
	m.catching, m.from = true, r.last
	if c.s.aff.await(r.name, r.epoch, func() { c.lp.execute(func() { c.joinCaughtUp(r, m, resume) }) }) {
		r.mu.Unlock()
		return true
	}
	m.catching = false
	return false
}

// joinCaughtUp answers a join that waited for its room's partition to be
// read up to where its reading went live: from the ring when it covers
// the history, else from a fill; the batches queued meanwhile follow.
// Runs on the loop.
func (c *conn) joinCaughtUp(r *room, m *member, resume *uint64) {
	s := c.s
	if c.state != stateOpen || c.member(r.name) != m {
		return
	}
	r.mu.Lock()
	after := r.joinAfterLocked(resume, s.cfg.HistoryOnJoin)
	if msgs, ok := r.ringHistoryLocked(after, resume, s.cfg.HistoryOnJoin); ok {
		m.from = max(m.from, r.last)
		r.mu.Unlock()
		s.m.historyLoads.WithLabelValues("memory").Inc()
		c.finishJoin(m, r.name, resume, msgs, true)
		return
	}
	c.waitFillUnlock(r, m, resume)
}

// leave removes the connection from room. Runs on the loop.
func (c *conn) leave(name string) {
	if m := c.member(name); m != nil {
		c.removeMember(m)
	}
}

// removeMember undoes a join. Runs on the loop.
func (c *conn) removeMember(m *member) {
	for i, mm := range c.rooms {
		if mm == m {
			c.rooms = append(c.rooms[:i], c.rooms[i+1:]...)
			break
		}
	}
	lr := m.lr
	last := len(lr.members) - 1
	lr.members[m.pos] = lr.members[last]
	lr.members[m.pos].pos = m.pos
	lr.members[last] = nil
	lr.members = lr.members[:last]
	r := lr.r
	if len(lr.members) == 0 {
		delete(c.lp.rooms, r.name)
	}
	r.mu.Lock()
	r.viewers[c.lp.idx]--
	if m.observer {
		r.observers.Add(-1)
	}
	if r.online.Add(-1) == 0 {
		r.idleSince = time.Now()
		c.s.m.rooms.Dec()
		if c.s.aff != nil {
			c.s.aff.exit(r.name)
		}
	}
	r.mu.Unlock()
	m.pending = nil
}

// member returns the membership in room, or nil.
func (c *conn) member(room string) *member {
	for _, m := range c.rooms {
		if m.lr.r.name == room {
			return m
		}
	}
	return nil
}
