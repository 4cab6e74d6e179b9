package e2e

import (
	"math/rand"
	"os"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
)

// TestChaos injects random faults for FTKV_CHAOS_DURATION (default 8s;
// `make chaos` runs it for minutes): kill -9 of a random server, SIGSTOP of
// a random server for three failure timeouts then SIGCONT, and kill -9 of
// the coordinator followed by a restart. After each fault it waits for full
// recovery. Under load throughout; at the end porcupine must find the
// history linearizable and every acknowledged put must be readable.
func TestChaos(t *testing.T) {
	d := 8 * time.Second
	if v := os.Getenv("FTKV_CHAOS_DURATION"); v != "" {
		var err error
		if d, err = time.ParseDuration(v); err != nil {
			t.Fatalf("FTKV_CHAOS_DURATION: %v", err)
		}
	}
	const n = 3
	c := testcluster.Start(t, testcluster.Options{N: n})
	cls := dialClients(c, 4)
	s := seed(t)
	rng := rand.New(rand.NewSource(s))
	c.WaitRecovered(t, 10*time.Second)
	w := startWorkload(t, workloadConfig{Clients: cls, Keys: keysOnShards(n, 3, "chaos"),
		Workers: 8, OpTimeout: foOpTimeout, Seed: s})
	l := startLedger(t, cls, 2, "ledger-chaos", foOpTimeout)
	waitProgress(t, c, "load before the first fault", w.Done, 200, 500*time.Millisecond)

	end := time.Now().Add(d)
	faults := 0
	for time.Now().Before(end) {
		faults++
		switch f := rng.Intn(10); {
		case f < 6:
			id := rng.Intn(n)
			t.Logf("fault %d: kill -9 server %d", faults, id)
			v := c.KillServer(t, id)
			c.WaitRecovered(t, recoverTimeout, v)
		case f < 8:
			id := rng.Intn(n)
			t.Logf("fault %d: SIGSTOP server %d", faults, id)
			v := c.StopServer(t, id)
			time.Sleep(3 * testcluster.DefaultTimeout)
			c.ContServer(t, v)
			c.WaitRecovered(t, recoverTimeout, v)
		default:
			t.Logf("fault %d: kill -9 of the coordinator, then restart", faults)
			c.KillCoord(t)
			time.Sleep(time.Duration(rng.Intn(1500)) * time.Millisecond)
			c.RestartCoord(t)
			c.WaitRecovered(t, recoverTimeout)
		}
		waitProgress(t, c, "load after recovery", w.Done, 100, 500*time.Millisecond)
	}
	t.Logf("%d faults in %s", faults, d)
	stopAndCheck(t, w, l, cls[0])
}
