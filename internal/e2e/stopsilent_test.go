package e2e

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
)

// TestStopWithAStoppedServer: ctrl+d while one server is stopped
// (SIGSTOP) or hung. Its dump never comes; the coordinator waited for
// its answer until the whole stop's bound (ShutdownWait, 10 failure
// timeouts) and then ServerExit (4 more) before killing it: 7 s with
// the default timeout, 28 s with this test's. A server being stopped
// that sends no heartbeat for two failure timeouts is killed undumped
// (one dumping heartbeats on), the others dump as usual, the coordinator
// says why and exits 1, and the next start brings back every key from
// the logs.
func TestStopWithAStoppedServer(t *testing.T) {
	const timeout = 2 * time.Second // no failover before the stop starts
	c := testcluster.Start(t, testcluster.Options{N: 3, Timeout: timeout.String()})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := c.Client()
	keys := keysOnShards(3, 10, "stop-silent")
	for _, k := range keys {
		if err := cl.Put(ctx, k, []byte("v-"+k)); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	c.StopServer(t, 1)
	start := time.Now()
	// Before, the stop took 10+4 failure timeouts; bounded at 7.5, the
	// stop fails for its duration, not for the exit status.
	err := c.Shutdown(15 * timeout / 2)
	took := time.Since(start)
	t.Logf("stop with server 1 stopped took %s: %v", took.Round(time.Millisecond), err)
	var ee interface{ ExitCode() int }
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("stop with a stopped server: %v, want exit status 1 (server 1 not dumped)", err)
	}
	if log := c.Log(); !strings.Contains(log, "server silent during the stop") {
		t.Fatalf("the log does not say why server 1 was killed:\n%s", tailLines(log, 20))
	}
	c.RestartCoord(t)
	allServing(t, c, 20*time.Second)
	cl = c.Client()
	for _, k := range keys {
		v, err := cl.Get(ctx, k)
		if err != nil || string(v) != "v-"+k {
			t.Errorf("key %q after the restart: %q, %v", k, v, err)
		}
	}
}
