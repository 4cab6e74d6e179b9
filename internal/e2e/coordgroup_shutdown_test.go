package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
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
	c, ctx := groupWithSurvivor(t)
	r := runBin(t, 30*time.Second, filepath.Join(c.Bin, "client"), nil, "-h", c.Addr, "shutdown")
	if r.code != 0 {
		t.Fatalf("shutdown: exit %d %s", r.code, r.stderr)
	}
	deadline := time.Now().Add(20 * time.Second)
	for k := 0; k < 3; k++ {
		for c.Coord(k).Running {
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(c.Coord(k).Log)
				t.Fatalf("coordinator %d still running after shutdown; its log:\n%s", k, lastLines(string(b), 20))
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

// shutdownGroup stops a group of three with `bin/client … shutdown` and
// waits until every coordinator has exited.
func shutdownGroup(t *testing.T, c *testcluster.Cluster) {
	t.Helper()
	r := runBin(t, 30*time.Second, filepath.Join(c.Bin, "client"), nil, "-h", c.Addr, "shutdown")
	if r.code != 0 {
		t.Fatalf("shutdown: exit %d %s", r.code, r.stderr)
	}
	testcluster.Eventually(t, 20*time.Second, "every coordinator stopped", func() bool {
		return !c.Coord(0).Running && !c.Coord(1).Running && !c.Coord(2).Running
	})
}

// groupWithSurvivor starts a group of three coordinators with key
// "survivor" put, and returns it and a context for the test's calls.
func groupWithSurvivor(t *testing.T) (*testcluster.Cluster, context.Context) {
	c := testcluster.Start(t, testcluster.Options{N: 3, Coordinators: 3})
	c.WaitRecovered(t, recoverTimeout)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	must(t, cl.Put(ctx, "survivor", []byte("v")))
	cl.Close()
	return c, ctx
}

// TestCoordGroupShutdownWithOneFrozen: `bin/client … shutdown` while
// one coordinator is frozen (SIGSTOP): the cluster and the other two
// stop. The other two are started again, then the frozen one is
// continued: it reads what waited in its sockets (the committed stop, the
// leader's order to stop) only as the group already runs again, and must
// stay with it: the group runs with all three (it exited, and the group
// ran on two of three).
func TestCoordGroupShutdownWithOneFrozen(t *testing.T) {
	c, ctx := groupWithSurvivor(t)
	frozen := (c.LeaderIndex(t) + 1) % 3
	c.StopCoordK(t, frozen)
	r := runBin(t, 30*time.Second, filepath.Join(c.Bin, "client"), nil, "-h", c.Addr, "shutdown")
	if r.code != 0 {
		t.Fatalf("shutdown: exit %d %s", r.code, r.stderr)
	}
	deadline := time.Now().Add(20 * time.Second)
	for k := 0; k < 3; k++ {
		for k != frozen && c.Coord(k).Running {
			if time.Now().After(deadline) {
				b, _ := os.ReadFile(c.Coord(k).Log)
				t.Fatalf("coordinator %d still running after shutdown; its log:\n%s", k, lastLines(string(b), 20))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	for k := 0; k < 3; k++ {
		if k != frozen {
			c.RestartCoordK(t, k)
		}
	}
	cl2 := c.Client()
	defer cl2.Close()
	v, err := cl2.Get(ctx, "survivor")
	if err != nil || string(v) != "v" {
		t.Fatalf("after the restart: %q %v", v, err)
	}
	c.ContCoordK(t, frozen)
	time.Sleep(8 * time.Second) // catching up, and past its grace for the order
	for k := 0; k < 3; k++ {
		if !c.Coord(k).Running {
			b, _ := os.ReadFile(c.Coord(k).Log)
			t.Errorf("coordinator %d is not running after the group started again; its log:\n%s", k, lastLines(string(b), 20))
		}
	}
	if st, err := c.CoordStatus(frozen); err != nil {
		t.Errorf("coordinator %d, continued: status: %v", frozen, err)
	} else if st.Epoch == 0 {
		t.Errorf("coordinator %d, continued, does not follow the group: %s", frozen, testcluster.StatusJSON(st))
	}
}

// TestOneShotClientWithFrozenCoordinator: the first coordinator of the
// list is frozen (SIGSTOP: connections are accepted by the kernel, never
// answered). A one-shot `bin/client -h a,b,c G key` must not wait out its
// whole answer timeout on it before asking the next (it took about 2 s
// per command): it asks the next one once the first is late.
func TestOneShotClientWithFrozenCoordinator(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3, Coordinators: 3})
	c.WaitRecovered(t, recoverTimeout)
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	must(t, cl.Put(ctx, "k", []byte("v")))
	cl.Close()
	first := strings.Split(c.Addr, ",")[0]
	frozen := -1
	for k := 0; k < 3; k++ {
		if c.Coord(k).ClientAddr == first {
			frozen = k
		}
	}
	if frozen < 0 {
		t.Fatalf("no coordinator serves %s", first)
	}
	c.StopCoordK(t, frozen)
	defer c.ContCoordK(t, frozen)
	handshake := 4 * testcluster.DefaultTimeout // the client's answer timeout (timing.Handshake)
	for i := 0; i < 3; i++ {
		begun := time.Now()
		r := runBin(t, 30*time.Second, filepath.Join(c.Bin, "client"), nil, "-h", c.Addr, "G", "k")
		took := time.Since(begun)
		if r.code != 0 || strings.TrimSpace(r.stdout) != "v" {
			t.Fatalf("G k with coordinator %d frozen: exit %d, %q %q", frozen, r.code, r.stdout, r.stderr)
		}
		t.Logf("G k with coordinator %d (first listed) frozen: %s", frozen, took.Round(time.Millisecond))
		if took >= handshake {
			t.Errorf("G k took %s: it waited out the frozen coordinator's answer timeout (%s)", took.Round(time.Millisecond), handshake)
		}
	}
}

// TestCoordGroupRestartAfterShutdownWithOneDown: a follower coordinator
// is killed, the cluster is shut down without it, then all three are
// started again. The one that was down learns of the stop only from the
// log of the group that already starts again, and must stay with it (a
// review: it exited in 2 of 4 runs, and the group ran on two of three).
func TestCoordGroupRestartAfterShutdownWithOneDown(t *testing.T) {
	c, ctx := groupWithSurvivor(t)
	down := (c.LeaderIndex(t) + 1) % 3
	c.KillCoordK(t, down)
	shutdownGroup(t, c)
	for k := 0; k < 3; k++ {
		c.RestartCoordK(t, k)
	}
	cl := c.Client()
	defer cl.Close()
	if v, err := cl.Get(ctx, "survivor"); err != nil || string(v) != "v" {
		t.Fatalf("after the restart: %q %v", v, err)
	}
	time.Sleep(8 * testcluster.DefaultTimeout) // past its grace for a stop learned late (4 x RaftElection)
	for k := 0; k < 3; k++ {
		if !c.Coord(k).Running {
			b, _ := os.ReadFile(c.Coord(k).Log)
			t.Errorf("coordinator %d is not running after the group started again; its log:\n%s", k, lastLines(string(b), 12))
		}
	}
}

// TestCoordGroupShutdownRightAfterARestart: a follower killed for a
// while and started again just before `bin/client … shutdown` must exit
// with the rest of the group (SPEC §2: shutdown stops the whole cluster).
// Raft's leader retries a member that was down for long only after a
// backoff of up to about 10 s, and the restarted one applies nothing of
// its log before a leader tells it what is committed: it lacked the
// cluster's secret, refused the leader's stop notice ("authentication
// required"), and then ran elections alone for ever (a chaos review,
// anomaly D: 3 of 5 runs).
func TestCoordGroupShutdownRightAfterARestart(t *testing.T) {
	c, _ := groupWithSurvivor(t)
	down := (c.LeaderIndex(t) + 1) % 3
	c.KillCoordK(t, down)
	// timing: exception — long enough for Raft's backoff on the dead member to pass several seconds
	time.Sleep(12 * time.Second)
	c.RestartCoordK(t, down)
	shutdownGroup(t, c)
}
