package server

import (
	"bytes"
	"errors"
	"fmt"
	"sync"
	"time"

	"ftkv/hashring"
	"ftkv/wire"
)

// applyView installs a view from the coordinator. Replication links for
// shards this server leads are connected before the view is used for
// client traffic, so no write is ever acknowledged unreplicated. A shard
// this server takes over from a failed primary is served only once that
// primary's lease has run out.
func (s *Server) applyView(v wire.View) error {
	s.viewMu.Lock()
	defer s.viewMu.Unlock()
	cur := s.view.Load()
	me, err := s.checkView(cur, v)
	if err != nil {
		return err
	}
	ring := hashring.New(len(v.Shards))
	// Phase 1: publish the view with the primaries that keep their shard,
	// so they go on serving, and without any other, so peers may connect
	// their links to us.
	prims := s.keepServing(v, me)
	s.secMu.Lock()
	s.view.Store(&viewState{v: v, me: me, ring: ring, prims: prims})
	s.fenceStaleLocked(v, me)
	s.secMu.Unlock()

	// Phase 2: lead the shards this view gives us (in a copy: the slice
	// published above is read by the event loops).
	prims = append([]*primary(nil), prims...)
	errs := s.leadShards(cur, v, me, prims)
	s.view.Store(&viewState{v: v, me: me, ring: ring, prims: prims})
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	// Re-seed new secondaries in the background; the coordinator asks for
	// the outcome with OpSeed on the control port.
	for shard, p := range prims {
		if p == nil {
			continue
		}
		if sec := secondaryOf(v, shard, me); sec.addr != "" && sec.reseeding {
			p.startSeed(sec)
		}
	}
	s.appliedEpoch.Store(v.Epoch)
	s.log.Info().Uint64("epoch", v.Epoch).Msg("view applied")
	return nil
}

// checkView refuses a view older than cur, another view with cur's epoch
// (an epoch names one view: a coordinator must never reuse it), one that
// does not name this incarnation or changes the number of shards; it
// returns this server's index in v.
func (s *Server) checkView(cur *viewState, v wire.View) (int, error) {
	if cur != nil && v.Epoch < cur.v.Epoch {
		return -1, fmt.Errorf("stale view epoch %d, have %d", v.Epoch, cur.v.Epoch)
	}
	if cur != nil && v.Epoch == cur.v.Epoch && !bytes.Equal(wire.AppendView(nil, &v), wire.AppendView(nil, &cur.v)) {
		return -1, fmt.Errorf("a different view with epoch %d, which this server already applied", v.Epoch)
	}
	me := -1
	for i, m := range v.Servers {
		if m.ID == s.cfg.ID && m.Incarnation == s.cfg.Incarnation {
			me = i
		}
	}
	if me < 0 {
		return -1, fmt.Errorf("view epoch %d does not name server %d incarnation %d", v.Epoch, s.cfg.ID, s.cfg.Incarnation)
	}
	n := len(v.Shards)
	if n == 0 {
		return -1, errors.New("view without shards")
	}
	if cur != nil && len(cur.v.Shards) != n {
		return -1, fmt.Errorf("view epoch %d has %d shards, this server knows %d", v.Epoch, n, len(cur.v.Shards))
	}
	return me, nil
}

