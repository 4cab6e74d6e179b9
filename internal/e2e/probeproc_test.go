package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"testing"
	"time"

	"ftkv/bench/hostile"
	"ftkv/internal/testkit/testcluster"
)

// A probe may run in a process of its own, as an attacker does: 1,000
// connections pushing from the test's own process starved the honest
// clients beside them (every shard's operations waited 1.1 s at once,
// whatever the server did). The test binary runs itself with
// probeProcEnv set: TestMain then runs only the probe and prints its
// result as JSON.
const probeProcEnv = "FTKV_E2E_PROBE"

// probeProc is what the probe's process is told (hostile.Config less
// its log function).
type probeProc struct {
	Name     string
	Coord    string
	ServerID int
	Conns    int
	Size     int
	Duration time.Duration
	Writes   bool
}

func TestMain(m *testing.M) {
	if spec := os.Getenv(probeProcEnv); spec != "" {
		os.Exit(runProbeProc(spec))
	}
	os.Exit(m.Run())
}

// runProbeProc runs the probe spec describes and prints its result.
func runProbeProc(spec string) int {
	var pp probeProc
	if err := json.Unmarshal([]byte(spec), &pp); err != nil {
		fmt.Fprintln(os.Stderr, "probe process:", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	res, err := hostile.Run(ctx, pp.Name, hostile.Config{Coord: pp.Coord, ServerID: pp.ServerID, Conns: pp.Conns,
		Size: pp.Size, Duration: pp.Duration, Writes: pp.Writes})
	out := struct {
		Result hostile.Result
		Err    string
	}{Result: res}
	if err != nil {
		out.Err = err.Error()
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, "probe process:", err)
		return 1
	}
	return 0
}

// runApart runs the probe name with cfg in a process of its own (see
// probeProcEnv), as run does in this one.
func (r *hostileRun) runApart(name string, cfg hostile.Config) hostile.Result {
	r.t.Helper()
	spec, err := json.Marshal(probeProc{Name: name, Coord: cfg.Coord, ServerID: cfg.ServerID, Conns: cfg.Conns,
		Size: cfg.Size, Duration: cfg.Duration, Writes: cfg.Writes})
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), probeProcEnv+"="+string(spec))
	cmd.Stderr = os.Stderr
	hb := hostile.WatchHeartbeats(r.c.Addr, r.target, 0)
	outb, err := cmd.Output()
	var samples int
	r.hbAge, samples = hb.Stop()
	var out struct {
		Result hostile.Result
		Err    string
	}
	if err != nil {
		r.t.Fatalf("probe process %s: %v", name, err)
	}
	if err := json.Unmarshal(outb, &out); err != nil {
		r.t.Fatalf("probe process %s: %v: %q", name, err, outb)
	}
	r.t.Logf("probe result (a process of its own):\n%s", out.Result)
	r.t.Logf("target's heartbeats during the probe: the last one at most %s old (%d status samples; failure timeout %s)",
		r.hbAge, samples, testcluster.DefaultTimeout)
	if out.Err != "" {
		r.t.Errorf("probe %s: %s", name, out.Err)
	}
	r.res = out.Result
	return out.Result
}
