package bench

import (
	"os/exec"
	"testing"
	"time"
)

// TestPipelineCPU: the result's pipeline_cpu_s reads the logic and
// dispatch processes the harness started, by role, and no gateway.
func TestPipelineCPU(t *testing.T) {
	start := func(role, script string) *server {
		cmd := exec.Command("sh", "-c", script)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		return &server{role: role, cmd: cmd}
	}
	busy := "i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; sleep 30"
	logic, disp, gw := start("logic", busy), start("dispatch", "sleep 30"), start("gateway-0", busy)
	r := &run{cl: &cluster{servers: []*server{logic, disp, gw}, gateways: []*server{gw}}}
	var got map[string]float64
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if got = r.pipelineCPU(); got["logic"] > 0 {
			break
		}
	}
	if got["logic"] <= 0 {
		t.Errorf("logic CPU %v, want > 0 (a busy shell)", got)
	}
	if _, ok := got["dispatch"]; !ok || len(got) != 2 {
		t.Errorf("pipelineCPU = %v, want logic and dispatch only", got)
	}
	if (&run{}).pipelineCPU() != nil {
		t.Error("a run without a started cluster (danmaku all or --ws) has pipeline figures")
	}
}
