// The outbound path: every write to a viewer's socket, the outbound policy and closes; runs on the connection's event loop.

package gateway

import (
	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// frameClass is what a frame written to a connection carries; it decides
// what the outbound policy does with the frame (write).
type frameClass uint8

const (
	// classOwn is a frame for this connection alone (joined, history,
	// ack, reject, error, pong, kicked, reconnect; ping, pong and close
	// frames): written while the connection is open, without asking the
	// outbound policy.
	classOwn frameClass = iota
	// classRoom is a frame for a room's viewers outside the seq stream
	// (delete, purge, notice, online): the policy may close the
	// connection as slow, it never leaves the frame out.
	classRoom
	// classBatch is a batch of the seq stream: the policy leaves it out
	// past the soft cap or the budget (the viewer sees a gap and resumes)
	// or closes the connection as slow.
	classBatch
)

// streamClass is the class of a delivery whose seq range ends at last: a
// batch, or (last 0) a room's frame outside the seq stream.
func streamClass(last uint64) frameClass {
	if last != 0 {
		return classBatch
	}
	return classRoom
}

// outFrame is one frame for conn.write: the complete frame, its
// permessage-deflate form (nil: none; written instead to a connection that
// negotiated it) and its class. The zero class is classOwn.
type outFrame struct {
	frame, z []byte
	class    frameClass
}

// maxIOV bounds the frames handed to one writev.
const maxIOV = 256

// write is the one way frames reach c's socket: it applies the outbound
// policy once for all of fs (outboundState, sized by their frames; frames
// of classOwn alone skip it) and writes what it admits in one write or
// writev (at most maxIOV frames each). It returns outOK when every frame
// was written, outDropBatches when the policy left the batches out (the
// other frames were written), outClosed when nothing was written because
// c is not open (or the policy just closed it). Runs on the loop.
func (c *conn) write(fs ...outFrame) int {
	if c.state != stateOpen {
		return outClosed
	}
	policed, batches, size := false, false, 0
	for i := range fs {
		if fs[i].class != classOwn {
			policed = true
			size += len(fs[i].frame)
		}
		batches = batches || fs[i].class == classBatch
	}
	st := outOK
	if policed {
		if st = c.outboundState(batches, size); st == outClosed {
			return st
		}
	}
	if len(fs) == 1 {
		if st == outOK {
			c.writeRaw(fs[0].pick(c.deflate))
		}
		return st
	}
	iov := c.lp.iov[:0]
	for i := range fs {
		if st == outDropBatches && fs[i].class == classBatch {
			continue
		}
		if iov = append(iov, fs[i].pick(c.deflate)); len(iov) == maxIOV {
			c.writevRaw(iov)
			iov = iov[:0]
		}
	}
	if len(iov) > 0 {
		c.writevRaw(iov)
	}
	clear(iov)
	c.lp.iov = iov[:0]
	return st
}

// pick returns the form of f to write to a connection: z when it
// negotiated permessage-deflate (deflate) and there is one.
func (f *outFrame) pick(deflate bool) []byte {
	if deflate && f.z != nil {
		return f.z
	}
	return f.frame
}

// writeOwn sends payload, a JSON message for this connection alone, in a
// text frame (classOwn). Runs on the loop.
func (c *conn) writeOwn(payload []byte) {
	c.write(outFrame{frame: textFrame(payload)})
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

// writeRaw writes a complete frame (shared bytes: gnet copies what the
// socket does not take at once), past the outbound policy: only write
// calls it (and writevRaw, for several). Runs on the loop.
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

// writevRaw writes several complete frames in one writev, past the
// outbound policy: only write calls it. Runs on the loop.
func (c *conn) writevRaw(bs [][]byte) {
	if l := c.lp; l.corked == c {
		for _, b := range bs {
			l.cork = append(l.cork, b...)
		}
		return
	}
	_, _ = c.gc.Writev(bs)
	c.recount()
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
		c.write(outFrame{frame: ws.AppendClose(nil, code, reason)})
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
	c.writeOwn(protocol.Encode(protocol.Kicked{Op: protocol.OpKicked, Reason: reason}))
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

// textFrame wraps a JSON payload in one unmasked, final text frame.
func textFrame(payload []byte) []byte {
	return ws.AppendFrame(make([]byte, 0, len(payload)+10), ws.OpText, payload)
}
