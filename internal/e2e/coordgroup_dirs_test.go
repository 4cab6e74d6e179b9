package e2e

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// TestCoordGroupInDirectoriesOfTheirOwn: three coordinators started in
// working directories of their own, with the default (relative) data_dir.
// After `bin/client … shutdown`, the two that did not lead are started
// again: one of them leads the restart, and every key must come back.
// Local servers used to run in their leader's working directory, so the
// new leader's found no log: "no log holds a copy of this shard", every
// shard unavailable (a review, 2026-12-03).
func TestCoordGroupInDirectoriesOfTheirOwn(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3, Coordinators: 3, CoordWorkDirs: true})
	c.WaitRecovered(t, recoverTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cl := c.Client()
	const keys = 60
	for i := 0; i < keys; i++ {
		must(t, cl.Put(ctx, fmt.Sprintf("k%d", i), []byte(fmt.Sprintf("v%d", i))))
	}
	cl.Close()
	leader := c.LeaderIndex(t)
	shutdownGroup(t, c)
	for k := 0; k < 3; k++ {
		if k != leader {
			c.RestartCoordK(t, k)
		}
	}
	cl = c.Client()
	defer cl.Close()
	for i := 0; i < keys; i++ {
		k := fmt.Sprintf("k%d", i)
		if v, err := cl.Get(ctx, k); err != nil || string(v) != fmt.Sprintf("v%d", i) {
			for j := 0; j < 3; j++ {
				b, _ := os.ReadFile(c.Coord(j).Log)
				t.Logf("coordinator %d's log:\n%s", j, lastLines(string(b), 8))
			}
			t.Fatalf("after a restart led by another coordinator than the first (%d led): %s = %q, %v", leader, k, v, err)
		}
	}
	t.Logf("coordinator %d led the first run; the restart without it brought all %d keys back", leader, keys)
}

// TestGroupRestartShardsNotServingEarly: after kill -9 of every process of
// a group, the restarted coordinators answer `status` before the servers
// run again. No shard may say "serving" while its primary is not serving:
// every shard said so while every server was "starting" (a review: 0.2 to
// 0.5 s, 3 of 3 restarts), and a script polling the shards took the
// cluster for ready.
func TestGroupRestartShardsNotServingEarly(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3, Coordinators: 3})
	st := c.WaitRecovered(t, recoverTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl := c.Client()
	must(t, cl.Put(ctx, "k", []byte("v")))
	cl.Close()
	for k := 0; k < 3; k++ {
		c.KillCoordK(t, k)
	}
	for _, s := range st.Servers {
		if s.PID > 0 && c.Owns(s.PID) {
			_ = syscall.Kill(s.PID, syscall.SIGKILL)
		}
	}
	testcluster.Eventually(t, 10*time.Second, "every server gone", func() bool {
		for _, s := range st.Servers {
			if syscall.Kill(s.PID, 0) == nil {
				return false
			}
		}
		return true
	})
	for k := 0; k < 3; k++ {
		c.RestartCoordK(t, k)
	}
	var early []string
	seen := 0
	_, err := c.Poll(recoverTimeout, 5*time.Millisecond, func(st *client.ClusterStatus) error {
		seen++
		for _, sh := range st.Shards {
			if sh.State != "serving" || sh.Primary < 0 || sh.Primary >= len(st.Servers) {
				continue
			}
			if ps := st.Servers[sh.Primary].State; ps != "serving" && ps != "degraded" && len(early) < 5 {
				early = append(early, fmt.Sprintf("epoch %d: shard %d serving, its primary %d %s", st.Epoch, sh.Shard, sh.Primary, ps))
			}
		}
		return testcluster.Recovered(st)
	})
	if err != nil {
		t.Fatalf("no recovery after the restart: %v", err)
	}
	if len(early) > 0 {
		t.Fatalf("%d statuses polled during the restart; shards said serving before their primary did:\n%s", seen, strings.Join(early, "\n"))
	}
	cl = c.Client()
	defer cl.Close()
	if v, err := cl.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("after the restart: %q, %v", v, err)
	}
	t.Logf("%d statuses polled during the restart, none with a shard serving before its primary", seen)
}
