package server

import (
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
	if cur != nil && v.Epoch < cur.v.Epoch {
		return fmt.Errorf("stale view epoch %d, have %d", v.Epoch, cur.v.Epoch)
	}
	me := -1
	for i, m := range v.Servers {
		if m.ID == s.cfg.ID && m.Incarnation == s.cfg.Incarnation {
			me = i
		}
	}
	if me < 0 {
		return fmt.Errorf("view epoch %d does not name server %d incarnation %d", v.Epoch, s.cfg.ID, s.cfg.Incarnation)
	}
	n := len(v.Shards)
	if n == 0 {
		return errors.New("view without shards")
	}
	if cur != nil && len(cur.v.Shards) != n {
		return fmt.Errorf("view epoch %d has %d shards, this server knows %d", v.Epoch, n, len(cur.v.Shards))
	}
	ring := hashring.New(n)
	// Phase 1: publish the view with the primaries that keep their shard
	// and the same secondary, so they go on serving, and without any other,
	// so peers may connect their links to us.
	prims := make([]*primary, n)
	s.mu.Lock()
	for shard, pl := range v.Shards {
		p := s.prims[shard]
		if p == nil || int(pl.Primary) != me {
			continue
		}
		if p.sameSecondary(secondaryOf(v, shard, me)) {
			prims[shard] = p
		}
	}
	// Roles this server loses: stop leading, forget copies it no longer keeps.
	for shard, p := range s.prims {
		if shard >= n || int(v.Shards[shard].Primary) != me {
			p.close()
			delete(s.prims, shard)
			s.log.Info().Int("shard", shard).Uint64("epoch", v.Epoch).Msg("no longer primary")
		}
	}
	for shard := range s.tables {
		if shard >= n || (int(v.Shards[shard].Primary) != me && int(v.Shards[shard].Secondary) != me) {
			delete(s.tables, shard)
		}
	}
	s.mu.Unlock()
	s.secMu.Lock()
	s.view.Store(&viewState{v: v, me: me, ring: ring, prims: prims})
	s.fenceStaleLocked(v, me)
	s.secMu.Unlock()

	// Phase 2: lead the shards this view gives us (in a copy: the slice
	// published above is read by the event loops).
	prims = append([]*primary(nil), prims...)
	var errs []error
	var wg sync.WaitGroup
	var pmu sync.Mutex
	for shard, pl := range v.Shards {
		if int(pl.Primary) != me {
			continue
		}
		sec := secondaryOf(v, shard, me)
		s.mu.Lock()
		p := s.prims[shard]
		s.mu.Unlock()
		if p == nil {
			// Taking the shard over (promotion, hand-back or first view):
			// fence its former primary out of our copy and continue its log.
			var notBefore time.Time
			if cur != nil && cur.v.Shards[shard].Primary >= 0 && int(cur.v.Shards[shard].Secondary) == cur.me {
				lastAck := s.fence(shard)
				old := cur.v.Servers[cur.v.Shards[shard].Primary]
				// A hand-back needs no wait: our link to the former
				// primary, now our secondary, comes up only once it has
				// applied this view and stopped serving the shard.
				handBack := pl.Secondary >= 0 && v.Servers[pl.Secondary].ID == old.ID &&
					v.Servers[pl.Secondary].Incarnation == old.Incarnation
				if !handBack && !formerPrimaryGone(v, old) {
					notBefore = lastAck.Add(s.cfg.Timing.Lease + s.cfg.Timing.LeaseMargin)
				}
			}
			p = newPrimary(s, shard, s.tableFor(shard), s.lastApplied(shard), notBefore)
			s.mu.Lock()
			s.prims[shard] = p
			s.mu.Unlock()
			s.log.Info().Int("shard", shard).Uint64("epoch", v.Epoch).Uint64("index", p.nextIndex).
				Time("not_before", notBefore).Msg("taking over as primary")
		}
		wg.Add(1)
		go func(shard int, p *primary, sec target) {
			defer wg.Done()
			err := p.connect(sec, v.Epoch, s.cfg.Timing.LinkConnect)
			pmu.Lock()
			defer pmu.Unlock()
			if err != nil {
				errs = append(errs, fmt.Errorf("shard %d: %w", shard, err))
				return
			}
			prims[shard] = p
		}(shard, p, sec)
	}
	wg.Wait()
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
