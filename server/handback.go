package server

import "ftkv/wire"

// A hand-back makes the primary of a shard (the "old primary", which took
// the shard over when its home server failed) the secondary of the home
// server again. The coordinator freezes the old primary first, so that
// nothing is in flight when the view comes; but a freeze lifts itself
// after FreezeHold (the shard must not stay unwritable if the view never
// comes), and a view that comes later finds writes in flight: the old
// primary sequenced them and sent them to the home server, which may have
// applied them, and so took over with them in its base, while the old
// primary never committed them. The home server's link to its new
// secondary starts above its base, so those writes would be in one copy
// only, and acknowledged (a client told to retry gets the outcome the home
// server holds).
//
// So the old primary keeps the uncommitted tail of its log when a view
// makes it the secondary of the shard it led, and settles it when the new
// primary's link arrives with its base: the entries at or below the base
// are exactly the ones the new primary holds from this log (it applied
// this log in order, from this primary's incarnation), so they are applied
// to this copy, with their outcomes; the others never reached the new
// primary and are dropped (their clients were told to retry there). The
// new primary serves only once that link is up, so no write of the tail
// is acknowledged before both copies hold it, and only once a mark in its
// own log after them is synced (takeOver): both copies of the tail are
// logged lazily, and a retry answered from its record before that was
// lost by a power cut (TestReviewLateHandBackAckIsDurable).

// logTail is the uncommitted tail of the log of a primary this server no
// longer is, kept for the shard's new primary.
type logTail struct {
	primaryID uint32 // the new primary named by the view, and its incarnation
	inc       uint64
	entries   []*entry // in log order
	logged    uint64   // the entries up to this index are in this server's log
}

// keepTail stores the tail of shard's log for the primary v names; the
// former tail, if any, is dropped.
func (s *Server) keepTail(v wire.View, shard int, entries []*entry, logged uint64) {
	pl := v.Shards[shard]
	s.secMu.Lock()
	defer s.secMu.Unlock()
	s.dropTailLocked(shard)
	if len(entries) == 0 || pl.Primary < 0 {
		return
	}
	m := v.Servers[pl.Primary]
	s.tails[shard] = &logTail{primaryID: m.ID, inc: m.Incarnation, entries: entries, logged: logged}
	s.log.Info().Int("shard", shard).Int("writes", len(entries)).Uint64("from", entries[0].index).
		Uint32("new_primary", m.ID).Msg("handing back with writes in flight; kept for the new primary's base")
}

// dropTailLocked forgets shard's tail; called with secMu held.
func (s *Server) dropTailLocked(shard int) {
	if s.tails[shard] != nil {
		delete(s.tails, shard)
	}
}

// takeTailBackLocked ends shard's tail when this server leads the shard
// again before the new primary's link came (it died meanwhile): the
// entries its own log holds (the secondary acknowledged them, their
// durability was pending at the close) are applied to the table, with
// their outcomes, so the table is what the log says; the others are
// dropped. Dropped, the logged ones stood in the log under indexes a
// partial resync reads as this table's history, while the table did not
// hold them: a copy offered at such an index was kept with writes this
// primary never served, and served them after the hand-back
// (TestReviewIdleResyncOverADroppedTail). Called with secMu held.
func (s *Server) takeTailBackLocked(shard int) {
	tl := s.tails[shard]
	if tl == nil {
		return
	}
	delete(s.tails, shard)
	st := &secState{shard: shard, t: s.tableFor(shard), dd: s.dd}
	n := 0
	for _, e := range tl.entries {
		if e.index > tl.logged {
			break
		}
		st.applyEntry(e)
		n++
	}
	if n > 0 {
		s.noteIndex(shard, tl.entries[n-1].index)
	}
	s.log.Info().Int("shard", shard).Int("applied", n).Int("dropped", len(tl.entries)-n).Uint64("logged", tl.logged).
		Msg("leading the shard again before the new primary linked: the writes in flight its log holds are applied, the others dropped")
}

// settleTailLocked applies to st, the copy fed by the new primary
// (primaryID, inc) whose log starts at base, the entries of shard's tail
// that primary holds; called with secMu held, before the link is accepted.
// It returns how many were applied.
func (s *Server) settleTailLocked(shard int, primaryID uint64, inc, base uint64, st *secState) int {
	tl := s.tails[shard]
	if tl == nil {
		return 0
	}
	delete(s.tails, shard)
	if uint64(tl.primaryID) != primaryID || tl.inc != inc {
		return 0 // another primary: it never held this log
	}
	n := 0
	st.mu.Lock()
	defer st.mu.Unlock()
	var logged []byte
	for _, e := range tl.entries {
		if e.index > base {
			break
		}
		st.applyEntry(e)
		if s.dur != nil {
			logged = appendRepl(logged, e, 0)
		}
		n++
	}
	if len(logged) > 0 {
		// Applied here now, so logged now: a primary logs a write only
		// after its secondary's acknowledgement, and these were in
		// flight. (Below the new primary's frames, above our own.)
		s.dur.logFrames(s, shard, logged, tl.entries[n-1].index, nil)
	}
	s.log.Info().Int("shard", shard).Int("applied", n).Int("dropped", len(tl.entries)-n).Uint64("base", base).
		Msg("settled the writes in flight at the hand-back against the new primary's base")
	return n
}

// applyEntry applies e, a write of this server's former log that the
// shard's primary holds, as applyRepl applies a replicated one; the caller
// holds st.mu.
func (st *secState) applyEntry(e *entry) {
	if !e.noop {
		if e.rec != nil {
			st.t.mergeRec(e.rec, e.index, st.seeding)
		} else {
			st.t.merge(e.key, e.val, e.index, e.del, st.seeding)
		}
	}
	if e.client != 0 {
		o := e.out
		var val []byte
		if e.noop && len(o.value) > 0 {
			val = o.value
		}
		rec := doneOutcome(o.status, o.flags&wire.FlagOldPresent, val)
		rec.origin = originOf(st.shard)
		st.dd.record(e.client, e.seq, e.floor, rec)
	}
}
