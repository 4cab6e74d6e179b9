package server

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"

	"ftkv/timing"
)

// primary runs the write path of one shard this server leads:
//
//	event loop: sequence (dedup, compute, log index) -> link to secondary
//	ack reader: commit to table -> answer the client (AsyncWrite)
//
// The event loop sequences every write of one read batch at once and tries
// a non-blocking write to the link; what the socket does not take goes to
// the link's writer goroutine, so a loop never blocks. Writes are batched on
// one ordered link; a write is applied to the table, and so visible to
// reads, only after the secondary acknowledged it.
type primary struct {
	env   *primaryEnv
	tm    timing.Config
	dd    *dedup
	shard int
	t     *table
	log   zerolog.Logger

	stop chan struct{}

	mu        sync.Mutex // pending, inflight, nextIndex, link
	pending   map[string]pend
	inflight  []*entry
	nextIndex uint64
	committed uint64
	logged    uint64 // with a write-ahead log: entries up to here are handed to it
	link      *replLink
	waitLink  bool // a secondary is configured: never commit alone
	sec       target
	epoch     uint64
	drained   *sync.Cond
	frozen    bool        // hand-back in progress: no new writes
	closed    bool        // no longer primary: an event loop with the old view may still call sequence
	freezeGen uint64      // only the latest freeze's timer may lift it
	notBefore time.Time   // the former primary's lease ends here
	unsynced  atomic.Bool // a promotion's mark (and our lazily logged copy before it) not yet durable: not served

	// linkLease: the secondary's ping answers let us serve.
	linkLease *leaseTracker
	// heard is when the secondary last answered (or the link to a new
	// secondary was configured), on the monotonic clock (mono); answered
	// is set by every answer and folded into heard by the pinger, so the
	// hot path only stores a flag. Heartbeats report a link unheard for
	// long (linkhealth.go).
	heard    atomic.Int64
	answered atomic.Bool
	// settingUp: a dialled link whose secondary answered is being set up
	// (our own log read for a partial resync, up to 64 MiB): the
	// secondary is not silent meanwhile (linkHealth).
	settingUp atomic.Bool
	// secNow, closedNow and linkNow mirror sec, closed and link for the
	// heartbeat's report, which must not wait for mu (linkHealth).
	secNow    atomic.Pointer[target]
	closedNow atomic.Bool
	linkNow   atomic.Pointer[replLink]
	seedAcks  chan seedAck
	seedJob   *seedJob
	// resyncInc is the secondary incarnation whose link started with a
	// partial resync (resync.go), of resyncEntries writes.
	resyncInc     uint64
	resyncEntries int
	// resyncCovers is the index the partial resync brings the secondary
	// to: its end marker carries it (above the last write sent when the
	// primary committed nothing since a promotion's jump).
	resyncCovers uint64
	// startedAt is the index this primary took the shard over at, and
	// jumped says it is a promotion's: LineageGap above the last write
	// its table holds, which no record of the log carries.
	startedAt uint64
	jumped    bool
	// connecting counts the link's connect attempts under way and
	// connectFails the times the last of them gave up: a re-seeding whose
	// link broke waits for the first, and fails on the second
	// (awaitRelink).
	connecting   int
	connectFails uint64
}

// primaryEnv is what every primary of a server is given at construction:
// the server's identity and timing, the server-wide dedup records, the
// coordinator's lease, where replication links are enrolled, and where a
// primary reports the last log index it used.
type primaryEnv struct {
	id         uint32
	inc        uint64
	secret     string
	tm         timing.Config
	dd         *dedup
	coordLease *leaseTracker
	engine     func() gnet.Engine
	noteIndex  func(shard int, idx uint64)
	dur        *durable // the write-ahead log (nil: none)
	srv        *Server
	log        zerolog.Logger
}

// newPrimary leads shard, whose log so far ends at base (the index of the
// last write the table holds), serving from notBefore on.
func newPrimary(env *primaryEnv, shard int, t *table, base uint64, notBefore time.Time) *primary {
	p := &primary{
		env:       env,
		tm:        env.tm,
		dd:        env.dd,
		shard:     shard,
		t:         t,
		log:       env.log.With().Int("shard", shard).Logger(),
		stop:      make(chan struct{}),
		pending:   make(map[string]pend),
		nextIndex: base,
		committed: base,
		logged:    base,
		startedAt: base,
		notBefore: notBefore,
		linkLease: newLeaseTracker(env.tm.Lease),
		seedAcks:  make(chan seedAck, 64),
	}
	p.drained = sync.NewCond(&p.mu)
	p.heard.Store(mono(time.Now()))
	go p.pinger()
	return p
}

// canServe reports whether the shard may be served now: not frozen, past
// the former primary's lease, and holding a lease of our own (from the
// coordinator or, when it is unreachable, from our secondary).
func (p *primary) canServe(now time.Time) bool {
	if now.Before(p.notBefore) || p.unsynced.Load() {
		return false
	}
	return p.env.coordLease.valid(now) || p.linkLease.valid(now)
}

// pinger renews the lease through the secondary every Lease/4.
func (p *primary) pinger() {
	t := time.NewTicker(p.tm.Ping)
	defer t.Stop()
	for {
		select {
		case <-p.stop:
			return
		case <-t.C:
		}
		if p.answered.Swap(false) {
			p.heard.Store(mono(time.Now()))
		}
		p.mu.Lock()
		l, sec := p.link, p.sec
		if l != nil {
			seq := p.linkLease.sending(time.Now())
			l.queuePing(seq)
		}
		p.mu.Unlock()
		if l != nil && replCut(p.env.id, sec) {
			l.fail(errTestCut)
		} else if l != nil {
			l.flushSoon()
		}
		p.releaseStuck(time.Now())
	}
}

