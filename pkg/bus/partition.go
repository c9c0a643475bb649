package bus

// KeyPartition returns the partition a record with key lands in among n
// partitions, on every bus: publishers place records with it, and a reader
// that wants one key's records (a gateway reading only the dispatch
// partitions of its rooms, docs/deployment.md) finds their partition with
// it. It is Kafka's default partitioner, (murmur2(key) & 0x7fffffff) % n
// as in the Java client and librdkafka's "murmur2", so other Kafka
// producers keyed by room place a room's records in the same partition.
// n must be positive.
func KeyPartition(key string, n int) int {
	return int((murmur2(key) & 0x7fffffff) % uint32(n))
}

// murmur2 is the Java client's murmur2 (org.apache.kafka.common.utils.Utils).
func murmur2(data string) uint32 {
	const (
		seed uint32 = 0x9747b28c
		m    uint32 = 0x5bd1e995
		r           = 24
	)
	length := len(data)
	h := seed ^ uint32(length)
	for i := 0; i+4 <= length; i += 4 {
		k := uint32(data[i]) | uint32(data[i+1])<<8 | uint32(data[i+2])<<16 | uint32(data[i+3])<<24
		k *= m
		k ^= k >> r
		k *= m
		h *= m
		h ^= k
	}
	tail := length &^ 3
	switch length % 4 {
	case 3:
		h ^= uint32(data[tail+2]) << 16
		fallthrough
	case 2:
		h ^= uint32(data[tail+1]) << 8
		fallthrough
	case 1:
		h ^= uint32(data[tail])
		h *= m
	}
	h ^= h >> 13
	h *= m
	h ^= h >> 15
	return h
}
