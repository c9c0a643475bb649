// Package bus moves records between the stages of the pipeline: gateways
// publish sends to the ingest stream, logic publishes accepted messages and
// replies, dispatch publishes encoded batches that every gateway reads, and
// moderation publishes control events that every stage applies.
//
// A stream is split into partitions; records with the same key land in the
// same partition and keep their order. Consumers in a group share a stream's
// partitions (one owner per partition at a time) and commit offsets
// explicitly, so a stage commits only after its output is safely published
// (at-least-once). Consumers without a group read every partition from the
// newest record on.
//
// Memory is the embedded default; pkg/bus/kafkabus runs the same streams on
// Kafka. Both pass the shared suite in pkg/bus/bustest.
package bus

import (
	"context"
	"errors"
)

// Streams of the pipeline. Backends map them to their own names (Kafka
// topics get a configurable prefix).
const (
	// StreamIngest carries Ingest records from gateways (and the HTTP
	// publish API) to logic, keyed by room.
	StreamIngest = "ingest"
	// StreamAccepted carries accepted protocol.Message records (with seq)
	// from logic to dispatch and the history writer, keyed by room.
	StreamAccepted = "accepted"
	// StreamDispatch carries encoded frames (batch, delete, purge, notice)
	// from dispatch to every gateway, keyed by room. See Broadcast.
	StreamDispatch = "dispatch"
	// StreamReply carries Reply records (ack / reject) from logic back to
	// the sender's gateway, keyed by gateway id.
	StreamReply = "reply"
	// StreamControl carries Control records (bans, deletions, settings,
	// kicks) from moderation to every logic worker and gateway.
	StreamControl = "control"
)

// Errors.
var (
	ErrClosed = errors.New("bus: closed")
)

// Record is one keyed value on a stream.
type Record struct {
	// Key selects the partition (room id, or gateway id for replies).
	Key string
	// Value is the payload; its encoding depends on the stream (JSON).
	Value []byte
	// Partition and Offset are set on records a Consumer returns, and
	// identify the record for Commit.
	Partition int
	Offset    int64
}

// Bus opens publishers and consumers on named streams. Implementations are
// safe for concurrent use.
type Bus interface {
	// Publisher returns a publisher for stream.
	Publisher(stream string) Publisher
	// Consumer opens a consumer of stream. Close it when done.
	Consumer(stream string, opts ConsumerOptions) (Consumer, error)
}

// Publisher writes records to one stream. Publish returns after every record
// is durable as far as the backend promises (for Kafka: acknowledged by all
// in-sync replicas); a nil error means the records will be delivered.
// Publish is safe for concurrent use; records of one call keep their order
// within a partition.
type Publisher interface {
	Publish(ctx context.Context, recs ...Record) error
}

// ConsumerOptions select how a Consumer reads a stream.
type ConsumerOptions struct {
	// Group names a consumer group. Consumers of one group share the
	// partitions and resume from the group's committed offsets. Empty means
	// no group: the consumer reads every partition, starting after the
	// newest record, and Commit does nothing.
	Group string
	// Key, when set, limits the consumer to records with this key (a
	// gateway reading its own replies). Backends may read only the
	// partition the key maps to.
	Key string
}

// Consumer reads one stream. It is used by one goroutine at a time.
type Consumer interface {
	// Fetch blocks until at least one record is available or ctx is done,
	// and returns the records available now, in partition order.
	Fetch(ctx context.Context) ([]Record, error)
	// Commit marks records as processed: after a restart the group resumes
	// after the highest committed offset of each partition. Records of
	// partitions the consumer no longer owns (the group was rebalanced,
	// whether or not this consumer has fetched since) are not committed and
	// the error wraps ErrNotOwner; the others are committed.
	Commit(ctx context.Context, recs ...Record) error
	// Close leaves the group and releases resources.
	Close() error
}

// Closer is implemented by buses that hold connections.
type Closer interface {
	Close() error
}
