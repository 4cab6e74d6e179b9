package server

import (
	"time"
)

// open makes client's session for a write of seq, which takes over its
// expired mark if it has one (the seqs up to it stay refused); if the
// stripe is full, its longest-silent session expires first. Without a mark
// while the stripe recently dropped marks, the client may be one whose
// mark went: its seqs below this one that have no record are refused
// (SESSION_EXPIRED), since one of them may have been applied already.
func (d *dedup) open(st *dedupStripe, lim *sessionLimits, client, seq uint64, now int64) *session {
	if len(st.clients) >= lim.perStripe {
		d.expireSession(st, lim, st.lru.next, now)
	}
	s := &session{client: client}
	if m, ok := st.gone[client]; ok {
		delete(st.gone, client)
		d.expired.Add(-1)
		s.forgot, s.maxSeq = m.maxSeq+1, m.maxSeq
	} else if st.recentlyLost(lim, now) {
		s.forgot = seq
	}
	st.clients[client] = s
	s.prev, s.next = st.lru.prev, &st.lru
	st.lru.prev.next, st.lru.prev = s, s
	d.sessions.Add(1)
	return s
}

// recentlyLost reports whether the stripe dropped an expired mark early
// within the last TTL: a client retries a write for less than a TTL.
func (st *dedupStripe) recentlyLost(lim *sessionLimits, now int64) bool {
	return st.lost && now-st.lostAt < int64(lim.TTL)
}

// touch notes a write of s seen now: s becomes the most recent session.
// The list stays in order of seen even when now was read a little before
// another caller's (claimAt, recordAt).
func (st *dedupStripe) touch(s *session, now int64) {
	if st.lru.prev != s {
		s.prev.next, s.next.prev = s.next, s.prev
		s.prev, s.next = st.lru.prev, &st.lru
		st.lru.prev.next, st.lru.prev = s, s
	}
	if p := s.prev; p != &st.lru && p.seen > now {
		now = p.seen
	}
	s.seen = max(s.seen, now) // (never back: s may have been last already)
}

// expire drops up to n sessions of st silent for the TTL, and the expired
// marks past their time.
func (d *dedup) expire(st *dedupStripe, lim *sessionLimits, now int64, n int) int {
	done := 0
	for s := st.lru.next; s != &st.lru && done < n && now-s.seen >= int64(lim.TTL); s = st.lru.next {
		d.expireSession(st, lim, s, now)
		done++
	}
	keep := int64(lim.TTL) * expiredKeep
	for ; done < n && st.goneOff < len(st.goneQ) && now-st.goneQ[st.goneOff].at >= keep; done++ {
		st.popGone(d)
	}
	return done
}

// expireSession replaces s by its expired mark; the oldest marks go when
// the stripe holds too many.
func (d *dedup) expireSession(st *dedupStripe, lim *sessionLimits, s *session, now int64) {
	s.prev.next, s.next.prev = s.next, s.prev
	s.prev, s.next = nil, nil
	delete(st.clients, s.client)
	d.sessions.Add(-1)
	d.records.Add(-int64(s.n))
	d.held.Add(-s.held)
	st.gone[s.client] = expiredMark{maxSeq: s.maxSeq, at: now}
	st.goneQ = append(st.goneQ, goneAt{s.client, now})
	d.expired.Add(1)
	for len(st.gone) > lim.perStripe {
		st.lost, st.lostAt = true, now
		st.popGone(d)
	}
	// Queue entries of marks since taken over by a session are dead:
	// compact when they are the majority.
	if live := len(st.goneQ) - st.goneOff; live > 64 && live > 2*len(st.gone) {
		q := st.goneQ[:0]
		for _, g := range st.goneQ[st.goneOff:] {
			if m, ok := st.gone[g.client]; ok && m.at == g.at {
				q = append(q, g)
			}
		}
		st.goneQ, st.goneOff = q, 0
	}
}

// popGone drops the oldest expired mark (skipping dead queue entries).
func (st *dedupStripe) popGone(d *dedup) {
	for st.goneOff < len(st.goneQ) {
		g := st.goneQ[st.goneOff]
		st.goneOff++
		if m, ok := st.gone[g.client]; ok && m.at == g.at {
			delete(st.gone, g.client)
			d.expired.Add(-1)
			break
		}
	}
	if st.goneOff == len(st.goneQ) {
		st.goneQ, st.goneOff = st.goneQ[:0], 0
	} else if st.goneOff > 1024 && st.goneOff > len(st.goneQ)/2 {
		st.goneQ = append(st.goneQ[:0], st.goneQ[st.goneOff:]...)
		st.goneOff = 0
	}
}

// sweep expires, in every stripe, the sessions silent for the TTL and the
// expired marks past their time, a bounded batch per lock hold.
func (d *dedup) sweep() {
	lim := d.lim.Load()
	for i := range d.stripes {
		st := &d.stripes[i]
		for {
			st.mu.Lock()
			n := d.expire(st, lim, d.clock(), 256)
			st.mu.Unlock()
			if n < 256 {
				break
			}
		}
	}
}

// sweepPeriod is how often the sweeper runs: an eighth of the TTL, within
// [10 ms, 1 s].
func (d *dedup) sweepPeriod() time.Duration {
	// timing: exception — how promptly memory is returned, unrelated to
	// failure detection.
	return min(max(d.lim.Load().TTL/8, 10*time.Millisecond), time.Second)
}

// stats are the live sessions and the records they hold.
func (d *dedup) stats() (sessions, records uint64) {
	return uint64(max(d.sessions.Load(), 0)), uint64(max(d.records.Load(), 0))
}

// size is the number of remembered outcomes (for tests).
func (d *dedup) size() int { return int(d.records.Load()) }

func (d *dedup) raise(s *session, floor uint64) {
	held := s.held
	d.records.Add(-int64(s.raise(floor)))
	if s.held != held {
		d.held.Add(s.held - held)
	}
}

// put stores o as s's record of seq, unless o keeps a value (a MISMATCH
// answer's) and the records hold maxHeldTotal already: then a retry of
// seq is compared again.
func (d *dedup) put(s *session, seq uint64, o *outcome) {
	if seq > s.maxSeq {
		s.maxSeq = seq
	}
	if o.held > 0 && d.held.Load()+int64(o.held) > maxHeldTotal {
		return
	}
	held := s.held
	if s.put(seq, o) {
		d.records.Add(1)
	}
	if s.held != held {
		d.held.Add(s.held - held)
	}
}
