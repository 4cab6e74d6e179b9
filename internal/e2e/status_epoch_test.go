package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// TestStatusEpochAtStart: as soon as the coordinator says the cluster is
// ready, status shows every serving server at the view's epoch (it
// confirmed the view by answering its push), not at epoch 0 until its next
// heartbeat; likewise right after a failover. Found by a black-box test.
func TestStatusEpochAtStart(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})
	check := func(what string) {
		t.Helper()
		st := c.Status(t)
		for _, s := range st.Servers {
			if s.State == "serving" && s.Epoch != st.Epoch {
				t.Errorf("%s: server %d serving at epoch %d, the view's is %d", what, s.ID, s.Epoch, st.Epoch)
			}
		}
	}
	check("at start")
	v := c.KillServer(t, 1)
	c.WaitRecovered(t, recoverTimeout, v)
	check("after recovery")
}

// TestStatusKeyCountsFollowTheView: the key counts status shows for a
// server are those of its roles in the view it shows, from the moment it
// shows the server serving: right after a restart (the servers' tables
// came back from their logs), and right after a failover (the promoted
// secondary's keys count as its primary's). Before, they were its last
// heartbeat's, gathered under the previous view: a black-box test read
// every key as a secondary's for about 150 ms after a restart.
func TestStatusKeyCountsFollowTheView(t *testing.T) {
	const n, per = 3, 20
	c := testcluster.Start(t, testcluster.Options{N: n})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := c.Client()
	for _, k := range keysOnShards(n, per, "counts") {
		if err := cl.Put(ctx, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	cl.Close()
	// wrong says how st's counts differ from its servers' roles.
	wrong := func(st *client.ClusterStatus) error {
		for _, s := range st.Servers {
			if s.State != "serving" && s.State != "degraded" {
				continue
			}
			if want := uint64(per * len(s.PrimaryOf)); s.PrimaryKeys != want {
				return fmt.Errorf("server %d (%s, primary of %v) shows %d primary keys, want %d", s.ID, s.State, s.PrimaryOf, s.PrimaryKeys, want)
			}
			if want := uint64(per * len(s.SecondaryOf)); s.SecondaryKeys != want {
				return fmt.Errorf("server %d (%s, secondary of %v) shows %d secondary keys, want %d", s.ID, s.State, s.SecondaryOf, s.SecondaryKeys, want)
			}
		}
		return nil
	}
	// counts checks the first status (polled without pause) in which
	// ready holds.
	counts := func(what string, ready func(*client.ClusterStatus) bool) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; {
			if st := c.Status(t); ready(st) {
				if err := wrong(st); err != nil {
					t.Errorf("%s: %v", what, err)
				}
				return
			}
			if time.Now().After(deadline) {
				c.Fatalf(t, "%s: the cluster did not get there in 30s", what)
			}
		}
	}
	allServing := func(st *client.ClusterStatus) bool {
		for _, s := range st.Servers {
			if s.State != "serving" {
				return false
			}
		}
		return true
	}
	// (Writes show in the next heartbeat's counts.)
	c.WaitFor(t, 5*time.Second, "the written keys counted", wrong)
	if err := c.Shutdown(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	c.RestartCoord(t)
	counts("right after the restart", allServing)

	c.KillServer(t, 1)
	counts("right after the failover of server 1", func(st *client.ClusterStatus) bool {
		s := st.Servers[2]
		return slices.Contains(s.PrimaryOf, 1) && (s.State == "serving" || s.State == "degraded")
	})
}

// TestStatusKeyCountsRightAfterWrites: status asked right after writes
// were acknowledged counts them, on the primary and on the secondary of
// each. Before, the counts were the servers' last heartbeat's (one every
// fifth of the failure timeout): a contract check wrote 200 keys and
// saw 120 primary and 122 secondary keys, 200 of each 300 ms later.
func TestStatusKeyCountsRightAfterWrites(t *testing.T) {
	const n, per = 3, 10
	c := testcluster.Start(t, testcluster.Options{N: n})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cl := c.Client()
	defer cl.Close()
	for round := 1; round <= 5; round++ {
		for _, k := range keysOnShards(n, per, fmt.Sprint("fresh-counts-", round)) {
			if err := cl.Put(ctx, k, []byte("v")); err != nil {
				t.Fatal(err)
			}
		}
		st, err := cl.Status(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var pk, sk uint64
		for _, s := range st.Servers {
			pk += s.PrimaryKeys
			sk += s.SecondaryKeys
		}
		if want := uint64(round * per * n); pk != want || sk != want {
			t.Errorf("round %d: status right after %d acknowledged writes in all shows %d primary and %d secondary keys", round, want, pk, sk)
		}
	}
}
