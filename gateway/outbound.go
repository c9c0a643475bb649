// The outbound path: every write to a viewer's socket, the outbound policy and closes; runs on the connection's event loop.

package gateway

import (
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// write sends one text frame with payload. Runs on the loop.
func (c *conn) write(payload []byte) {
	if c.state != stateOpen {
		return
	}
	buf := ws.AppendFrameHeader(make([]byte, 0, len(payload)+10), ws.OpText, true, len(payload))
	c.writeRaw(append(buf, payload...))
}

// Outbound states (see outboundState).
const (
	outOK          = iota // write
	outDropBatches        // past the soft cap: drop batches, write the rest
	outClosed             // not open, or just closed as a slow consumer
)

// outboundState applies the outbound policy before a write: past the soft
// cap batches are dropped (the viewer sees a gap and resumes), past the
// hard cap, or above the soft cap for SlowTimeout, the viewer is closed as
// slow. While the process is over its OutboundBudget, batches are also
// dropped when the backlog with this write (size bytes) would pass a
// sixteenth of the soft cap: a loop that fell behind hands every viewer one
// large frame per pass, so the write, not the backlog before it, is what
// would grow the process past its budget — except for a room the gateway
// sheds (loop.exempt): shedding answers the budget for all its viewers
// alike. batches tells whether the write holds batches. Runs on the loop.
func (c *conn) outboundState(batches bool, size int) int {
	if c.state != stateOpen {
		return outClosed
	}
	s := c.s
	out := c.count(c.gc.OutboundBuffered())
	if out <= s.cfg.SoftOutbound {
		c.overSoft = 0
		if batches && out+size > s.cfg.SoftOutbound/16 && s.overBudget() && !c.lp.exempt {
			return outDropBatches
		}
		return outOK
	}
	if c.overSoft == 0 {
		c.overSoft = s.nowMs()
	}
	if out > s.cfg.HardOutbound || s.nowMs()-c.overSoft > s.cfg.SlowTimeout.Milliseconds() {
		s.m.slowConsumers.Inc()
		// The close frame may never reach a viewer that does not read;
		// it is queued for one that merely reads slowly.
		c.closeWith(protocol.CloseSlowConsumer, "slow consumer", "slow_consumer")
		_ = c.gc.Close() // it does not read: no point waiting for its close frame
		return outClosed
	}
	if batches {
		return outDropBatches
	}
	return outOK
}

// overBudget reports whether the viewers' outbound backlogs sum above
// Config.OutboundBudget.
func (s *Server) overBudget() bool {
	return s.cfg.OutboundBudget > 0 && s.outbound.Load() > s.cfg.OutboundBudget
}

// writeFrame writes a complete, shared WebSocket frame, applying the
// outbound policy (droppable frames are batches). It reports whether the
// frame was written. Runs on the loop.
func (c *conn) writeFrame(frame []byte, droppable bool) bool {
	switch c.outboundState(droppable, len(frame)) {
	case outOK:
		c.writeRaw(frame)
		return true
	case outDropBatches:
		c.s.m.dropped.Inc()
	}
	return false
}

// writeRaw writes complete frames (shared bytes: gnet copies what the
// socket does not take at once). Runs on the loop.
func (c *conn) writeRaw(b []byte) {
	if l := c.lp; l.corked == c {
		l.cork = append(l.cork, b...)
		return
	}
	_, _ = c.gc.Write(b)
	c.recount()
}

// recount counts c's backlog after a write, so the process's sum sees what
// a long pass adds before the pass comes back to c. A write that failed
// closed c and took it out of the loop: nothing to count. Runs on the loop.
func (c *conn) recount() {
	if c.pos >= 0 {
		c.count(c.gc.OutboundBuffered())
	}
}

// count records that c has out bytes of outbound backlog, adding the change
// to the server's sum, and returns out. Runs on the loop.
func (c *conn) count(out int) int {
	if d := int64(out) - c.counted; d != 0 {
		c.s.outbound.Add(d)
		c.counted = int64(out)
	}
	return out
}

// writeShared writes a frame shared by many viewers: z, its compressed
// form, if c took permessage-deflate, else plain. Runs on the loop.
func (c *conn) writeShared(plain, z []byte) {
	if c.deflate {
		c.writeRaw(z)
	} else {
		c.writeRaw(plain)
	}
}

// writeRawv writes several complete frames in one writev. Runs on the loop.
func (c *conn) writeRawv(bs [][]byte) {
	if l := c.lp; l.corked == c {
		for _, b := range bs {
			l.cork = append(l.cork, b...)
		}
		return
	}
	_, _ = c.gc.Writev(bs)
	c.recount()
}

func (c *conn) writeControl(op ws.OpCode, payload []byte) {
	if c.state != stateOpen {
		return
	}
	c.writeRaw(ws.AppendFrame(nil, op, payload))
}

// closeWith sends a close frame and closes the connection once the client
// answers with its own close frame, or after closeLinger. A close the
// client started (its close frame already read) closes at once.
// Runs on the loop.
func (c *conn) closeWith(code uint16, reason, metric string) {
	if c.state == stateClosing {
		return
	}
	wasOpen := c.state == stateOpen
	if wasOpen {
		c.writeRaw(ws.AppendClose(nil, code, reason))
	}
	c.state = stateClosing
	c.s.m.closes.WithLabelValues(metric).Inc()
	if !wasOpen || metric == "client" {
		c.uncorkFirst()
		_ = c.gc.Close()
		return
	}
	c.rd.Reset()
	c.lingerUntil = c.s.nowMs() + closeLinger.Milliseconds()
}

// uncorkFirst writes what c gathered in its loop's cork before it is
// closed. Runs on the loop.
func (c *conn) uncorkFirst() {
	if c.lp.corked == c {
		c.lp.uncork()
	}
}

// abort closes without a close frame (handshake timeout).
func (c *conn) abort(metric string) {
	if c.state == stateClosing {
		return
	}
	c.state = stateClosing
	c.s.m.closes.WithLabelValues(metric).Inc()
	c.uncorkFirst()
	_ = c.gc.Close()
}

// kick tells the client why and closes with 4001.
func (c *conn) kick(reason string) {
	c.write(protocol.Encode(protocol.Kicked{Op: protocol.OpKicked, Reason: reason}))
	c.closeWith(protocol.CloseKicked, reason, "kicked")
}

// uncork writes what the corked connection gathered. Runs on the loop.
func (l *loop) uncork() {
	c := l.corked
	l.corked = nil
	if c != nil && len(l.cork) > 0 {
		_, _ = c.gc.Write(l.cork)
	}
	if cap(l.cork) > 64<<10 {
		l.cork = nil // a long history: do not keep its buffer
	} else {
		l.cork = l.cork[:0]
	}
}
