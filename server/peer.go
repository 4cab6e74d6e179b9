package server

import (
	"encoding/binary"
	"time"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/connlimit"
	"ftkv/wire"
)

// peerConn is the state of one inbound replication connection.
type peerConn struct {
	st    *secState
	lim   *connlimit.State
	ahead func(buf []byte) // warms st's table for the frames in buf
}

// peerHandler receives replication on the peer port. The peer engine runs
// several event loops; what keeps each link in order is that a connection
// belongs to one loop, which hands it its bytes in order, one OnTraffic
// at a time, and that a read is applied whole under its shard's secState
// lock (links of different shards are applied in parallel).
type peerHandler struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (h *peerHandler) OnTraffic(c gnet.Conn) gnet.Action {
	s := h.s
	cs := connlimit.Of(c) // every connection of this port was accepted by connlimit
	pc, _ := cs.Data.(*peerConn)
	if pc == nil {
		pc = &peerConn{lim: cs}
		pc.ahead = func(buf []byte) {
			if pc.st != nil && !pc.st.fenced {
				pc.st.warmFrames(buf)
			}
		}
		cs.Data = pc
	}
	if pc.st != nil {
		pc.st.mu.Lock()
	}
	locked := pc.st
	defer func() {
		if locked != nil {
			locked.mu.Unlock()
		}
	}()
	var acks, logged []byte
	applied := false
	now := int64(-1) // the dedup clock, read once for this read's frames
	action := connlimit.DecodeAhead(c, pc.ahead, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		if pc.st == nil {
			out, act := h.hello(c, pc, f, out)
			if pc.st != nil {
				pc.st.mu.Lock()
				locked = pc.st
			}
			return out, act
		}
		st := pc.st
		if st.dur.down() {
			return out, gnet.None // nothing applied or acknowledged: see durable.failed
		}
		if st.fenced {
			return reply(out, f, wire.StatusStaleEpoch, 0, "no longer the secondary of this primary"), gnet.Close
		}
		switch f.Op {
		case wire.OpRepl:
			if f.ID <= st.last {
				return out, gnet.None // a resend after reconnecting: already applied
			}
			// Contiguous, except while a re-seeding or a resync brings the
			// copy up: a primary that led alone may commit a write between
			// its link's HELLO and its first frame (its log's callback
			// applies it), and that write reaches us in the snapshot; a
			// resync's frames jump a LineageGap.
			if f.ID != st.last+1 && !st.resync && !st.seeding {
				s.log.Error().Int("shard", st.shard).Uint64("got", f.ID).Uint64("want", st.last+1).Msg("gap in the replication log; dropping the link")
				return reply(out, f, wire.StatusBadRequest, 0, "gap in the replication log"), gnet.Close
			}
			if now < 0 {
				now = st.dd.clock()
			}
			st.applyRepl(f, now)
			applied = true
			if st.dur != nil {
				logged = wire.Append(logged, f)
			}
		case wire.OpSeed:
			if f.Flags&(wire.FlagSeedDone|wire.FlagSeedReset) != 0 && st.dur != nil && len(logged) > 0 {
				// The end of a re-seeding (or partial resync) marks the
				// copy complete at its index: the frames this read
				// applied before it go to the log first, or a kill
				// between the two records leaves a log that claims
				// the index without them (recovery takes the highest
				// mark; acknowledged writes lost in
				// TestReviewResyncEndMarkBeforeItsFrames). So do those
				// before a reset: they belong to the copy it drops.
				st.dur.logFrames(s, st.shard, logged, st.last, nil)
				logged = nil
			}
			if err := st.applySeed(f); err != nil {
				return reply(out, f, wire.StatusBadRequest, 0, err.Error()), gnet.Close
			}
			acks = wire.Append(acks, &wire.Frame{Op: wire.OpReplAck, Flags: wire.FlagSeed, Seq: f.ID, ID: st.ackable()})
		case wire.OpPing:
			acks = wire.Append(acks, &wire.Frame{Op: wire.OpReplAck, Flags: wire.FlagPing, Seq: f.ID, ID: st.ackable()})
		default:
			return reply(out, f, wire.StatusBadRequest, 0, "unexpected "+f.Op.String()+" on a replication link"), gnet.Close
		}
		return out, gnet.None
	})
	if action != gnet.None || pc.st == nil {
		return action
	}
	if applied && !pc.st.dur.down() {
		ack := wire.Append(nil, &wire.Frame{Op: wire.OpReplAck, ID: pc.st.last})
		if st := pc.st; st.dur != nil {
			var done func()
			if st.dur.syncSec {
				// Acknowledged only once durable here too (it once
				// went at once as well: a shadowed variable).
				// The answer goes to this primary's current link: if
				// this one broke meanwhile, the next link's HELLO did
				// not acknowledge these writes (st.synced).
				synced, idx := ack, st.last
				done = func() {
					st.mu.Lock()
					fenced, conn := st.fenced, st.conn
					if !fenced {
						st.lastAck = time.Now()
						st.synced = max(st.synced, idx)
					}
					st.mu.Unlock()
					if !fenced && conn != nil {
						_ = conn.AsyncWrite(synced, nil)
					}
				}
				ack = nil
			}
			if len(logged) > 0 || done != nil {
				st.dur.logFrames(s, st.shard, logged, st.last, done)
			}
		}
		acks = append(acks, ack...)
	}
	if len(acks) > 0 {
		pc.st.lastAck = time.Now()
		_ = writeOnLoop(c, acks) // decodeAll's own write may have closed c
	}
	return action
}

