package e2e

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
)

// TestCoordGroupRestartAfterShutdown: a group of three coordinators
// stopped in order with `bin/client … shutdown` must come back when its
// coordinators are started again with the same config and directories
// (SPEC: restart after a clean stop). Each restarted coordinator applies
// the committed Stopped state again and exited at once (found by the
// session-10 review; older than that session).
func TestCoordGroupRestartAfterShutdown(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3, Coordinators: 3})
	c.WaitRecovered(t, recoverTimeout)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	must(t, cl.Put(ctx, "survivor", []byte("v")))
	cl.Close()
	r := runBin(t, 30*time.Second, filepath.Join(c.Bin, "client"), nil, "-h", c.Addr, "shutdown")
	if r.code != 0 {
		t.Fatalf("shutdown: exit %d %s", r.code, r.stderr)
	}
	deadline := time.Now().Add(20 * time.Second)
	for k := 0; k < 3; k++ {
		for c.Coord(k).Running {
			if time.Now().After(deadline) {
				t.Fatalf("coordinator %d still running after shutdown", k)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for k := 0; k < 3; k++ {
		c.RestartCoordK(t, k)
	}
	time.Sleep(5 * time.Second) // an election, and the commit of the old state
	for k := 0; k < 3; k++ {
		if !c.Coord(k).Running {
			t.Errorf("coordinator %d exited after its restart (log %s)", k, c.Coord(k).Log)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	cl2 := c.Client()
	defer cl2.Close()
	v, err := cl2.Get(ctx, "survivor")
	if err != nil || string(v) != "v" {
		t.Fatalf("after the restart: %q %v", v, err)
	}
}
