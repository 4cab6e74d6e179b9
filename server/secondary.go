package server

import (
	"sync"
	"time"
	"unsafe"

	"github.com/panjf2000/gnet/v2"
	"github.com/rs/zerolog"

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
	resync    bool   // a partial resync: the primary's log may jump (LineageGap)
	fenced    bool   // the view moved on: refuse this primary from now on
	lastAck   time.Time
	t         *table
	dd        *dedup   // the server's records: a replicated write's outcome goes there
	ok        *outcome // the record every plain success of this copy shares (outcomeOf)
	dur       *durable // the write-ahead log (nil: none)
	srv       *Server
	log       zerolog.Logger
	// synced: with fsync_secondary, the highest index acknowledged
	// (synced here); conn: the link that acknowledgements made by the
	// log's callbacks go to (the latest of this primary's).
	synced uint64
	conn   gnet.Conn
}

// ackable is the log index a ping's or a seed frame's answer may
// acknowledge: the last applied, or none when this secondary acknowledges
// only what its log synced (those answers come from the log's callbacks,
// peer.go). The caller holds st.mu.
func (st *secState) ackable() uint64 {
	if st.dur != nil && st.dur.syncSec {
		return 0
	}
	return st.last
}

// applyRepl applies the REPL frame f (its index follows st.last) at the
// dedup clock's time now; the caller holds st.mu.
func (st *secState) applyRepl(f *wire.Frame, now int64) {
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
		st.dd.recordAt(now, f.Client, f.Seq, f.Floor, st.outcomeOf(f))
	}
}

// outcomeOf is the record of the replicated write f. Records are never
// changed once done, so every plain success of this copy shares one (most
// writes: no allocation per write).
func (st *secState) outcomeOf(f *wire.Frame) *outcome {
	var val []byte
	if f.Flags&wire.FlagNoop != 0 && len(f.Value) > 0 {
		val = append([]byte(nil), f.Value...)
	}
	flags := f.Flags & wire.FlagOldPresent
	if f.Status == wire.StatusOK && flags == 0 && val == nil {
		if st.ok == nil {
			st.ok = doneOutcome(wire.StatusOK, 0, nil)
			st.ok.origin = originOf(st.shard)
		}
		return st.ok
	}
	o := doneOutcome(f.Status, flags, val)
	o.origin = originOf(st.shard)
	return o
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

// fenceAllLinks fences every replication link (the server stops).
func (s *Server) fenceAllLinks() {
	s.secMu.Lock()
	sts := make([]*secState, 0, len(s.sec))
	for _, st := range s.sec {
		if st != nil {
			sts = append(sts, st)
		}
	}
	s.secMu.Unlock()
	for _, st := range sts {
		st.mu.Lock()
		st.fenced = true
		st.mu.Unlock()
	}
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
	s.secMu.Unlock()
	hw := s.highWaterOf(shard)
	if st == nil {
		return hw
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	return max(st.last, hw)
}

// noteIndex remembers that shard's log reached idx on this server.
func (s *Server) noteIndex(shard int, idx uint64) {
	s.hwMu.Lock()
	if idx > s.highWater[shard] {
		s.highWater[shard] = idx
	}
	s.hwMu.Unlock()
}

// highWaterOf is shard's high water (see Server.highWater).
func (s *Server) highWaterOf(shard int) uint64 {
	s.hwMu.Lock()
	defer s.hwMu.Unlock()
	return s.highWater[shard]
}

// resetCopy drops st's copy for a full re-seeding by a primary whose log
// starts at base: its table, the client outcomes that came with it, and
// its high water. What the dropped copy held above base was another
// history (a secondary applies a write before its primary logs it, and
// that primary may restart without it): its indexes must not carry into
// a hand-back (handback.go trusts the new primary's base) nor its
// outcomes answer a client's retry. The caller holds st.mu, or st is
// not shared yet.
func (s *Server) resetCopy(st *secState, base uint64) {
	st.t.reset()
	st.last = base
	s.dd.dropOrigin(st.shard)
	s.hwMu.Lock()
	s.highWater[st.shard] = base
	s.hwMu.Unlock()
	if s.dur != nil {
		s.dur.logReset(s, st.shard, base)
	}
}
