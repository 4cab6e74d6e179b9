package coord

import (
	"sync/atomic"
	"time"
)

// A coordinator of a group learns that the cluster was stopped in order
// in two ways: it applies the committed stop, or the leader tells it
// (stopOthers). One that was frozen (SIGSTOP) while the cluster stopped
// learns both only when it is continued, from what waited in its sockets,
// maybe after the group was started again; one that was down (killed,
// stopped) learns the stop from the log when the group starts again.
// Exiting then left the group running on two of three. So a coordinator
// that was just continued, or that applies a stop written in an earlier
// term than its own, waits a grace before it acts on the stop, and stays
// if meanwhile it applies a later state of a cluster that runs. Otherwise
// it acts at once.

// freezeGap: ticks further apart than this mean the process was frozen
// (or starved of CPU as long).
// timing: exception — a local scheduling gap, not a network or failure wait.
const freezeGap = time.Second

// freezeWatch notes when the process last resumed after a gap of
// freezeGap or more between its ticks.
type freezeWatch struct {
	last    atomic.Int64 // unix nanoseconds of the last tick
	resumed atomic.Int64 // unix nanoseconds; 0: never frozen
}

func (w *freezeWatch) run(done <-chan struct{}) {
	const tick = 100 * time.Millisecond // timing: exception — as freezeGap
	t := time.NewTicker(tick)
	defer t.Stop()
	w.last.Store(time.Now().UnixNano())
	for {
		select {
		case <-done:
			return
		case <-t.C:
			now := time.Now().UnixNano()
			if time.Duration(now-w.last.Load()) >= freezeGap {
				w.resumed.Store(now)
			}
			w.last.Store(now)
		}
	}
}

// since reports whether the process resumed after a freeze within d, or
// is resuming now (its watch has not ticked since).
func (w *freezeWatch) since(d time.Duration) bool {
	now := time.Now().UnixNano()
	if l := w.last.Load(); l != 0 && time.Duration(now-l) >= freezeGap {
		return true
	}
	r := w.resumed.Load()
	return r != 0 && time.Duration(now-r) < d
}

// stopGrace is how long a coordinator just continued waits before it
// acts on a stop: time for the group, if it runs again, to bring it its
// later states.
func (c *Coordinator) stopGrace() time.Duration { return 4 * c.opts.Timing.RaftElection }

// stopGroupMember exits this coordinator for a stop committed at index
// stop (why says how it learned), at once unless it learned the stop late
// or was just continued after a freeze: then only if within the grace it
// applies no later state of a cluster that runs.
func (c *Coordinator) stopGroupMember(stop uint64, why string, late bool) {
	if late || c.frozen.since(c.stopGrace()) {
		deadline := time.Now().Add(c.stopGrace())
		for time.Now().Before(deadline) {
			if i, stopped := c.fsm.lastApplied(); i > stop && !stopped {
				c.log.Warn().Uint64("stop_index", stop).Uint64("index", i).Str("how", why).
					Msg("a stale stop, learned after this coordinator was frozen: the group runs the cluster again; staying")
				return
			}
			time.Sleep(c.opts.Timing.Poll)
		}
	}
	c.log.Info().Str("how", why).Msg("the cluster was stopped")
	c.stoppedOnce.Do(func() { close(c.stopped) })
}
