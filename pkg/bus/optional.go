package bus

import (
	"context"
	"errors"
)

// ErrNoPartition is returned by a PartitionReader for a partition the
// stream does not have.
var ErrNoPartition = errors.New("bus: no such partition")

// ErrNotOwner is returned (wrapped) by Consumer.Commit when some of the
// records belong to partitions the consumer no longer owns: the group moved
// them to another member (a rebalance the consumer may not have seen yet).
// Their offsets were not committed; the partition's new owner reads the
// records again. It is routine during rebalances, and it is how a stage
// learns that what it decided about those records must not be announced
// (logic sends no reject for a record whose commit was refused).
var ErrNotOwner = errors.New("bus: partition no longer owned")

// Prover is implemented by group consumers that can ask the group whether
// they still own a partition. Logic uses it after writing a fence marker:
// a claimant that proves ownership after its marker landed knows any later
// marker belongs to a newer owner or to a stale one that will fail its own
// proof (pkg/bus/fence.go).
type Prover interface {
	// Prove returns nil if, at one instant during the call, the consumer's
	// group generation was current and partition was assigned to it in
	// it; an error wrapping ErrNotOwner if not; another error if it could
	// not tell. It may commit offset for partition (in the consumer's
	// generation) to ask: offset must be at most the offset of the next
	// record the consumer has not processed.
	Prove(ctx context.Context, partition int, offset int64) error
}

// PartitionWriter is implemented by buses that can append records to one
// chosen partition and tell where they landed. Logic uses it to write the
// accepted partition of the ingest partition it owns, with fence markers
// (fence.go): the offsets show whether anything else was written in
// between. Methods are safe for concurrent use.
type PartitionWriter interface {
	// Append writes recs, in order, to partition of stream and returns the
	// offset of the first; the others follow it without gaps. Keys are
	// stored but do not choose the partition. On error some or all of the
	// records may still have been written (or may be written later: a
	// request that timed out can land afterwards).
	Append(ctx context.Context, stream string, partition int, recs ...Record) (base int64, err error)
}

// Rebalancer is implemented by consumers whose group can move partitions
// between members. A stage that keeps per-key state (logic's per-room seq
// and dedupe windows) compares Generation after each Fetch and drops its
// state when it changed, because the consumer may now own other partitions
// and another member may have advanced the keys it used to own.
type Rebalancer interface {
	// Generation returns the group generation the records of the latest
	// Fetch belong to. It changes whenever the group was rebalanced.
	// Consumers without a group, and consumers that have not fetched yet,
	// return 0.
	Generation() int64
}

// PartitionOffsets describe one partition of a stream at one moment.
type PartitionOffsets struct {
	// Oldest is the offset of the oldest retained record (End when the
	// partition is empty).
	Oldest int64
	// End is the offset the next record will get.
	End int64
	// Committed is the group's committed offset: the group has processed
	// every record before it. -1 when the group has committed nothing
	// (or no group was asked for).
	Committed int64
}

// PartitionReader is implemented by buses that can read one partition of a
// stream directly, outside any consumer group. Logic uses it when it takes
// over ingest partitions: it reads the tail of the matching accepted
// partition to learn each room's last seq and the message ids already
// accepted, so a failover neither repeats a seq nor sequences a redelivered
// send twice. Methods are safe for concurrent use.
type PartitionReader interface {
	// Partitions returns the partition count of stream.
	Partitions(ctx context.Context, stream string) (int, error)
	// Offsets returns the offsets of one partition and, when group is not
	// empty, that group's committed offset of it.
	Offsets(ctx context.Context, stream string, partition int, group string) (PartitionOffsets, error)
	// ReadRange returns the records of one partition with from <= offset
	// < to, in offset order. Records no longer retained are skipped.
	ReadRange(ctx context.Context, stream string, partition int, from, to int64) ([]Record, error)
}

// ErrBadOffset is returned by PartitionConsumer.Assign for a negative
// offset.
var ErrBadOffset = errors.New("bus: negative offset")

// errNotManual is returned by Assign and Unassign on a consumer that Consumer
// opened (it reads what its options say, not what it is assigned).
var errNotManual = errors.New("bus: Assign and Unassign need a consumer opened with PartitionConsumer")

// PartitionSubscriber is implemented by buses that can read chosen
// partitions of a stream, each from a chosen offset, and change the choice
// while reading. A gateway with room affinity reads only the dispatch
// partitions of the rooms its viewers are in (KeyPartition tells which):
// it assigns a partition when the first viewer of a room on it joins and
// unassigns it when the last one has left.
type PartitionSubscriber interface {
	// PartitionConsumer opens a consumer of stream without a group that
	// reads no partition until Assign. Close it when done.
	PartitionConsumer(stream string) (PartitionConsumer, error)
}

// PartitionConsumer is a group-less Consumer that reads the partitions
// assigned to it. Commit does nothing. Assign and Unassign may be called
// while another goroutine waits in Fetch; a Fetch that begins after they
// return reads the new assignment only: no record of an unassigned
// partition, and no record of a reassigned one from before its new offset.
type PartitionConsumer interface {
	Consumer
	// Assign makes the consumer read partition from offset on (from the
	// oldest retained record when offset is older; the first records
	// written when it is past the end), replacing where it was reading
	// that partition if it was. It does not wait for records. A partition
	// the stream does not have is an error wrapping ErrNoPartition; a
	// negative offset, ErrBadOffset.
	Assign(partition int, offset int64) error
	// Unassign stops reading partition. Unassigning a partition that is
	// not assigned does nothing.
	Unassign(partition int) error
}
