package e2e

// Review tests of the partial resync after an idle kill (b464d5a), with
// real processes.

import (
	"strings"
	"testing"
	"time"
)

// TestReviewIdleResyncThenKillEverything: server 1 is killed while
// nothing is written and caught up by two idle partial resyncs; then every
// process dies at once, right away. The restarted cluster must hold every
// acknowledged write, go on taking writes, and survive a kill of each
// server in turn, with no gap in any replication log.
func TestReviewIdleResyncThenKillEverything(t *testing.T) {
	c, _, l := preloadedCluster(t, "ledger-idle-killall", 3000, 100)
	v := c.KillServer(t, 1)
	c.WaitRecovered(t, recoverTimeout, v)
	log := c.Log()
	if d, r := strings.Count(log, `"message":"partial resync done"`), strings.Count(log, "partial resync impossible"); d != 2 || r != 0 {
		t.Errorf("%d partial resyncs done, %d refused; want 2 and 0", d, r)
	}
	c.KillEverything(t)
	c.RestartCoord(t)
	allServing(t, c, 30*time.Second)
	cls := dialClients(c, 2)
	l.start(t, cls, 2)
	waitProgress(t, c, "ledger after the restart", l.AckedCount, 200, time.Second)
	killEach(t, c, l, []int{0, 1, 2}, 200, time.Second)
	checkLedger(t, l, cls[0])
	noLogGap(t, c)
}

// TestReviewKillPromotedRightAfterIdleResync: server 1 is killed idle;
// as soon as its respawn's two partial resyncs are done, server 2 (the
// promoted primary of shard 1, which the resync caught up from) is killed
// too. Every acknowledged write must survive, writes go on afterwards,
// and no gap is seen.
func TestReviewKillPromotedRightAfterIdleResync(t *testing.T) {
	c, cls, l := preloadedCluster(t, "ledger-idle-killpromoted", 3000, 100)
	c.KillServer(t, 1)
	deadline := time.Now().Add(recoverTimeout)
	for strings.Count(c.Log(), `"message":"partial resync done"`) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("no two partial resyncs after %s", recoverTimeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
	v2 := c.KillServer(t, 2)
	c.WaitRecovered(t, 2*recoverTimeout, v2)
	l.start(t, cls, 2)
	waitProgress(t, c, "ledger after the kills", l.AckedCount, 200, time.Second)
	killEach(t, c, l, []int{0, 1, 2}, 200, time.Second)
	checkLedger(t, l, cls[0])
	noLogGap(t, c)
}

// TestPartialResyncIdleKillsInTurn: nothing is written while servers 1,
// 2, 0 and 1 again are killed in turn, each after the previous recovery
// ended. Every respawn recovered both its copies from its log, and no
// write came since: each must be caught up by two partial resyncs, never
// re-seeded in full. (Before: only the first kill was; a copy recovered
// below the index a promotion or a resync had brought its shard to,
// which no log record carried, was re-seeded in full, 6 of the 8 copies.)
// Then every process dies at once: the restart re-seeds nothing either,
// and the cluster goes on taking writes through a kill of each server.
func TestPartialResyncIdleKillsInTurn(t *testing.T) {
	c, _, l := preloadedCluster(t, "ledger-idle-turns", 3000, 100)
	for i, victim := range []int{1, 2, 0, 1} {
		v := c.KillServer(t, victim)
		c.WaitRecovered(t, recoverTimeout, v)
		log := c.Log()
		done, refused := strings.Count(log, `"message":"partial resync done"`), strings.Count(log, "partial resync impossible")
		if done != 2*(i+1) || refused != 0 {
			t.Errorf("after the idle kill of server %d: %d partial resyncs done and %d refused in all, want %d and 0; full re-seedings: %d",
				victim, done, refused, 2*(i+1), strings.Count(log, `"message":"re-seeding sent"`))
		}
	}
	c.KillEverything(t)
	c.RestartCoord(t) // (a new log)
	allServing(t, c, 30*time.Second)
	if log := c.Log(); strings.Contains(log, `"message":"re-seeding sent"`) || strings.Contains(log, "re-seeding it in full") {
		t.Errorf("the restart after the idle kills re-seeded a copy in full:\n%s", grepLines(log, "re-seeding"))
	}
	cls := dialClients(c, 2)
	l.start(t, cls, 2)
	waitProgress(t, c, "ledger after the restart", l.AckedCount, 200, time.Second)
	killEach(t, c, l, []int{0, 1, 2}, 200, time.Second)
	checkLedger(t, l, cls[0])
	noLogGap(t, c)
}
