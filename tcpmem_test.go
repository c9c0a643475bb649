package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// A bench on loopback charges the viewers' backlogs to the host's TCP
// memory too; under the kernel's default limit a backlog of a few GiB
// puts it under pressure, which drops what arrives for every socket above
// its fair share and stalls deliveries on retransmit timers (issue 15's
// bench-throughput stall, bench/kernel.go). TestBenchHostTCPMem keeps the
// bench targets raising it to docs/host-tuning.md's values, and
// deploy/dev/tcpmem.sh raising each value without lowering any.
func TestBenchHostTCPMem(t *testing.T) {
	doc, err := os.ReadFile("docs/host-tuning.md")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^net\.ipv4\.tcp_mem = (\d+) (\d+) (\d+)$`).FindStringSubmatch(string(doc))
	if m == nil {
		t.Fatal("docs/host-tuning.md states no net.ipv4.tcp_mem")
	}
	want := strings.Join(m[1:], " ")
	script, err := os.ReadFile("deploy/dev/tcpmem.sh")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), "want=("+want+")") {
		t.Fatalf("deploy/dev/tcpmem.sh does not raise to docs/host-tuning.md's %s", want)
	}

	for _, c := range []struct{ have, after string }{
		{"287907 383879 575814", want},                         // a 24 GiB host's default
		{"2000000 3000000 4000000", "2000000 3000000 4000000"}, // higher: kept
		{"2000000 1000 3000000", "2000000 1572864 3000000"},    // each value on its own
	} {
		f := filepath.Join(t.TempDir(), "tcp_mem")
		if err := os.WriteFile(f, []byte(c.have+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("deploy/dev/tcpmem.sh")
		cmd.Env = append(os.Environ(), "TCP_MEM_FILE="+f)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("tcpmem.sh on %s: %v\n%s", c.have, err, out)
		}
		got, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Join(strings.Fields(string(got)), " ") != c.after {
			t.Errorf("tcpmem.sh on %s left %q, want %s", c.have, got, c.after)
		}
	}

	mk, err := os.ReadFile("Makefile")
	if err != nil {
		t.Fatal(err)
	}
	// The macros that start the servers of the table's bench targets, and
	// the ladder's recipe, raise it before anything else starts.
	for _, re := range []string{`(?m)^WITH_BROKER = deploy/dev/tcpmem\.sh && `, `(?m)^WITH_SERVERS = deploy/dev/tcpmem\.sh && `,
		`(?m)^bench-ladder: .*\n\t@set -e; deploy/dev/tcpmem\.sh; `} {
		if !regexp.MustCompile(re).Match(mk) {
			t.Errorf("Makefile: no match for %s", re)
		}
	}
	for _, target := range []string{"bench-latency", "bench-throughput", "bench-storm-100k", "bench-1m", "bench-mixed"} {
		if !regexp.MustCompile(`(?m)^` + target + `: .*\n\t@\$\(WITH_(BROKER|SERVERS)\) `).Match(mk) {
			t.Errorf("Makefile: %s does not start its servers with WITH_BROKER or WITH_SERVERS", target)
		}
	}
}