// keepServing returns, by shard, the primaries that keep their shard in
// v; it closes the primaries of shards v takes away and
// forgets the copies this server no longer keeps.
func (s *Server) keepServing(v wire.View, me int) []*primary {
	n := len(v.Shards)
	prims := make([]*primary, n)
	var lost []*primary
	var handed []int // the shards of lost where v makes this server the secondary
	s.mu.Lock()
	for shard, pl := range v.Shards {
		p := s.prims[shard]
		if p == nil || int(pl.Primary) != me {
			continue
		}
		// It goes on serving also while its link to a new secondary
		// connects (leadShards): connect holds its writes in flight, not
		// acknowledged, until that link is up, and reads see only what
		// was committed.
		prims[shard] = p
	}
	for shard, p := range s.prims {
		if shard >= n || int(v.Shards[shard].Primary) != me {
			lost = append(lost, p)
			if shard < n && int(v.Shards[shard].Secondary) == me {
				handed = append(handed, shard)
			} else {
				handed = append(handed, -1)
			}
			delete(s.prims, shard)
			s.log.Info().Int("shard", shard).Uint64("epoch", v.Epoch).Msg("no longer primary")
		}
	}
	var dropped []int
	for shard := range s.tables {
		if shard >= n {
			delete(s.tables, shard)
			dropped = append(dropped, shard)
			continue
		}
		pl := v.Shards[shard]
		// A shard without a primary lost both copies: ours (recovered
		// from the log, reported in the heartbeat) may be the one a
		// later view restores, so it is kept.
		if pl.Primary >= 0 && int(pl.Primary) != me && int(pl.Secondary) != me {
			delete(s.tables, shard)
			dropped = append(dropped, shard)
		}
	}
	s.mu.Unlock()
	s.forgetCopies(dropped)
	// Closed outside s.mu: keepTail takes secMu, which is ordered before
	// s.mu.
	// A shard handed back keeps its writes in flight for the new primary
	// (handback.go): stored before the view is, so before the new
	// primary's link can be accepted.
	for i, p := range lost {
		tail, logged := p.closeTail()
		if handed[i] >= 0 {
			s.keepTail(v, handed[i], tail, logged)
		}
	}
	return prims
}

// forgetCopies forgets the log indexes of the copies of shards whose
// tables keepServing dropped: an index never outlives its table.
func (s *Server) forgetCopies(shards []int) {
	if len(shards) == 0 {
		return
	}
	s.secMu.Lock()
	for _, shard := range shards {
		delete(s.recovered, shard)
	}
	s.secMu.Unlock()
	if s.dur != nil {
		for _, shard := range shards {
			s.dur.forget(shard)
		}
	}
}

// leadShards makes this server lead every shard v gives it: it takes over
// the shards it did not lead and connects each one's replication link,
// in parallel. prims gets the primaries whose link is up.
func (s *Server) leadShards(cur *viewState, v wire.View, me int, prims []*primary) []error {
	var errs []error
	var wg sync.WaitGroup
	var pmu sync.Mutex
	for shard, pl := range v.Shards {
		if int(pl.Primary) != me {
			continue
		}
		s.mu.Lock()
		p := s.prims[shard]
		s.mu.Unlock()
		if p == nil {
			p = s.takeOver(cur, v, shard)
		}
		sec := secondaryOf(v, shard, me)
		wg.Go(func() {
			// A newer view received meanwhile (one that drops a secondary
			// this cannot reach, say) waits for this one: give up
			// between attempts rather than after LinkConnect.
			err := p.connect(sec, v.Epoch, s.cfg.Timing.LinkConnect, func() bool { return s.viewSeen.Load() > v.Epoch })
			pmu.Lock()
			defer pmu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("shard %d: %w", shard, err))
				return
			}
			prims[shard] = p
		})
	}
	wg.Wait()
	return errs
}

