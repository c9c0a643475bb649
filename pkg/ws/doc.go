// Package ws is an RFC 6455 WebSocket codec for event-loop servers: pure
// parsing and encoding over byte slices, with no I/O, no goroutines and no
// blocking.
//
// The gateway (server role) feeds whatever bytes the event loop has read to
// ParseUpgrade and then to Reader.Next; both return ErrNeedMore when the
// input ends in the middle of a request or frame, and the caller simply
// calls again once more bytes have arrived. Clients and the load harness use
// the client role over any net.Conn: AppendClientHandshake,
// ParseHandshakeResponse, AppendClientFrame and a Reader with Client set.
//
// # Invariants
//
//   - Chunking never changes a result. Every check is made on bytes that are
//     present in full (the first two header bytes, then the extended length,
//     then the whole payload), so feeding a stream in one piece, split at
//     any byte boundary or one byte at a time yields the same messages and
//     the same error. The tests assert this for every conformance case and
//     the fuzz targets for random input.
//   - Next consumes at most one frame and never modifies bytes it does not
//     consume: a partial frame, or a frame it rejects, stays intact in the
//     caller's buffer. Payloads of consumed unfragmented frames are
//     unmasked in place; fragments are unmasked in the reassembly buffer.
//   - Limits are enforced from headers: a data frame that would push its
//     message past Reader.MaxMessage is rejected with CloseMessageTooBig
//     before its payload is waited for or buffered, and ParseUpgrade gives
//     up with 431 once the header block exceeds its limit.
//   - Unfragmented messages and control frames are parsed without
//     allocation: Message.Payload aliases the caller's buffer. Only a
//     fragmented message allocates, for its reassembly buffer, which the
//     Reader drops again once the message is complete, so an idle Reader
//     holds no buffer (three words per connection).
//   - Text messages are validated as UTF-8 incrementally across fragments:
//     a fragment that cannot be the start of valid text fails with
//     CloseInvalidPayload at once, and an incomplete rune may straddle
//     fragments.
//   - Protocol violations are reported as *CloseError carrying the close
//     code to send (1002, 1007 or 1009); rejected upgrade requests as
//     *HandshakeError carrying the HTTP status to answer with.
//
// # Concurrency
//
// A Reader belongs to one connection and is not safe for concurrent use;
// in the gateway it is touched only from its connection's event loop. The
// Append functions and ParseUpgrade are pure and safe to call from any
// goroutine. Frames encoded once with AppendFrame may be written to many
// connections: server frames are unmasked, so the bytes are identical for
// every receiver.
//
// # Extensions
//
// No extension is negotiated yet. Reader.AllowRSV1 and Message.Compressed
// exist so that permessage-deflate can be added without changing the
// parser; UTF-8 validation of compressed text is then up to the caller,
// after inflating.
package ws
