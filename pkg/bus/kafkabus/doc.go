// Package kafkabus runs the pipeline's streams (package bus) on Apache Kafka,
// or any broker that speaks the Kafka protocol, through
// github.com/segmentio/kafka-go. It passes the shared suite in
// pkg/bus/bustest, like the in-memory bus.
//
// # Topics
//
// Each stream is one topic named Config.TopicPrefix + stream, by default:
//
//	topic              partitions  key         value (JSON)
//	danmaku.ingest     8           room id     bus.Ingest
//	danmaku.accepted   8           room id     protocol.Message (with seq)
//	danmaku.dispatch   8           room id     the server frame viewers receive
//	danmaku.reply      8           gateway id  bus.Reply
//	danmaku.control    1           room id     bus.Control
//
// A dispatch value is the exact WebSocket text frame every viewer of the
// room gets, encoded once by dispatch, for example
//
//	{"op":"batch","room":"r","msgs":[{"seq":41,"uid":"u1","name":"Ann","text":"hi","ts":1764130000000}]}
//
// and likewise delete, purge and notice frames. Gateways read every dispatch
// partition without a group and write each value unchanged to their viewers
// of the room. Values are encoded with bus.Marshal (JSON); there are no
// record headers.
//
// With Config.CreateTopics, New creates the five topics when they are
// missing, with the counts of Config.Partitions and Config.ReplicationFactor,
// through the cluster's controller; topics of other streams are created on
// first use. Existing topics keep their partition count: the bus reads it
// from the broker. Production clusters usually create the topics ahead
// (deploy/) and leave CreateTopics off.
//
// # Partitioning
//
// A record's partition is (murmur2(key) & 0x7fffffff) % partitions, the Java
// client's default partitioner (kafka.Murmur2Balancer), so every record of a
// room lands in one partition and keeps its order there, and producers in
// other languages place a room's records in the same partition. Empty keys
// hash like any other. A group-less consumer with ConsumerOptions.Key (a
// gateway reading its own replies) reads only the partition its key hashes
// to and drops the other keys that share it. Adding partitions to a topic
// moves keys to other partitions: the per-room order holds again only once
// the old partitions are drained.
//
// # Producing
//
// Each topic has one kafka.Writer shared by all publishers of the process.
// Publish is synchronous: it returns after the brokers acknowledged every
// record, because a stage commits its input only after its output is safe
// (logic acknowledges a send only once it is in the dispatch topic).
//
//   - RequiredAcks "all" (default): a record is acknowledged once every
//     in-sync replica has it, so an acknowledged message survives the loss
//     of the leader. "one" waits for the leader only: it saves a replication
//     round trip on a multi-broker cluster (nothing on a single broker) and
//     loses acknowledged records when the leader fails.
//   - BatchTimeout 2ms (default): the writer sends a partition's batch when
//     it holds BatchSize (1000) records or has waited 2ms. kafka-go's own
//     default of 1s would add a second to every synchronous Publish. 2ms
//     lets concurrent publishers (the gateway's connections, logic's
//     workers) share batches, which is where throughput comes from, while a
//     lone Publish costs ~2.5ms on a local broker. Lower it for latency,
//     raise it for throughput under load.
//   - Compression lz4 (default): the cheapest codec in CPU per byte, and
//     danmaku batches (many short, similar JSON records) compress well;
//     zstd compresses better at more CPU, snappy is in between.
//
// # Consuming
//
// A consumer reads each partition it owns on a connection of its own to
// the partition's leader (a kafka.Conn, not a kafka.Reader), and Fetch
// returns what the readers have handed over: it blocks for the first
// record, then takes whatever else is already there, up to Config.MaxFetch
// records, without waiting further. Each reader keeps one fetch request in
// flight, which the broker holds until a record arrives or MaxWait (1s)
// passes: a record is delivered at once and an idle partition costs one
// request per MaxWait. Ending a reader (Close, a rebalance) closes its
// connection, so it never waits for the pending fetch; that is why a long
// MaxWait is free, where kafka.Reader blocks Close for up to MaxWait. With
// kafka.Reader and 100ms, 20 idle gateways (17 partitions each) cost 0.29
// cores and the broker 0.26; with this reader and 1s, 0.05 and 0.06.
//
// Consumers with a group drive a kafka.ConsumerGroup directly instead of a
// kafka.Reader with GroupID, because only the group exposes its generations:
//
//   - the consumer implements bus.Rebalancer; Generation changes when the
//     group rebalanced, so logic can drop per-room state of partitions it
//     may have lost;
//   - Fetch drops records read in a generation that has ended (their
//     partition's owner in the new generation reads them again from the
//     committed offset);
//   - Commit commits the offset after the highest record per partition
//     through the current generation, skipping partitions the consumer no
//     longer owns, so it never advances another member's partition. A
//     commit refused because of a rebalance, or cut off because its
//     generation ended, is dropped, not reported: the
//     records come again (at-least-once).
//
// A new group starts at the earliest retained record. Group members
// heartbeat every HeartbeatInterval (1s) and learn of a rebalance at the
// next heartbeat; a member that stops without leaving is replaced after
// SessionTimeout (10s).
//
// Consumers without a group start after the newest record of each
// partition; the offsets are read from the partition leaders before Consumer
// returns, so every record published after that is delivered.
//
// # Reading a partition directly
//
// Bus implements bus.PartitionReader: Partitions, Offsets (oldest, end and
// a group's committed offset of one partition, via ListOffsets and
// OffsetFetch) and ReadRange (the records of one partition between two
// offsets, read from its leader outside any group). Logic uses it when it
// takes over ingest partitions, to read the tail of the matching accepted
// partition: see logic/seq.go and docs/deployment.md. It relies on ingest
// and accepted having the same partition count, which logic checks.
//
// # Inspecting the streams
//
// Any Kafka tool reads the topics. With kcat (Debian package kcat):
//
//	kcat -C -b ADDR -t danmaku.dispatch -o end              # frames as gateways get them
//	kcat -C -b ADDR -t danmaku.accepted -o -10 -f '%p %o %k %s\n'
//	kcat -L -b ADDR                                         # topics and partitions
package kafkabus