// takeOver starts leading shard (a promotion, a hand-back or the first
// view): it fences the former primary out of our copy and continues its log.
func (s *Server) takeOver(cur *viewState, v wire.View, shard int) *primary {
	pl := v.Shards[shard]
	var notBefore time.Time
	promoted, handBack := false, false
	if cur != nil && cur.v.Shards[shard].Primary >= 0 && int(cur.v.Shards[shard].Secondary) == cur.me {
		lastAck := s.fence(shard)
		old := cur.v.Servers[cur.v.Shards[shard].Primary]
		// A hand-back needs no wait: our link to the former primary, now
		// our secondary, comes up only once it has applied this view and
		// stopped serving the shard.
		handBack = pl.Secondary >= 0 && v.Servers[pl.Secondary].ID == old.ID &&
			v.Servers[pl.Secondary].Incarnation == old.Incarnation
		if !handBack && !formerPrimaryGone(v, old) {
			notBefore = lastAck.Add(s.cfg.Timing.Lease + s.cfg.Timing.LeaseMargin)
		}
		promoted = !handBack
	}
	s.secMu.Lock()
	// Leading the shard again: no write of that tail was acknowledged;
	// those our log holds are applied, the others dropped.
	s.takeTailBackLocked(shard)
	s.secMu.Unlock()
	base := s.lastApplied(shard)
	if cur == nil && pl.Secondary < 0 && len(v.Shards) > 1 {
		// Our first view leads the shard from our log alone: its other
		// copy was not compared (its server did not start, say), and
		// its log may hold writes above base (applied there, not yet
		// logged here) that were never acknowledged. New writes must
		// not take their indexes, or that copy, back later, would pass
		// for caught up by a partial resync (an acknowledged write lost
		// in a review run).
		promoted = true
	}
	if promoted {
		// A new line of history: the former primary may have logged
		// writes above base that never reached us; ours number above
		// any of them, so a copy holding those compares lower (restart)
		// and never matches an index of ours (catching up).
		base += LineageGap
	}
	p := newPrimary(s.penv, shard, s.tableFor(shard), base, notBefore)
	p.jumped = promoted
	if s.dur != nil && (promoted || handBack) {
		// Our copy holds writes we applied as a secondary and logged
		// lazily (written, not synced); the former primary may never
		// have synced them. Serve (reads, and retries answered from
		// their records) only once the mark, and so every record before
		// it, is durable: else a power cut right after loses a write we
		// acknowledged (TestReviewPromotedAckIsDurable).
		// The view is applied once it is (one sync, in the common case),
		// so the shard serves as soon as the view says; a disk that does
		// not sync within a lease leaves it unserved until it does. A
		// log that failed (a full disk) serves reads as before: its
		// server refuses writes, and acknowledged writes stay readable
		// (TestDiskFullRefusesWrites: reads unavailable for good after
		// a promotion on a full disk).
		//
		// A hand-back likewise: its base holds what we applied as the
		// former primary's secondary, logged lazily, and after a late
		// hand-back (the freeze lifted) writes that former primary never
		// committed nor logged; it settles them against our base and logs
		// them lazily too (handback.go). Served at once, our answer to a
		// retry of such a write came from its dedup record while neither
		// log had synced it, and a power cut lost it
		// (TestReviewLateHandBackAckIsDurable). Its mark is at base (no
		// LineageGap: the history goes on).
		p.unsynced.Store(true)
		synced := make(chan struct{})
		s.dur.logPromotion(s, shard, base, func() { p.unsynced.Store(false); close(synced) })
		select {
		case <-synced:
		case <-time.After(s.cfg.Timing.Lease):
		}
	} else if s.dur != nil {
		s.dur.logHold(s, shard, base)
	}
	s.mu.Lock()
	s.prims[shard] = p
	s.mu.Unlock()
	s.log.Info().Int("shard", shard).Uint64("epoch", v.Epoch).Uint64("index", p.nextIndex).
		Time("not_before", notBefore).Msg("taking over as primary")
	return p
}

// LineageGap is how far a promoted secondary's log indexes jump above
// the last one it applied: more than a primary ever has in flight, and
// room for 2^32 promotions in a uint64.
const LineageGap = 1 << 32

// target identifies the secondary of a shard.
type target struct {
	addr      string
	id        uint32
	inc       uint64
	reseeding bool
}

func secondaryOf(v wire.View, shard, me int) target {
	pl := v.Shards[shard]
	if pl.Secondary < 0 || int(pl.Secondary) == me {
		return target{}
	}
	m := v.Servers[pl.Secondary]
	return target{addr: m.PeerAddr, id: m.ID, inc: m.Incarnation, reseeding: m.State == wire.StateReseeding}
}

// formerPrimaryGone reports whether the new view says the former primary's
// process is known to be dead (then there is no lease to wait out).
func formerPrimaryGone(v wire.View, old wire.Member) bool {
	for _, m := range v.Servers {
		if m.ID == old.ID {
			return m.Incarnation != old.Incarnation || m.State == wire.StateDead
		}
	}
	return false
}
