// The reply subscription: acks and rejects from logic to the sender's loop; runs on its own goroutine.

package gateway

import (
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

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
	c.lp.execute(func() { c.writeOwn(payload) })
}
