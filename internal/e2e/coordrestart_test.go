package e2e

import (
	"testing"
	"time"

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
