package server

import (
	"sync"
	"sync/atomic"
	"time"
)

// leaseTracker is one lease renewed by answers to numbered requests: the
// coordinator's answers to heartbeats, or a secondary's answers to pings.
// An answer renews the lease from the moment its request was sent (never
// from when the answer came: the answering side may have counted from
// then), the lease only moves forward, and answering request n drops the
// sent-times of n and everything older (their answers are late or lost).
//
// Every time is taken on the monotonic clock (as nanoseconds since
// monoBase): a step of the wall clock on this host must never extend a
// lease, since the new primary's wait and the coordinator's failure
// timeout run on monotonic clocks too.
type leaseTracker struct {
	lease time.Duration
	until atomic.Int64 // monotonic nanoseconds (mono) until which the lease holds

	mu   sync.Mutex // guards seq and sent
	seq  uint64     // numbers requests across connections, so an answer on an old one cannot match a new request
	sent map[uint64]time.Time
}

func newLeaseTracker(lease time.Duration) *leaseTracker {
	return &leaseTracker{lease: lease, sent: make(map[uint64]time.Time)}
}

// sending numbers a request sent at now and remembers when.
func (lt *leaseTracker) sending(now time.Time) uint64 {
	lt.mu.Lock()
	defer lt.mu.Unlock()
	lt.seq++
	lt.sent[lt.seq] = now
	return lt.seq
}

// answered takes the answer to request seq; renew says whether it grants
// the lease (a refusal still settles the requests up to seq).
func (lt *leaseTracker) answered(seq uint64, renew bool) {
	lt.mu.Lock()
	t0, ok := lt.sent[seq]
	for s := range lt.sent {
		if s <= seq {
			delete(lt.sent, s)
		}
	}
	lt.mu.Unlock()
	if !ok || !renew {
		return
	}
	until := mono(t0.Add(lt.lease))
	for {
		cur := lt.until.Load()
		if until <= cur || lt.until.CompareAndSwap(cur, until) {
			return
		}
	}
}

// valid reports whether the lease holds at now (a time.Now() reading).
func (lt *leaseTracker) valid(now time.Time) bool { return mono(now) < lt.until.Load() }

// monoBase is the origin of mono.
var monoBase = time.Now()

// mono is t on the monotonic clock, in nanoseconds since monoBase: t.Sub
// uses the monotonic readings of both times (time.Now() carries one), so
// wall-clock steps do not move it.
func mono(t time.Time) int64 { return int64(t.Sub(monoBase)) }
