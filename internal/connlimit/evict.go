package connlimit

import (
	"cmp"
	"errors"
	"slices"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Eviction bounds the output of many connections that each stay under
// every limit of its own: a client that never reads holds one answer
// per connection (the budget pauses only those holding more than
// BudgetFloor, and one with less reads a request more), 1,000 of them
// 1,000 answers. Beyond the budget the port's connections of an Evict
// port whose output has gone unread longest are closed, as many as
// bring it back under: those holding less than BudgetFloor too, or
// clients holding just under it each (their kernel's buffers full) keep
// the budget spent for as long as they like, and a Gate port's large
// answers waiting (TestSubFloorHoldersEvicted). Beyond one and a half
// times the budget a Gate
// port's answers over BudgetFloor wait (HoldBack), also for connections
// holding nothing (or the connections opened in a burst each add an
// answer before any is stale); small answers go on.
//
// timing: exception — local buffer bookkeeping. A connection is stale
// once its queued output has not shrunk (neither gnet's queue nor the
// kernel's send queue) for staleAfter since it began holding output: a
// client that reads its answers shows a drain within milliseconds, and
// staleAfter is long enough for a collector's pause or a scheduler's
// delay of the reader. One whose client has been seen reading again
// after a pause in this episode of holding output, or that read
// readVolume on the connection (sampleAcked), counts as drained
// readerCredit later than it did: stale only after 1 s
// without a drain, and after the others as stale as it is. A client
// reading large answers slowly, in bursts, shows no drain for 130-320 ms
// at a time (loopback's large buffers), and judged by the time since its
// last drain alone it looked staler than newcomers holding their first
// answer, and was closed again and again (a review: 3-19 times in 10-18
// s; TestSlowReaderNotEvicted). The credit is one key with the time, not
// a tier above it: a client that read once and then stopped must not
// outrank honest newcomers for good.
const (
	staleAfter   = 100 * time.Millisecond
	readerCredit = 900 * time.Millisecond
	evictEvery   = fastSweep // at most one scan of the holders this often
)

// stale is how long a holder's output may go undrained before it is
// stale: Config.StaleAfter, or staleAfter.
func (c Config) stale() time.Duration {
	if c.StaleAfter > 0 {
		return c.StaleAfter
	}
	return staleAfter
}

// firstDrain is Config.FirstDrain, or firstDrain.
func (c Config) firstDrain() time.Duration {
	if c.FirstDrain > 0 {
		return c.FirstDrain
	}
	return firstDrain
}

var errOutputBudget = errors.New("queued output unread the longest while the server's output budget is exceeded")

// holders is the connections of Evict ports holding output, for
// Budget.evict.
type holders struct {
	mu       sync.Mutex
	set      map[*State]struct{}
	evicting int64 // output of the connections chosen, not closed yet
	lastScan int64 // unix ns
}

// track records, on st's loop, whether st (of an Evict port) holds
// queued output o, and since when it has not drained; over the budget,
// the stalest holders are closed.
func (st *State) track(o int64, drained bool) {
	b := st.p.cfg.Budget
	if b == nil {
		return
	}
	holds := o > 0
	if holds != st.holder {
		st.holder = holds
		if holds {
			// A new episode: its client shows again that it reads
			// (sampleAcked). (Set before the holder is seen by
			// evict on another loop.)
			st.activeAt.Store(time.Now().UnixNano())
			st.reader.Store(false)
			st.acked, st.ackedAt, st.ackedSeen, st.resumed = 0, 0, 0, false
		}
		b.h.mu.Lock()
		if holds {
			if b.h.set == nil {
				b.h.set = make(map[*State]struct{})
			}
			b.h.set[st] = struct{}{}
		} else {
			b.h.drop(st)
		}
		b.h.mu.Unlock()
	}
	if holds && (drained || st.kernelDrainedAt > st.activeAt.Load()) {
		st.activeAt.Store(max(st.drainedAt, st.kernelDrainedAt))
	}
	if b.over() {
		b.evict()
	}
}

// untrack drops a closed connection from the holders.
func (st *State) untrack() {
	if b := st.p.cfg.Budget; b != nil && st.holder {
		st.holder = false
		b.h.mu.Lock()
		b.h.drop(st)
		b.h.mu.Unlock()
	}
}

// drop removes st (under h.mu).
func (h *holders) drop(st *State) {
	delete(h.set, st)
	if st.chosen > 0 {
		h.evicting -= st.chosen
		st.chosen = 0
	}
}

// evict closes the holders whose output went unread longest, stale ones
// only, until the output they hold brings the budget back under its
// limit (counting those chosen and not closed yet). Any goroutine.
func (b *Budget) evict() {
	now := time.Now().UnixNano()
	type cand struct {
		st    *State
		since int64 // unix ns: its last drain, readerCredit later for a reader
		out   int64
	}
	var victims []*State
	b.h.mu.Lock()
	excess := b.used.Load() - b.limit - b.h.evicting
	if excess > 0 && time.Duration(now-b.h.lastScan) >= evictEvery {
		b.h.lastScan = now
		var cands []cand
		for st := range b.h.set {
			since := st.activeAt.Load()
			if st.reader.Load() {
				since += int64(readerCredit)
			}
			if st.chosen == 0 && time.Duration(now-since) >= st.p.cfg.stale() {
				cands = append(cands, cand{st, since, st.outSeen.Load()})
			}
		}
		slices.SortFunc(cands, func(a, b cand) int { return cmp.Compare(a.since, b.since) })
		for _, c := range cands {
			if excess <= 0 {
				break
			}
			c.st.chosen = max(c.out, 1)
			b.h.evicting += c.st.chosen
			excess -= c.out
			victims = append(victims, c.st)
		}
	}
	b.h.mu.Unlock()
	for _, st := range victims {
		st.doom(errOutputBudget) // (counted when closed: spare)
	}
}

// spare reports, on st's loop, whether st, chosen for eviction with why
// (errOutputBudget) from another loop, is to stay open after all, and
// then undoes the choice: its queued output drained meanwhile (or is
// gone), its client's kernel acknowledged more since the last sample or
// within staleAfter (it reads: judged afresh on its own loop), or the
// budget is no longer over. Chosen by the time of its
// last drain alone, which only its own loop updates, the connections of
// a busy loop looked stale to the others whatever their clients did,
// and a connection that had sent all it held was closed anyway: bench
// with 50 connections of 16 pipelined 1 MiB GETs each, reading every
// answer, lost 38-47 connections in 10 s (a review;
// TestDrainedVictimSpared).
func (st *State) spare(why *error) bool {
	o := int64(st.c.OutboundBuffered())
	now := time.Now().UnixNano()
	reads := o == 0 || o < st.out ||
		time.Duration(now-max(st.drainedAt, st.kernelDrainedAt, st.ackedAt)) < st.p.cfg.stale()
	if !reads {
		// (acked: at the last sample, sampleAcked, this episode)
		if info, err := unix.GetsockoptTCPInfo(st.c.Fd(), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil && info.Bytes_acked > st.acked {
			reads = true
			st.acked, st.ackedAt, st.ackedSeen = info.Bytes_acked, now, now
		}
	}
	b := st.p.cfg.Budget
	if !reads && b.over() {
		return false
	}
	if !st.doomed.CompareAndSwap(why, nil) {
		return false // (doomed again, for another reason)
	}
	b.h.mu.Lock()
	if st.chosen > 0 {
		b.h.evicting -= st.chosen
		st.chosen = 0
	}
	b.h.mu.Unlock()
	st.activeAt.Store(now)
	return true
}
