package server

import (
	"encoding/binary"
	"sync"
	"time"
	"unsafe"

	"github.com/panjf2000/gnet/v2"

	"ftkv/wire"
)

// secState is what a secondary keeps about the link that feeds one shard.
type secState struct {
	// mu is held while a read of this link is applied: fence() then knows
	// that no frame of a fenced link is applied or acknowledged after it
	// returns. Links of different shards are applied in parallel.
	mu        sync.Mutex
	shard     int
	primaryID uint64
	inc       uint64
	last      uint64 // highest log index applied (contiguous)
	seeding   bool   // a snapshot is arriving: remember deletes
	fenced    bool   // the view moved on: refuse this primary from now on
	lastAck   time.Time
	t         *table
}

// peerConn is the state of one inbound replication connection.
type peerConn struct {
	st *secState
}

// peerHandler receives replication on the peer port. It runs on a single
// event loop, so each link's frames are applied one at a time, in order.
type peerHandler struct {
	gnet.BuiltinEventEngine
	s *Server
}

func (h *peerHandler) OnTraffic(c gnet.Conn) gnet.Action {
	s := h.s
	pc, _ := c.Context().(*peerConn)
	if pc == nil {
		pc = &peerConn{}
		c.SetContext(pc)
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
	var acks []byte
	applied := false
	action := decodeAll(c, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		if pc.st == nil {
			out, act := h.hello(c, pc, f, out)
			if pc.st != nil {
				pc.st.mu.Lock()
				locked = pc.st
			}
			return out, act
		}
		st := pc.st
		if st.fenced {
			return reply(out, f, wire.StatusStaleEpoch, 0, "no longer the secondary of this primary"), gnet.Close
		}
		switch f.Op {
		case wire.OpRepl:
			if f.ID <= st.last {
				return out, gnet.None // a resend after reconnecting: already applied
			}
			if f.ID != st.last+1 {
				s.log.Error().Int("shard", st.shard).Uint64("got", f.ID).Uint64("want", st.last+1).Msg("gap in the replication log; dropping the link")
				return reply(out, f, wire.StatusBadRequest, 0, "gap in the replication log"), gnet.Close
			}
			h.applyRepl(st, f)
			applied = true
		case wire.OpSeed:
			if err := h.applySeed(st, f); err != nil {
				return reply(out, f, wire.StatusBadRequest, 0, err.Error()), gnet.Close
			}
			acks = wire.Append(acks, &wire.Frame{Op: wire.OpReplAck, Flags: wire.FlagSeed, Seq: f.ID, ID: st.last})
		case wire.OpPing:
			acks = wire.Append(acks, &wire.Frame{Op: wire.OpReplAck, Flags: wire.FlagPing, Seq: f.ID, ID: st.last})
		default:
			return reply(out, f, wire.StatusBadRequest, 0, "unexpected "+f.Op.String()+" on a replication link"), gnet.Close
		}
		return out, gnet.None
	})
	if action != gnet.None || pc.st == nil {
		return action
	}
	if applied {
		acks = wire.Append(acks, &wire.Frame{Op: wire.OpReplAck, ID: pc.st.last})
	}
	if len(acks) > 0 {
		pc.st.lastAck = time.Now()
		_, _ = c.Write(acks)
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
	// secMu orders this against applyView, which stores a view and fences
	// the links it drops under the same lock.
	s.secMu.Lock()
	defer s.secMu.Unlock()
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
	if st == nil {
		// A new primary (or incarnation): everything up to its base is
		// either here already (hand-back, first start) or comes with the
		// snapshot (re-seeding).
		st = &secState{shard: shard, primaryID: f.Client, inc: f.Floor, last: base, t: s.tableFor(shard), seeding: seeding}
		s.sec[shard] = st
	}
	// (A reconnect of the same primary keeps its state: a finished
	// snapshot must not turn tombstones back on.)
	st.mu.Lock()
	last := st.last
	st.mu.Unlock()
	pc.st = st
	s.log.Info().Int("shard", shard).Uint64("from", f.Client).Uint64("last", last).Bool("seeding", seeding).Msg("replication link accepted")
	return wire.Append(out, &wire.Frame{Op: wire.OpReplHello, ID: f.ID, Epoch: vs.v.Epoch, Seq: last}), gnet.None
}

func (h *peerHandler) applyRepl(st *secState, f *wire.Frame) {
	st.last = f.ID
	switch {
	case f.Flags&wire.FlagNoop != 0:
	case f.Flags&wire.FlagDelete != 0:
		st.t.merge(unsafe.String(unsafe.SliceData(f.Key), len(f.Key)), nil, f.ID, true, st.seeding)
	default:
		// merge copies key and value (they alias the read buffer).
		st.t.merge(unsafe.String(unsafe.SliceData(f.Key), len(f.Key)), f.Value, f.ID, false, st.seeding)
	}
	if f.Client != 0 {
		var val []byte
		if f.Flags&wire.FlagNoop != 0 && len(f.Value) > 0 {
			val = append([]byte(nil), f.Value...)
		}
		h.s.dd.record(f.Client, f.Seq, f.Floor, doneOutcome(f.Status, f.Flags&wire.FlagOldPresent, val))
	}
}

func (h *peerHandler) applySeed(st *secState, f *wire.Frame) error {
	if f.Flags&wire.FlagDedup != 0 {
		return h.s.dd.restore(f.Value)
	}
	if f.ID == 1 {
		st.t.reserve(int(f.Floor))
	}
	// Each entry is copied into a record of its own (keys and values alias
	// the read buffer here).
	b := f.Value
	for len(b) > 0 {
		k, v, ver, rest, err := wire.NextSeedEntry(b)
		if err != nil {
			return err
		}
		st.t.merge(unsafe.String(unsafe.SliceData(k), len(k)), v, ver, false, true)
		b = rest
	}
	if f.Flags&wire.FlagSeedDone != 0 {
		st.seeding = false
		st.t.dropTombstones()
		h.s.log.Info().Int("shard", st.shard).Int("keys", st.t.len()).Msg("re-seeding complete")
	}
	return nil
}

// fence stops accepting replication for shard from its current primary and
// returns when this server last acknowledged that primary.
func (s *Server) fence(shard int) time.Time {
	s.secMu.Lock()
	st := s.sec[shard]
	s.secMu.Unlock()
	if st == nil {
		return time.Time{}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	st.fenced = true
	return st.lastAck
}

// fenceStaleLocked fences every link whose pairing the view v no longer
// has; called with secMu held.
func (s *Server) fenceStaleLocked(v wire.View, me int) {
	var stale []*secState
	for shard, st := range s.sec {
		if shard >= len(v.Shards) {
			stale = append(stale, st)
			continue
		}
		pl := v.Shards[shard]
		if int(pl.Secondary) != me || pl.Primary < 0 ||
			uint64(v.Servers[pl.Primary].ID) != st.primaryID || v.Servers[pl.Primary].Incarnation != st.inc {
			stale = append(stale, st)
		}
	}
	for _, st := range stale {
		st.mu.Lock()
		st.fenced = true
		st.mu.Unlock()
	}
}

// lastApplied is the highest log index this server holds for shard as a
// secondary (0 if none).
// It is at least every index this server ever used for shard as a primary,
// so a second promotion never reuses versions.
func (s *Server) lastApplied(shard int) uint64 {
	s.secMu.Lock()
	st := s.sec[shard]
	hw := s.highWater[shard]
	s.secMu.Unlock()
	if st == nil {
		return hw
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return max(st.last, hw)
}

// noteIndex remembers that shard's log reached idx on this server.
func (s *Server) noteIndex(shard int, idx uint64) {
	s.secMu.Lock()
	if idx > s.highWater[shard] {
		s.highWater[shard] = idx
	}
	s.secMu.Unlock()
}
