package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
)

// On loopback the gateway's send queues and the harness's receive queues
// are charged to one kernel's TCP memory (net.ipv4.tcp_mem, global to the
// host, not per network namespace). Past its pressure mark the kernel
// admits a segment only to a socket below its fair share (the hard limit
// over every TCP socket: about 60 KiB for 19,000 viewers under the default
// limit of a 24 GiB host) and drops the rest; the gateway's kernel
// retransmits after a timeout that doubles each time. A lagging harness
// holds megabytes per socket, so one pressure episode drops on thousands
// of sockets at once: deliveries fall to what the retransmit timers let
// through while the gateway's userspace backlogs fill to their soft caps.
// Real viewers receive in their own kernels; the bench host needs the
// TCP memory docs/host-tuning.md gives a gateway host (the Makefile's
// bench targets raise it, deploy/dev/tcpmem.sh), and every run reports
// what the kernel counted (KernelTCP).

// tcpMemLimit returns the hard limit of the host's TCP memory in bytes
// (the third field of net.ipv4.tcp_mem, in pages), or 0 when unknown.
func tcpMemLimit() int64 {
	b, err := os.ReadFile("/proc/sys/net/ipv4/tcp_mem")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return 0
	}
	pages, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil || pages <= 0 {
		return 0
	}
	return pages * int64(os.Getpagesize())
}

// KernelTCP is what the host's TCP stack counted during a run (deltas of
// /proc/net/netstat and /proc/net/snmp, the whole host): receive drops for
// memory, retransmit timeouts and entries into memory pressure say the
// kernel, not the gateway or the harness, held deliveries back.
type KernelTCP struct {
	// MemLimit is net.ipv4.tcp_mem's hard limit in bytes.
	MemLimit int64 `json:"mem_limit"`
	// RcvQDrops counts segments dropped because a receive queue could not
	// be charged (TCPRcvQDrop), Timeouts retransmit timeouts
	// (TCPTimeouts), Pressures entries into memory pressure
	// (TCPMemoryPressures) and Retrans retransmitted segments.
	RcvQDrops int64 `json:"rcvq_drops"`
	Timeouts  int64 `json:"timeouts"`
	Pressures int64 `json:"memory_pressures"`
	Retrans   int64 `json:"retrans_segs"`
}

// tcpCounters reads the counters KernelTCP reports, by name; missing
// files or fields are left out.
func tcpCounters() map[string]int64 {
	c := map[string]int64{}
	for _, f := range []string{"/proc/net/netstat", "/proc/net/snmp"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		parseProcNet(b, c)
	}
	return c
}

// parseProcNet adds the counters of a /proc/net/netstat or snmp file (a
// header line of names and a line of values per protocol) to c as
// "Proto.Name".
func parseProcNet(b []byte, c map[string]int64) {
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var head []string
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if head == nil || head[0] != f[0] {
			head = f
			continue
		}
		proto := strings.TrimSuffix(f[0], ":")
		for i := 1; i < len(f) && i < len(head); i++ {
			if v, err := strconv.ParseInt(f[i], 10, 64); err == nil {
				c[proto+"."+head[i]] = v
			}
		}
		head = nil
	}
}

// kernelTCPSince returns what the counters moved since before.
func kernelTCPSince(before, after map[string]int64) KernelTCP {
	d := func(k string) int64 { return max(after[k]-before[k], 0) }
	return KernelTCP{RcvQDrops: d("TcpExt.TCPRcvQDrop"), Timeouts: d("TcpExt.TCPTimeouts"),
		Pressures: d("TcpExt.TCPMemoryPressures"), Retrans: d("Tcp.RetransSegs")}
}

// note says what the kernel's drops mean for the run; "" when it dropped
// nothing for memory.
func (k KernelTCP) note() string {
	if k.RcvQDrops == 0 && k.Pressures == 0 {
		return ""
	}
	return fmt.Sprintf("the host's TCP memory (net.ipv4.tcp_mem, limit %s) was under pressure %d times: %d segments dropped on receive, "+
		"%d retransmit timeouts; what was dropped waited for the kernel's retransmit timers, not for the gateway or the harness (docs/host-tuning.md)",
		humanBytes(k.MemLimit), k.Pressures, k.RcvQDrops, k.Timeouts)
}
