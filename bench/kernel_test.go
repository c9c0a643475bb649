package bench

import (
	"strings"
	"testing"
)

// The layout of /proc/net/netstat and /proc/net/snmp: per protocol, a line
// of names and a line of values (fields cut down).
const (
	netstatBefore = `TcpExt: SyncookiesSent PruneCalled TCPTimeouts TCPMemoryPressures TCPRcvQDrop
TcpExt: 0 2141 1251 4 1516
IpExt: InNoRoutes InOctets
IpExt: 0 123
`
	netstatAfter = `TcpExt: SyncookiesSent PruneCalled TCPTimeouts TCPMemoryPressures TCPRcvQDrop
TcpExt: 0 9000 26960 16 26100
IpExt: InNoRoutes InOctets
IpExt: 0 999
`
	snmpBefore = "Tcp: RtoAlgorithm ActiveOpens RetransSegs\nTcp: 1 10 380088\n"
	snmpAfter  = "Tcp: RtoAlgorithm ActiveOpens RetransSegs\nTcp: 1 20 420000\n"
)

// procNet parses files as tcpCounters parses the real ones.
func procNet(files ...string) map[string]int64 {
	c := map[string]int64{}
	for _, f := range files {
		parseProcNet([]byte(f), c)
	}
	return c
}

// TestKernelTCPCountsPressure reads the kernel's TCP counters as a run
// does at its start and end: what moved is the run's, and a run with
// receive drops under memory pressure says the kernel held its
// deliveries back.
func TestKernelTCPCountsPressure(t *testing.T) {
	before, after := procNet(netstatBefore, snmpBefore), procNet(netstatAfter, snmpAfter)
	if before["TcpExt.TCPRcvQDrop"] != 1516 || before["Tcp.RetransSegs"] != 380088 || before["IpExt.InOctets"] != 123 {
		t.Fatalf("parsed %v", before)
	}
	k := kernelTCPSince(before, after)
	if want := (KernelTCP{RcvQDrops: 24584, Timeouts: 25709, Pressures: 12, Retrans: 39912}); k != want {
		t.Fatalf("since: %+v, want %+v", k, want)
	}
	k.MemLimit = 575814 * 4096
	if n := k.note(); !strings.Contains(n, "under pressure 12 times: 24584 segments dropped on receive, 25709 retransmit timeouts") {
		t.Fatalf("note %q", n)
	}
	// Retransmits alone (a loaded box) are not pressure.
	if n := kernelTCPSince(before, procNet(netstatBefore, snmpAfter)).note(); n != "" {
		t.Fatalf("note without drops or pressure: %q", n)
	}
	// Counters that went backwards (another namespace's view, a reset)
	// count nothing.
	if k := kernelTCPSince(after, before); k != (KernelTCP{}) {
		t.Fatalf("backwards: %+v", k)
	}
}

// TestKernelTCPReadsThisHost reads the real files: on Linux they hold the
// counters KernelTCP reports, and tcp_mem a limit.
func TestKernelTCPReadsThisHost(t *testing.T) {
	c := tcpCounters()
	for _, k := range []string{"TcpExt.TCPRcvQDrop", "TcpExt.TCPTimeouts", "TcpExt.TCPMemoryPressures", "Tcp.RetransSegs"} {
		if _, ok := c[k]; !ok {
			t.Errorf("no %s in /proc/net/netstat or snmp", k)
		}
	}
	if tcpMemLimit() <= 0 {
		t.Error("no limit read from /proc/sys/net/ipv4/tcp_mem")
	}
}