// releaseStuck answers the writes in flight UNAVAILABLE once the lease is
// gone: cut off from both the coordinator and its secondary, this primary
// can commit nothing, and the shard has (or soon will have) another
// primary. The clients retry there with the same sequence numbers; the
// new primary applies each write once (it holds the outcome if the write
// reached it). The writes stay in flight here, so a link that comes back
// still commits them, and a retry that comes back here waits for that.
func (p *primary) releaseStuck(now time.Time) {
	replies := newReplyBatch()
	defer replies.release()
	p.mu.Lock()
	if len(p.inflight) == 0 || p.canServe(now) {
		p.mu.Unlock()
		return
	}
	n := 0
	for _, e := range p.inflight {
		n += e.answerWaiters(replies, "primary lost its lease; retry")
	}
	p.mu.Unlock()
	if n > 0 {
		p.log.Warn().Int("writes", n).Msg("lease lost with writes in flight; told their clients to retry elsewhere")
	}
	replies.flush(nil)
}

// The primary owns its replication link (linkOwner).

func (p *primary) acked(idx uint64, loop gnet.EventLoop) {
	p.answered.Store(true)
	p.commitUpTo(idx, loop)
}

func (p *primary) pingAcked(seq uint64) {
	p.answered.Store(true)
	p.linkLease.answered(seq, true)
}

func (p *primary) linkFailed(l *replLink) { go p.reconnect(l) }

// seedAck is the answer on link l to SEED frame seq. Each re-seeding
// numbers its frames from 1: an answer on another link (an earlier job's)
// is not one of its own.
type seedAck struct {
	l   *replLink
	seq uint64
}

func (p *primary) seedAcked(l *replLink, seq uint64) {
	p.answered.Store(true)
	select {
	case p.seedAcks <- seedAck{l, seq}:
	default:
	}
}

// sameSecondary reports whether p already replicates to sec over a live link.
func (p *primary) sameSecondary(sec target) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if sec.addr == "" {
		return p.sec.addr == "" && !p.waitLink
	}
	return p.link != nil && !p.link.broken() && p.sec.addr == sec.addr && p.sec.id == sec.id && p.sec.inc == sec.inc
}

// freeze stops new writes, waits (up to timeout) until every write in
// flight is committed and returns the last log index. The freeze lifts by
// itself after hold unless a view removes the shard first.
func (p *primary) freeze(timeout, hold time.Duration) (uint64, error) {
	p.mu.Lock()
	p.frozen = true
	p.freezeGen++
	gen := p.freezeGen
	p.mu.Unlock()
	time.AfterFunc(hold, func() {
		p.mu.Lock()
		if p.freezeGen == gen {
			p.frozen = false // the hand-back never came: serve again
		}
		p.mu.Unlock()
	})
	p.drain(time.Now().Add(timeout))
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.inflight) > 0 {
		return 0, fmt.Errorf("%d writes still in flight after %s", len(p.inflight), timeout)
	}
	return p.nextIndex, nil
}

// drain waits until every sequenced write is committed or deadline passes.
func (p *primary) drain(deadline time.Time) {
	t := time.AfterFunc(time.Until(deadline), func() {
		p.mu.Lock()
		p.drained.Broadcast()
		p.mu.Unlock()
	})
	defer t.Stop()
	p.mu.Lock()
	for len(p.inflight) > 0 && time.Now().Before(deadline) {
		p.drained.Wait()
	}
	p.mu.Unlock()
}

func (p *primary) close() { p.closeTail() }

// closeTail stops p leading its shard and returns the writes it had
// sequenced and not committed, in log order (see handOver), and the index
// up to which they were handed to the log (acknowledged by the secondary,
// their durability pending): the log holds those, the table does not.
func (p *primary) closeTail() ([]*entry, uint64) {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.mu.Lock()
	p.closeLocked()
	if p.link != nil {
		p.link.close()
	}
	last, logged := p.nextIndex, p.logged
	orphans := p.inflight
	p.inflight = nil
	p.pending = make(map[string]pend)
	p.mu.Unlock()
	p.env.noteIndex(p.shard, last)
	// Writes still waiting for their secondary will never be answered
	// here: tell their clients to retry (with the same sequence number)
	// at the shard's new primary, and forget their unfinished records.
	replies := newReplyBatch()
	defer replies.release()
	for _, e := range orphans {
		e.answerWaiters(replies, "shard changed hands; retry")
		if e.client != 0 {
			p.dd.forget(e.client, e.seq)
		}
	}
	replies.flush(nil)
	return orphans, logged
}

// setSecLocked makes sec p's secondary; the caller holds p.mu.
func (p *primary) setSecLocked(sec target) {
	p.sec = sec
	p.secNow.Store(&sec)
}

// closeLocked marks p as no longer leading; the caller holds p.mu.
func (p *primary) closeLocked() {
	p.closed = true
	p.closedNow.Store(true)
}

// setLinkLocked makes l p's link (nil: none); the caller holds p.mu.
func (p *primary) setLinkLocked(l *replLink) {
	p.link = l
	p.linkNow.Store(l)
}
