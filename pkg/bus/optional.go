package bus

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