// hello authenticates a new link.
func (h *peerHandler) hello(c gnet.Conn, pc *peerConn, f *wire.Frame, out []byte) ([]byte, gnet.Action) {
	s := h.s
	if f.Op != wire.OpReplHello || !s.secretOK(f.Value) {
		s.log.Warn().Str("remote", c.RemoteAddr().String()).Msg("unauthenticated connection on the peer port refused")
		return reply(out, f, wire.StatusBadRequest, 0, "authentication required"), gnet.Close
	}
	if s.dur.down() {
		return reply(out, f, wire.StatusUnavailable, 0, errDisk), gnet.Close
	}
	// secMu orders this against applyView, which stores a view and fences
	// the links it drops under the same lock, and against fenceAllLinks:
	// a stopping server (closing is set before it fences) takes no new
	// link, whose copy its log would not hold (checked under the lock: a
	// HELLO that checked before the stop began and installed its link
	// after the fence went on acknowledging: a review).
	s.secMu.Lock()
	defer s.secMu.Unlock()
	if s.closing.Load() {
		return reply(out, f, wire.StatusUnavailable, 0, "server is shutting down"), gnet.Close
	}
	vs := s.view.Load()
	shard := int(f.Seq)
	if vs == nil || shard >= len(vs.v.Shards) || f.Epoch > vs.v.Epoch {
		return reply(out, f, wire.StatusStaleEpoch, 0, "no view for that shard yet"), gnet.Close
	}
	pl := vs.v.Shards[shard]
	if int(pl.Secondary) != vs.me || pl.Primary < 0 ||
		uint64(vs.v.Servers[pl.Primary].ID) != f.Client || vs.v.Servers[pl.Primary].Incarnation != f.Floor {
		return reply(out, f, wire.StatusStaleEpoch, vs.v.Epoch, "not the secondary of that shard at that epoch"), gnet.Close
	}
	var base uint64
	if len(f.Aux) == 8 {
		base = binary.BigEndian.Uint64(f.Aux)
	}
	seeding := vs.v.Servers[vs.me].State == wire.StateReseeding
	first := !s.linked[shard]
	s.linked[shard] = true
	st := s.sec[shard]
	if st != nil {
		st.mu.Lock()
		stale := st.primaryID != f.Client || st.inc != f.Floor || st.fenced
		if stale {
			st.fenced = true // a link of the former primary must not write on
		}
		st.mu.Unlock()
		if stale {
			st = nil
		}
	}
	var flags uint8
	if st == nil {
		// A new primary (or incarnation): everything up to its base is
		// either here already (hand-back, first start) or comes with the
		// snapshot (re-seeding). The first link since this process
		// started (a restart of the cluster: the copy was recovered from
		// the log, or there is none) checks it: a copy that is not at the
		// primary's base, or whose log holds an unfinished re-seeding, is
		// re-seeded in full before the view that named us is applied.
		if first && !seeding && s.copyDiffers(shard, base) {
			seeding = true
			flags = wire.FlagFullSeed
			s.log.Warn().Int("shard", shard).Uint64("primary_base", base).Uint64("ours", s.highWaterOf(shard)).
				Msg("this copy is not the primary's: re-seeding it in full")
		}
		st = &secState{shard: shard, primaryID: f.Client, inc: f.Floor, last: base, t: s.tableFor(shard), seeding: seeding,
			dd: s.dd, log: s.log, dur: s.dur, srv: s}
		recovered, offer := s.takeRecovered(shard)
		if seeding && first && offer && flags == 0 {
			// A respawned server that recovered a complete copy from its
			// log offers it: the primary sends only the writes after it
			// (partial resync), or tells it to drop it (FlagSeedReset).
			st.last, st.resync = recovered, true
			flags = wire.FlagResync
			s.dur.logResync(s, shard)
			s.log.Info().Int("shard", shard).Uint64("index", recovered).Msg("offering the copy recovered from the log for a partial resync")
		} else if !seeding && s.dur != nil {
			s.dur.logHold(s, shard, base)
		} else if seeding {
			// A full re-seeding: the primary sends all it holds, so what
			// this copy holds (recovered from the log, or a former
			// seeding's part) goes, or keys deleted meanwhile would stay.
			s.resetCopy(st, base)
		}
		st.synced = st.last // the primary's base, or a copy from the log: nothing to acknowledge
		s.sec[shard] = st
		// Writes this server had in flight as the shard's primary, which
		// the new primary took over with (handback.go).
		s.settleTailLocked(shard, f.Client, f.Floor, base, st)
	}
	// (A reconnect of the same primary keeps its state: a finished
	// snapshot must not turn tombstones back on.)
	st.mu.Lock()
	last, acked := st.last, st.last
	if s.dur != nil && s.dur.syncSec {
		// Only what the log synced is acknowledged; the rest is
		// acknowledged on this link once synced (peer.go's callbacks).
		acked = st.synced
	}
	st.conn = c
	if st.resync {
		// A resync not finished (this link is a reconnect of the same
		// primary, whose first answer may have been lost): offer again
		// from where the copy is, so the primary resends from its log
		// or resets it; never a full re-seeding over the old copy.
		flags = wire.FlagResync
	}
	st.mu.Unlock()
	pc.st = st
	pc.lim.Authed() // frames beyond HELLO's size are accepted from now on
	s.log.Info().Int("shard", shard).Uint64("from", f.Client).Uint64("last", last).Bool("seeding", seeding).Msg("replication link accepted")
	return wire.Append(out, &wire.Frame{Op: wire.OpReplHello, ID: f.ID, Epoch: vs.v.Epoch, Seq: last, Floor: acked, Flags: flags}), gnet.None
}

// copyDiffers reports whether this server's copy of shard (recovered from
// its log, or none) is not the one a primary at base holds: another
// index, or a re-seeding the log did not see finish. Equal indexes are
// equal copies: only a shard's primary numbers its writes, and a promoted
// one numbers above anything its former primary may have logged
// (LineageGap). The caller holds s.secMu.
func (s *Server) copyDiffers(shard int, base uint64) bool {
	if s.dur != nil && s.dur.isPartial(shard) {
		return true
	}
	return s.highWaterOf(shard) != base
}

// takeRecovered returns, once, the log index of the complete copy of
// shard this server recovered from its log. The caller holds s.secMu.
func (s *Server) takeRecovered(shard int) (uint64, bool) {
	idx, ok := s.recovered[shard]
	delete(s.recovered, shard)
	return idx, ok && s.dur != nil && !s.dur.isPartial(shard)
}
