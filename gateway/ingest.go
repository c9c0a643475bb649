// The ingest publisher: clients' sends to the bus in batches; runs on its own goroutine.

package gateway

import (
	"context"
	"time"

	"github.com/danmaku-live/danmaku/pkg/bus"
	"github.com/danmaku-live/danmaku/pkg/protocol"
)

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
