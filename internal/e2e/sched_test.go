package e2e

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"ftkv/internal/sched"
	"ftkv/internal/testkit/testcluster"
)

// threadPolicies counts the scheduling policies of every thread of pid.
func threadPolicies(t *testing.T, what string, pid int) map[string]int {
	t.Helper()
	tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
	if err != nil || len(tasks) == 0 {
		t.Fatalf("%s (pid %d): no threads listed: %v", what, pid, err)
	}
	out := map[string]int{}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(filepath.Base(task))
		p, err := sched.Thread(tid)
		if err != nil {
			continue // exited meanwhile
		}
		out[sched.Name(p)]++
	}
	return out
}

// wantPolicy fails unless every thread of pid runs under policy.
func wantPolicy(t *testing.T, what string, pid, policy int) {
	t.Helper()
	got := threadPolicies(t, what, pid)
	if len(got) != 1 || got[sched.Name(policy)] == 0 {
		t.Errorf("%s (pid %d): threads by policy %v, want all %s", what, pid, got, sched.Name(policy))
		return
	}
	t.Logf("ran: %s (pid %d): %d threads, all %s", what, pid, got[sched.Name(policy)], sched.Name(policy))
}

// TestSchedulingPolicy checks where SCHED_BATCH applies: every thread of
// every server and of bin/gateway by default (docs/BENCHMARKS.md: processes
// sharing a CPU then exchange larger batches), the coordinator left as it
// started (its heartbeat checks must run when due), and "sched normal" (or
// -sched normal) leaving every process as started.
func TestSchedulingPolicy(t *testing.T) {
	if p, err := sched.Thread(0); err != nil || p != unix.SCHED_NORMAL {
		t.Skipf("the test runs as %s (%v), not SCHED_OTHER: nothing to compare with", sched.Name(p), err)
	}
	c := testcluster.Start(t, testcluster.Options{N: 3})
	for id := 0; id < 3; id++ {
		wantPolicy(t, fmt.Sprintf("server %d", id), c.ServerPID(t, id), unix.SCHED_BATCH)
	}
	wantPolicy(t, "coordinator", c.CoordPID(), unix.SCHED_NORMAL)
	wantPolicy(t, "gateway", startGatewayBin(t, c), unix.SCHED_BATCH)
	wantPolicy(t, "gateway -sched normal", startGatewayBin(t, c, "-sched", "normal"), unix.SCHED_NORMAL)

	n := testcluster.Start(t, testcluster.Options{Config: "3\nlocalhost 0 0 0\nlocalhost 0 0 0\nlocalhost 0 0 0\nsched normal\n"})
	for id := 0; id < 3; id++ {
		wantPolicy(t, fmt.Sprintf("server %d of a cluster with \"sched normal\"", id), n.ServerPID(t, id), unix.SCHED_NORMAL)
	}
}

// startGatewayBin runs bin/gateway against c until the test ends and
// returns its pid once it accepts connections.
func startGatewayBin(t *testing.T, c *testcluster.Cluster, args ...string) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	cmd := exec.Command(filepath.Join(c.Bin, "gateway"), append([]string{"-h", c.Addr, "-listen", addr, "-log-level", "error"}, args...)...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if conn, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			conn.Close()
			return cmd.Process.Pid
		}
		if time.Now().After(end) {
			t.Fatalf("bin/gateway never listened on %s", addr)
		}
	}
}
