// Each loop's outbox, where other goroutines leave frames for the loop's viewers: post runs on any goroutine and schedules the loop's flush.

package gateway

import (
	"time"

	"github.com/danmaku-live/danmaku/pkg/protocol"
	"github.com/danmaku-live/danmaku/pkg/ws"
)

// delivery is one shared frame for the viewers of a room on one loop.
// first/last are the batch's seq range and msgs its message count; all 0
// for frames outside the seq stream (delete, purge, notice, online).
type delivery struct {
	room   string
	frame  []byte
	zframe []byte // the same message compressed (permessage-deflate); nil if none
	// cframe and czframe are the batch in the compact form
	// (protocol.EncodeCompact), plain and compressed, for connections
	// that chose it; nil when there is none (they get frame or zframe).
	cframe, czframe []byte
	first, last     uint64
	msgs            int
	batch           []protocol.Message // the batch's messages, for merging; nil outside the seq stream
	// queued is when it was queued on the loop (Unix ns, this gateway's
	// clock); takenAt is 1 + the member index at which a pass took it
	// early (takeMore), 0 if none did. Both set under the loop's out.mu.
	queued  int64
	takenAt int
}

// post queues d for the loop's viewers and schedules a flush unless one is
// already pending. It is safe to call from any goroutine.
func (l *loop) post(s *Server, d delivery) {
	l.out.mu.Lock()
	defer l.out.mu.Unlock()
	d.queued = time.Now().UnixNano()
	l.out.q = append(l.out.q, d)
	if !l.out.queued {
		l.out.queued = true
		l.scheduleLocked(s)
	}
}

// scheduleLocked queues a flush at out.notBefore, or at once if that has
// passed. Called with out.mu held.
func (l *loop) scheduleLocked(s *Server) {
	wait := time.Duration(l.out.notBefore - time.Now().UnixNano())
	if wait <= 0 {
		l.execute(func() { l.flush(s) })
		return
	}
	if l.out.timer == nil {
		l.out.timer = time.AfterFunc(wait, func() { l.execute(func() { l.flush(s) }) })
		return
	}
	l.out.timer.Reset(wait)
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

// smaller returns z, a frame compressed with permessage-deflate, when it is
// smaller than plain, the same frame uncompressed, else nil: each message
// may be sent compressed or not (RFC 7692), and a short batch compressed
// on its own (no context takeover) can come out larger.
func smaller(z, plain []byte) []byte {
	if len(z) >= len(plain) {
		return nil
	}
	return z
}

// compactFrames sets d.cframe and d.czframe: d's batch in the compact form
// (protocol.EncodeCompact), compressed with z too while a viewer takes
// compression. Runs on the dispatch goroutine (z is its deflater).
func (s *Server) compactFrames(d *delivery, z *ws.Deflater) {
	payload := compactPayload(d.room, d.first, d.last, d.batch)
	d.cframe = textFrame(payload)
	if s.ndeflate.Load() > 0 {
		d.czframe = smaller(z.AppendFrame(nil, ws.OpText, payload), d.cframe)
	}
}

// compactPayload encodes msgs, a batch of room covering first..last, in
// the compact form: with from/to when seqs of the range are left out.
func compactPayload(room string, first, last uint64, msgs []protocol.Message) []byte {
	to := uint64(0)
	if uint64(len(msgs)) != last-first+1 {
		to = last
	}
	return protocol.EncodeCompact(room, first, to, msgs)
}
