package server

import (
	"testing"
	"time"

	"ftkv/timing"
)

// gaps returns how many of id's heartbeats arrived in [from, to) and the
// longest silence in that span: between two, the first counted from the
// one before from, and the last to to.
func gaps(fc *fakeCoord, id uint32, from, to time.Time) (n int, longest time.Duration) {
	prev := from
	for _, at := range fc.arrivals(id) {
		if at.Before(from) {
			prev = at
			continue
		}
		if !at.Before(to) {
			break
		}
		n++
		longest = max(longest, at.Sub(prev))
		prev = at
	}
	return n, max(longest, to.Sub(prev))
}

// TestHeartbeatNotHeldBySlowReport: gathering a heartbeat's report (key
// counts, link health, the log's state, RSS) takes 900 ms each time (a
// 2 s failure timeout: heartbeats every 400 ms), as locks held by writes
// and /proc under a load of 1 MiB values made it take up to 360 ms of a
// 500 ms timeout. Heartbeats must still leave every period: they waited
// for each gathering, and the coordinator failed live servers.
func TestHeartbeatNotHeldBySlowReport(t *testing.T) {
	fc := startFakeCoord(t)
	tm := timing.New(2 * time.Second)
	s := startTestServer(t, fc, 0, tm)
	slow := func() { time.Sleep(900 * time.Millisecond) }
	reportGathering.Store(&slow)
	defer reportGathering.Store(nil)
	from := time.Now()
	time.Sleep(4 * time.Second)
	n, gap := gaps(fc, s.cfg.ID, from, time.Now())
	t.Logf("%d heartbeats in 4 s (period %s), the longest gap %s", n, tm.Heartbeat, gap)
	if limit := tm.Heartbeat + 300*time.Millisecond; gap > limit {
		t.Errorf("a gap of %s between heartbeats while each report took 900 ms to gather: over %s", gap, limit)
	}
}

// TestHeartbeatsStopWhenWedged: a server whose report cannot be gathered
// (a lock held for 3 s) must fall silent within the failure timeout, so
// that the coordinator fails it, as it did when the heartbeat gathered
// its report itself. With the report gathered beside the heartbeats, it
// went on heartbeating with its last report (a review: 30 heartbeats in
// those 3 s).
func TestHeartbeatsStopWhenWedged(t *testing.T) {
	fc := startFakeCoord(t)
	tm := timing.New(500 * time.Millisecond)
	s := startTestServer(t, fc, 0, tm)
	time.Sleep(300 * time.Millisecond)
	s.mu.Lock()
	from := time.Now()
	time.Sleep(3 * time.Second)
	s.mu.Unlock()
	late, _ := gaps(fc, s.cfg.ID, from.Add(tm.FailureTimeout), from.Add(3*time.Second))
	early, _ := gaps(fc, s.cfg.ID, from, from.Add(tm.FailureTimeout))
	t.Logf("with the server's lock held 3 s: %d heartbeats in the first failure timeout, %d after it", early, late)
	if late > 0 {
		t.Errorf("%d heartbeats more than a failure timeout (%s) into a 3 s wedge: the coordinator would never fail it", late, tm.FailureTimeout)
	}
	testAfter := time.Now().Add(2 * time.Second)
	for time.Now().Before(testAfter) {
		if n, _ := gaps(fc, s.cfg.ID, from.Add(3*time.Second), time.Now()); n > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("no heartbeat within 2 s after the lock was released")
}

// TestHeartbeatNotHeldByPrimaryLock: a primary's lock held for 1.5 s (a
// write path stalled by the garbage collector on a busy machine: 1.2 s
// measured under writes of 1 MiB values) while the rest of the server
// runs. Heartbeats must go on: the report's link health took that lock,
// the gathering ran past half the failure timeout, and the server fell
// silent as if wedged — the coordinator failed a live server.
func TestHeartbeatNotHeldByPrimaryLock(t *testing.T) {
	fc := startFakeCoord(t)
	a, _ := pairOfTwoOn(t, fc, "", false, func(c *Config) { c.Timing = timing.New(500 * time.Millisecond) })
	tm := a.cfg.Timing
	time.Sleep(300 * time.Millisecond)
	a.mu.Lock()
	p := a.prims[0]
	a.mu.Unlock()
	p.mu.Lock()
	from := time.Now()
	time.Sleep(1500 * time.Millisecond)
	p.mu.Unlock()
	n, gap := gaps(fc, a.cfg.ID, from, from.Add(1500*time.Millisecond))
	t.Logf("with a primary's lock held 1.5 s: %d heartbeats (period %s), the longest gap %s", n, tm.Heartbeat, gap)
	if limit := tm.Heartbeat + 200*time.Millisecond; gap > limit {
		t.Errorf("a gap of %s between heartbeats while one primary's lock was held: over %s (the failure timeout is %s)", gap, limit, tm.FailureTimeout)
	}
}
