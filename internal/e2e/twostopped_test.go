package e2e

import (
	"context"
	"fmt"
	"os"
	"slices"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/hashring"
	"ftkv/internal/testkit/testcluster"
)

// TestTwoServersStoppedAtOnce: servers 0 and 1 are frozen (SIGSTOP) at the
// same moment. Shard 0 has both copies on them and waits; but shard 1,
// whose secondary (server 2) answers, must be served by server 2 within a
// few failure timeouts, and shard 2 (server 2's own) must take writes
// again; the status shows server 1 failed, not "serving", server 0
// silent and shard 0 unavailable. When server 0
// is continued, the cluster recovers whole and no acknowledged write is
// lost. (The coordinator promoted the frozen server 1 for shard 0, and
// shard 1 stayed down until the servers were continued.)
func TestTwoServersStoppedAtOnce(t *testing.T) {
	const n = 3
	c := testcluster.Start(t, testcluster.Options{N: n})
	c.WaitRecovered(t, 10*time.Second)
	cls := dialClients(c, 2)
	l := startLedger(t, cls, 2, "ledger-twostopped", restartOpTimeout)
	waitProgress(t, c, "ledger before the freeze", l.AckedCount, 100, 300*time.Millisecond)
	v0 := c.StopServer(t, 0)
	v1 := c.StopServer(t, 1)
	start := time.Now()
	cl := c.Client()
	for _, shard := range []int{1, 2} {
		k := keysOnShard(n, shard, 1, "twostopped")[0]
		deadline := time.Now().Add(20 * testcluster.DefaultTimeout)
		for {
			ctx, cancel := context.WithTimeout(context.Background(), testcluster.DefaultTimeout)
			err := cl.Put(ctx, k, []byte("v"))
			var got []byte
			if err == nil {
				got, err = cl.Get(ctx, k)
			}
			cancel()
			if err == nil && string(got) == "v" {
				t.Logf("shard %d served again %s after the freeze", shard, time.Since(start).Round(time.Millisecond))
				break
			}
			if time.Now().After(deadline) {
				if f := os.Getenv("FTKV_KEEP_LOG"); f != "" {
					_ = os.WriteFile(f, []byte(c.Log()), 0o644)
				}
				t.Fatalf("shard %d (a copy on server 2, which answers) not served %s after servers 0 and 1 froze: %v\n%s",
					shard, time.Since(start).Round(time.Millisecond), err, testcluster.StatusJSON(c.Status(t)))
			}
		}
	}
	c.WaitFor(t, 10*time.Second, "server 1 failed in the status", func(st *client.ClusterStatus) error {
		if s := st.Servers[1].State; s == "serving" || st.Servers[1].Incarnation == v1.Incarnation && s != "down" && s != "dead" {
			return fmt.Errorf("server 1 (frozen) is %q", s)
		}
		return nil
	})
	// Server 0, frozen, is kept as the last copy of shard 0: the status
	// says it is silent (it said "starting") and shard 0 unavailable (it
	// said "serving").
	c.WaitFor(t, 10*time.Second, "server 0 silent, shard 0 unavailable", func(st *client.ClusterStatus) error {
		if s := st.Servers[0].State; s != "silent" {
			return fmt.Errorf("server 0 (frozen, the last copy of shard 0) is %q", s)
		}
		if s := st.Shards[0].State; s != "unavailable" {
			return fmt.Errorf("shard 0 (both copies frozen) is %q", s)
		}
		return nil
	})
	c.ContServer(t, v0)
	c.ContServer(t, v1)
	c.WaitRecovered(t, 2*recoverTimeout, v1)
	waitProgress(t, c, "ledger after the recovery", l.AckedCount, 100, 300*time.Millisecond)
	l.Stop()
	checkLedger(t, l, cl)
}

// TestRejoinedCopyIsWhole: server 0 is killed and re-seeded (incarnation
// 2); then servers 0 and 1 freeze, server 0 is dropped as shard 2's
// secondary, and only server 0 is continued: it becomes shard 2's
// secondary again, the same incarnation from the same primary. After the
// cluster recovered, server 2 is killed, so shard 2 is served from server
// 0's copy: every acknowledged write of shard 2 must be in it. (A review
// found 1,636 of 1,914 keys missing: the first re-seeding's success stood
// for the second, which never ran.)
func TestRejoinedCopyIsWhole(t *testing.T) {
	const n = 3
	c := testcluster.Start(t, testcluster.Options{N: n})
	c.WaitRecovered(t, 10*time.Second)
	cls := dialClients(c, 2)
	l := newLedger("ledger-rejoin", restartOpTimeout)
	t.Cleanup(func() { l.cancel(); l.Stop() })
	l.preload(t, cls[0], 3000, 100)
	l.start(t, cls, 2)
	c.WaitRecovered(t, 2*recoverTimeout, c.KillServer(t, 0))
	waitProgress(t, c, "ledger after server 0's respawn", l.AckedCount, 100, 300*time.Millisecond)
	v0 := c.StopServer(t, 0)
	c.StopServer(t, 1)
	c.WaitFor(t, 20*time.Second, "server 0 dropped as shard 2's secondary", func(st *client.ClusterStatus) error {
		if slices.Contains(st.Servers[0].SecondaryOf, 2) {
			return fmt.Errorf("server 0 is the secondary of %v", st.Servers[0].SecondaryOf)
		}
		return nil
	})
	c.ContServer(t, v0)
	c.WaitRecovered(t, 3*recoverTimeout)
	waitProgress(t, c, "ledger after the recovery", l.AckedCount, 100, 300*time.Millisecond)
	c.KillServer(t, 2)
	c.WaitFor(t, 10*time.Second, "shard 2 on server 0", func(st *client.ClusterStatus) error {
		if st.Shards[2].Primary != 0 {
			return fmt.Errorf("shard 2's primary is %d", st.Shards[2].Primary)
		}
		return nil
	})
	// Read before server 2 is back and takes the shard home with its log.
	l.Stop()
	ring := hashring.New(n)
	keys := l.keysWhere(func(k string) bool { return ring.Shard(k) == 2 })
	cl := c.Client()
	missing := 0
	for k, want := range keys {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		got, err := cl.Get(ctx, k)
		cancel()
		if err != nil || string(got) != want {
			missing++
			if missing <= 3 {
				t.Errorf("shard 2 key %q from server 0's copy: %.20q, %v", k, got, err)
			}
		}
	}
	if missing > 0 {
		t.Fatalf("%d of %d acknowledged shard-2 keys wrong or missing in server 0's rejoined copy", missing, len(keys))
	}
	t.Logf("%d acknowledged shard-2 keys read back from server 0's rejoined copy", len(keys))
}
