package server

import (
	"testing"
	"time"

	"ftkv/timing"
)

// TestHeartbeatNotHeldBySlowReport: gathering a heartbeat's report (key
// counts, link health, the log's state, RSS) takes 1.5 s each time, as
// locks held by writes and /proc under a load of 1 MiB values made it
// take up to 360 ms. Heartbeats must still leave every period: the
// coordinator fails a server whose heartbeats stop for its failure
// timeout (500 ms here), and it failed live servers so.
func TestHeartbeatNotHeldBySlowReport(t *testing.T) {
	fc := startFakeCoord(t)
	tm := timing.New(500 * time.Millisecond)
	s := startTestServer(t, fc, 0, tm)
	slow := func() { time.Sleep(1500 * time.Millisecond) }
	reportGathering.Store(&slow)
	defer reportGathering.Store(nil)
	from := time.Now()
	time.Sleep(3 * time.Second)
	var prev time.Time
	var gap time.Duration
	n := 0
	for _, at := range fc.arrivals(s.cfg.ID) {
		if at.Before(from) {
			prev = at
			continue
		}
		n++
		gap = max(gap, at.Sub(prev))
		prev = at
	}
	t.Logf("%d heartbeats in 3 s (period %s), the longest gap %s", n, tm.Heartbeat, gap)
	if gap > tm.FailureTimeout {
		t.Errorf("a gap of %s between heartbeats while their report was slow to gather: over the failure timeout %s", gap, tm.FailureTimeout)
	}
}
