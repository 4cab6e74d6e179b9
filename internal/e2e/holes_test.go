package e2e

// Holes of the control-plane review that need real processes.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/hashring"
	"ftkv/internal/testkit/testcluster"
	"ftkv/server"
)

// startCutCluster starts 3 servers that read the replication cuts of
// server.TestCutReplEnv; it returns the cluster, a func that cuts the link
// from server 0 to server 1 (shard 0's secondary) and returns when, and
// the status before.
func startCutCluster(t *testing.T) (*testcluster.Cluster, func() time.Time, *client.ClusterStatus) {
	t.Helper()
	cut := filepath.Join(t.TempDir(), "cut")
	// Servers inherit the coordinator's environment, the coordinator the test's.
	t.Setenv(server.TestCutReplEnv, cut)
	c := testcluster.Start(t, testcluster.Options{N: 3})
	before := c.WaitRecovered(t, recoverTimeout)
	sec := before.Servers[1]
	return c, func() time.Time {
		if err := os.WriteFile(cut, fmt.Appendf(nil, "0 1 %d\n", sec.Incarnation), 0o644); err != nil {
			t.Fatal(err)
		}
		t.Logf("cut the replication link from server 0 to server 1 (incarnation %d, pid %d)", sec.Incarnation, sec.PID)
		return time.Now()
	}, before
}

// TestHole9PrimarySecondaryPartition (hole 9 of the control-plane review):
// the replication link between a primary and its secondary is cut while
// both still heartbeat. The primary can commit nothing (a write waits for
// its secondary's acknowledgement), and its heartbeats keep its lease, so
// nothing failed over and the shard's writes stalled for good. Writes to
// that shard must succeed again within a few failure timeouts, and nothing
// acknowledged may be lost, then or after the primary is killed once the
// cluster has recovered (the secondary copy rebuilt after the partition
// holds every write too).
func TestHole9PrimarySecondaryPartition(t *testing.T) {
	c, cutLink, before := startCutCluster(t)
	to := testcluster.DefaultTimeout
	sec := before.Servers[1] // secondary of shard 0, whose primary is server 0

	cls := dialClients(c, 4)
	l := startLedger(t, cls, 8, "hole9", foOpTimeout)
	time.Sleep(3 * to) // load before the cut

	keys := keysOfShard(0, 3, 2000) // one fresh key per probe
	cutAt := cutLink()

	// A write to shard 0 must succeed again within a few failure timeouts.
	limit := 12 * to
	var writable time.Duration
	for i := 0; ; i++ {
		if i == len(keys) {
			t.Fatal("out of probe keys")
		}
		if err := l.put(cls[0], keys[i], "v"+keys[i]); err == nil && time.Since(cutAt) > to {
			writable = time.Since(cutAt)
			break
		}
		if time.Since(cutAt) > limit {
			st, _ := c.TryStatus(context.Background())
			t.Fatalf("shard 0 not writable %s after its primary lost its link to its secondary (limit %s)\nstatus:\n%s",
				time.Since(cutAt).Round(time.Millisecond), limit, testcluster.StatusJSON(st))
		}
		time.Sleep(to / 10)
	}
	t.Logf("shard 0 writable again %s after the cut", writable.Round(time.Millisecond))

	// The secondary the primary could not reach was replaced; the cluster
	// recovers fully (the cut names only that incarnation).
	after := c.WaitRecovered(t, recoverTimeout, testcluster.Victim{ID: 1, PID: sec.PID, Incarnation: sec.Incarnation})
	if after.Servers[0].PID != before.Servers[0].PID {
		t.Fatalf("the primary (server 0) was replaced: pid %d -> %d; the secondary should have been", before.Servers[0].PID, after.Servers[0].PID)
	}
	time.Sleep(2 * to)
	l.Stop()
	n := l.verify(t, cls[1], nil)
	t.Logf("%d keys verified after recovery (%d acknowledged)", n, l.Acked())

	// Every acknowledged write is in both copies: kill the primary of
	// shard 0; its rebuilt secondary serves everything.
	v := c.KillServer(t, 0)
	c.WaitRecovered(t, recoverTimeout, v)
	n = l.verify(t, cls[2], nil)
	t.Logf("%d keys verified after killing server 0", n)
}

// keysOfShard returns n keys of shard among shards.
func keysOfShard(shard, shards, n int) []string {
	r := hashring.New(shards)
	var out []string
	for i := 0; len(out) < n; i++ {
		k := fmt.Sprintf("hole9-shard%d-%d", shard, i)
		if r.Shard(k) == shard {
			out = append(out, k)
		}
	}
	return out
}
