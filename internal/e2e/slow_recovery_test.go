package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
	"ftkv/server"
)

// TestSlowRecoveryIsWaitedFor: a server reports to the coordinator only
// once it has rebuilt its tables from its log, and a large log takes a
// while (a start delay injected through server.TestStartDelayEnv stands
// in for one). While its process runs it is waited for, up to
// timing.Recover: a respawned server slower than Report is not killed and
// started over (which would only start its recovery over, for ever), and
// a whole-cluster restart slower than Start still starts (the coordinator
// exited with "servers [..] did not report within 15s" in a review with
// about 1.1 M entries on a loaded machine). Nothing acknowledged is lost.
func TestSlowRecoveryIsWaitedFor(t *testing.T) {
	delay := filepath.Join(t.TempDir(), "delay")
	t.Setenv(server.TestStartDelayEnv, delay) // servers inherit the coordinator's environment
	// -t 200ms: Report 4 s, Start 6 s, Recover 72 s.
	c := testcluster.Start(t, testcluster.Options{N: 3, Timeout: "200ms"})
	cls := dialClients(c, 2)
	c.WaitRecovered(t, 10*time.Second)
	l := newLedger("slow-recovery", restartOpTimeout)
	l.start(t, cls, 2)
	waitProgress(t, c, "ledger before the kill", l.AckedCount, 100, 500*time.Millisecond)

	// A respawn that takes longer than Report.
	if err := os.WriteFile(delay, []byte("1 6s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	v := c.KillServer(t, 1)
	c.WaitRecovered(t, 40*time.Second, v)
	t.Logf("server 1 (6 s to start, Report 4 s) recovered %s after its kill", time.Since(start).Round(time.Millisecond))
	if strings.Contains(c.Log(), "respawn failed") {
		t.Fatalf("a respawn was given up while the server was still starting:\n%s", grepLines(c.Log(), "respawn", "spawned", "not reported"))
	}
	waitProgress(t, c, "ledger after the respawn", l.AckedCount, 100, 500*time.Millisecond)

	// A whole-cluster restart that takes longer than Start.
	if err := os.WriteFile(delay, []byte("0 8s\n1 8s\n2 8s\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.KillEverything(t)
	start = time.Now()
	c.RestartCoord(t)
	allServing(t, c, 40*time.Second)
	t.Logf("the cluster (8 s for each server to start, Start 6 s) restarted in %s", time.Since(start).Round(time.Millisecond))
	waitProgress(t, c, "ledger after the restart", l.AckedCount, 100, 500*time.Millisecond)
	checkLedger(t, l, cls[0])
}

// grepLines returns the lines of s that contain any of subs.
func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}
