package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// TestCoordinatorKill kills the coordinator with SIGKILL under load: clients
// keep working (every shard has both copies alive), the restarted
// coordinator re-adopts the same server processes, and a later server kill
// is still recovered with nothing lost.
func TestCoordinatorKill(t *testing.T) {
	const n = 3
	c := testcluster.Start(t, testcluster.Options{N: n})
	cls := dialClients(c, 4)
	s := seed(t)
	before := c.WaitRecovered(t, 10*time.Second)
	w := startWorkload(t, workloadConfig{Clients: cls, Keys: keysOnShards(n, 3, "coord-kill"),
		Workers: 8, OpTimeout: foOpTimeout, Seed: s})
	l := startLedger(t, cls, 3, "ledger-coord-kill", foOpTimeout)
	waitProgress(t, c, "load before the coordinator kill", w.Done, 200, 500*time.Millisecond)

	c.KillCoord(t)
	t.Logf("coordinator killed (pid %d); servers on their own", c.CoordPID())
	// Three failure timeouts without a coordinator: the servers' leases
	// are renewed by their secondaries, so the load goes on.
	waitProgress(t, c, "load without a coordinator", w.Done, 500, 1500*time.Millisecond)

	c.RestartCoord(t)
	after := c.Status(t)
	t.Logf("coordinator restarted (pid %d), epoch %d", c.CoordPID(), after.Epoch)
	for i := 0; i < n; i++ {
		if b, a := before.Servers[i], after.Servers[i]; a.PID != b.PID || a.Incarnation != b.Incarnation {
			t.Fatalf("server %d: pid %d inc %d before, pid %d inc %d after the restart: not re-adopted",
				i, b.PID, b.Incarnation, a.PID, a.Incarnation)
		}
	}
	waitProgress(t, c, "load after the restart", w.Done, 200, 500*time.Millisecond)

	victim := 1
	v := c.KillServer(t, victim)
	rec := c.WaitRecovered(t, recoverTimeout, v)
	t.Logf("server kill after the restart recovered: %s", roles(rec, victim))
	waitProgress(t, c, "load after recovery", w.Done, 200, 500*time.Millisecond)
	stopAndCheck(t, w, l, cls[0])
}

// TestStopRightAfterCoordRestart: a server stopped (SIGSTOP) right after a
// restarted coordinator re-adopted it is failed over and replaced like any
// other silent server (its silence counted from the re-adoption's grace,
// longer than the stop, so it went unnoticed; found by the chaos test).
func TestStopRightAfterCoordRestart(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})
	c.WaitRecovered(t, 10*time.Second)
	c.KillCoord(t)
	c.RestartCoord(t)
	v := c.StopServer(t, 1)
	time.Sleep(3 * testcluster.DefaultTimeout)
	c.ContServer(t, v)
	c.WaitRecovered(t, recoverTimeout, v)
}

// TestStaleStateFilePID (hole 6): a restarted coordinator whose state file
// names a pid that is no longer its server (the server died with the
// coordinator, the pid went to another program, as after a reboot) must
// not adopt, watch or kill that process: it respawns the server instead.
func TestStaleStateFilePID(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})
	st := c.WaitRecovered(t, 10*time.Second)
	c.KillCoord(t)
	victim := st.Servers[0]
	if err := syscall.Kill(victim.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testcluster.Eventually(t, 5*time.Second, "the killed server gone", func() bool { return testcluster.PIDGone(victim.PID) || zombieOrGone(victim.PID) })
	// An unrelated process takes the dead server's place in the state file.
	other := exec.Command("sleep", "120")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	path := filepath.Join(c.Dir, "ftkv-coord.state")
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var state map[string]any
	if err := json.Unmarshal(raw, &state); err != nil {
		t.Fatal(err)
	}
	nodes := state["nodes"].([]any)
	nodes[0].(map[string]any)["pid"] = other.Process.Pid
	raw, _ = json.Marshal(state)
	if err := os.WriteFile(path, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	t.Logf("state file names pid %d (sleep) for server 0", other.Process.Pid)
	c.RestartCoord(t)
	after := c.WaitFor(t, recoverTimeout, "server 0 respawned", func(s *client.ClusterStatus) error {
		if s.Servers[0].PID == other.Process.Pid || s.Servers[0].State != "serving" {
			return fmt.Errorf("server 0: pid %d state %s", s.Servers[0].PID, s.Servers[0].State)
		}
		return nil
	})
	if zombieOrGone(other.Process.Pid) { // our child: killed, it stays a zombie until we wait
		t.Fatalf("the unrelated process %d was killed", other.Process.Pid)
	}
	t.Logf("server 0 respawned as pid %d; the unrelated process lives", after.Servers[0].PID)
}

// zombieOrGone reports whether pid has exited (reaped or not).
func zombieOrGone(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	i := strings.LastIndexByte(string(b), ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}
