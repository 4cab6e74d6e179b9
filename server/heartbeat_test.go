package server

import (
	"sync"
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
// counts, link health, the log's state, RSS) is held up (locks held by
// writes and /proc under a load of 1 MiB values made it take up to 360 ms
// of a 500 ms timeout). Heartbeats must still leave every period: they
// waited for each gathering, and the coordinator failed live servers.
// One gathering is held until the test has seen three heartbeats leave
// after it began (the failure timeout is 10 s, so a gathering may run
// 5 s before the server falls silent as wedged; heartbeats every 200 ms).
// (It timed gatherings of 900 ms against the longest gap between
// heartbeats, 700 ms allowed for a 400 ms period: a heartbeat loop left
// unscheduled 300 ms on a loaded machine would have failed it.)
func TestHeartbeatNotHeldBySlowReport(t *testing.T) {
	fc := startFakeCoord(t)
	tm := timing.New(10 * time.Second)
	tm.Heartbeat = 200 * time.Millisecond
	s := startTestServer(t, fc, 0, tm) // (its first report gathered)
	began, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	hold := func() { once.Do(func() { close(began); <-release }) }
	reportGathering.Store(&hold)
	defer reportGathering.Store(nil)
	defer once.Do(func() {}) // (no gathering held after the test)
	var released sync.Once
	defer released.Do(func() { close(release) })
	select {
	case <-began:
	case <-time.After(10 * time.Second):
		t.Fatal("no report gathered in 10 s")
	}
	from := time.Now()
	n := 0
	for deadline := from.Add(4 * time.Second); n < 3 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		n, _ = gaps(fc, s.cfg.ID, from, time.Now())
	}
	held := time.Since(from)
	released.Do(func() { close(release) })
	t.Logf("%d heartbeats in the %s a report's gathering was held (period %s)", n, held.Round(time.Millisecond), tm.Heartbeat)
	if n < 3 {
		t.Errorf("%d heartbeats in %s while a report's gathering was held (period %s): heartbeats wait for their report", n, held.Round(time.Millisecond), tm.Heartbeat)
	}
}

// TestHeartbeatsStopWhenWedged: a server whose report cannot be gathered
// (a lock held for 4 s) must fall silent within the failure timeout, so
// that the coordinator fails it, as it did when the heartbeat gathered
// its report itself. With the report gathered beside the heartbeats, it
// went on heartbeating with its last report (a review: 30 heartbeats in
// 3 s). The failure timeout is 2 s: the last heartbeat leaves at most a
// period (400 ms) and half the failure timeout into the wedge, 600 ms
// before the failure timeout, room for one that reaches the fake
// coordinator late on a loaded machine. (With a 500 ms failure timeout
// that room was 150 ms.)
func TestHeartbeatsStopWhenWedged(t *testing.T) {
	fc := startFakeCoord(t)
	tm := timing.New(2 * time.Second)
	s := startTestServer(t, fc, 0, tm)
	time.Sleep(300 * time.Millisecond)
	const wedge = 4 * time.Second
	s.mu.Lock()
	from := time.Now()
	time.Sleep(wedge)
	s.mu.Unlock()
	late, _ := gaps(fc, s.cfg.ID, from.Add(tm.FailureTimeout), from.Add(wedge))
	early, _ := gaps(fc, s.cfg.ID, from, from.Add(tm.FailureTimeout))
	t.Logf("with the server's lock held %s: %d heartbeats in the first failure timeout, %d after it", wedge, early, late)
	if late > 0 {
		t.Errorf("%d heartbeats more than a failure timeout (%s) into a %s wedge: the coordinator would never fail it", late, tm.FailureTimeout, wedge)
	}
	testAfter := time.Now().Add(5 * time.Second)
	for time.Now().Before(testAfter) {
		if n, _ := gaps(fc, s.cfg.ID, from.Add(wedge), time.Now()); n > 0 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Errorf("no heartbeat within 5 s after the lock was released")
}

// TestHeartbeatNotHeldByPrimaryLock: a primary's lock held for 4 s (a
// write path stalled by the garbage collector on a busy machine: 1.2 s
// measured under writes of 1 MiB values) while the rest of the server
// runs. Heartbeats must go on: the report's link health took that lock,
// the gathering ran past half the failure timeout, and the server fell
// silent as if wedged — the coordinator failed a live server. No gap
// between heartbeats may reach the failure timeout (2 s; heartbeats every
// 400 ms): with the lock in the gathering the server is silent from 1 s
// into the hold to its end, 3 s. (It held the lock 1.5 s with a 500 ms
// failure timeout and allowed gaps of 300 ms, a heartbeat period and
// 200 ms: a heartbeat loop left unscheduled that long on a loaded
// machine would have failed it.)
func TestHeartbeatNotHeldByPrimaryLock(t *testing.T) {
	fc := startFakeCoord(t)
	a, _ := pairOfTwoOn(t, fc, "", false, func(c *Config) { c.Timing = timing.New(2 * time.Second) })
	tm := a.cfg.Timing
	time.Sleep(300 * time.Millisecond)
	a.mu.Lock()
	p := a.prims[0]
	a.mu.Unlock()
	const hold = 4 * time.Second
	p.mu.Lock()
	from := time.Now()
	time.Sleep(hold)
	p.mu.Unlock()
	n, gap := gaps(fc, a.cfg.ID, from, from.Add(hold))
	t.Logf("with a primary's lock held %s: %d heartbeats (period %s), the longest gap %s", hold, n, tm.Heartbeat, gap)
	if gap >= tm.FailureTimeout {
		t.Errorf("a gap of %s between heartbeats while one primary's lock was held: the coordinator fails a server silent for its failure timeout, %s", gap, tm.FailureTimeout)
	}
}
