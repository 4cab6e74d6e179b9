package e2e

import (
	"fmt"
	"testing"
	"time"

	"ftkv/client"
)

// TestCoordGroupDeadMemberShown: a coordinator killed with kill -9 is
// shown in status as "unreachable" (by the leader, whose heartbeats to
// it fail) within a few seconds, and as a follower again once it is back.
// Before, status listed a dead coordinator as "follower" for as long as
// it stayed dead (found by a black-box test).
func TestCoordGroupDeadMemberShown(t *testing.T) {
	c, _, _ := startGroup(t, 3)
	lead := c.LeaderIndex(t)
	victim := (lead + 1) % groupCoords
	c.KillCoordK(t, victim)
	role := func(st *client.ClusterStatus, k int) string {
		for _, co := range st.Coordinators {
			if co.ID == k {
				return co.Role
			}
		}
		return "missing"
	}
	c.WaitFor(t, 15*time.Second, fmt.Sprintf("coordinator %d shown unreachable", victim), func(st *client.ClusterStatus) error {
		if r := role(st, victim); r != "unreachable" {
			return fmt.Errorf("coordinator %d has role %q (answered by %d, leader %d)", victim, r, st.Answered, st.Leader)
		}
		if r := role(st, lead); r != "leader" {
			return fmt.Errorf("the leader %d has role %q", lead, r)
		}
		return nil
	})
	c.RestartCoordK(t, victim)
	c.WaitFor(t, 30*time.Second, fmt.Sprintf("coordinator %d back as a follower", victim), func(st *client.ClusterStatus) error {
		if r := role(st, victim); r != "follower" {
			return fmt.Errorf("coordinator %d has role %q", victim, r)
		}
		return nil
	})
}
