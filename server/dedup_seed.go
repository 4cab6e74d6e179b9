package server

import (
	"ftkv/wire"
)

// snapshot encodes, for a secondary re-seeded with shard's copy, every
// finished outcome that came with that copy (or with none known) and
// every expired mark (writes still in flight reach it with their REPL
// frames). Not the other shards' outcomes: the secondary records what it
// restores as shard's, and an outcome of a write this server holds in
// another copy, which that copy's primary never committed, would then
// outlive the reset of the secondary's own copy of that shard (a review
// lost an acknowledged write so). Records are packed in chunks of about
// 1 MiB, each one SEED frame; one stripe is locked at a time.
func (d *dedup) snapshot(shard int) [][]byte {
	g := d.snapshotBy()
	var out [][]byte
	for _, c := range append(g[0], g[originOf(shard)]...) {
		if len(c) > 0 {
			out = append(out, c)
		}
	}
	return out
}

// snapshotBy encodes every finished outcome and every expired mark, the
// outcomes grouped by their origin (expired marks go with origin 0).
func (d *dedup) snapshotBy() map[uint32][][]byte {
	type group struct {
		chunks [][]byte
		b      []byte
	}
	groups := map[uint32]*group{0: {}}
	add := func(origin uint32, client, seq uint64, stat wire.Status, flags uint8, value []byte) {
		g := groups[origin]
		if g == nil {
			g = &group{}
			groups[origin] = g
		}
		g.b = wire.AppendDedupRecord(g.b, client, seq, stat, flags, value)
		if len(g.b) >= 1<<20 {
			g.chunks = append(g.chunks, g.b)
			g.b = nil
		}
	}
	// When a stripe last dropped a mark early, as an age: one record of
	// client 0 (never a client's id), its seq the age in nanoseconds.
	// Stripes differ between processes (their hash is salted), so the
	// receiver applies it to all of them.
	lost := int64(-1)
	now := d.clock()
	for i := range d.stripes {
		st := &d.stripes[i]
		st.mu.Lock()
		if st.lost {
			lost = max(lost, st.lostAt)
		}
		st.mu.Unlock()
	}
	if lost >= 0 {
		add(0, 0, uint64(max(now-lost, 0)), wire.StatusSessionExpired, 0, nil)
	}
	for i := range d.stripes {
		st := &d.stripes[i]
		st.mu.Lock()
		for client, s := range st.clients {
			if s.forgot > 0 {
				add(0, client, s.forgot-1, wire.StatusSessionExpired, 0, nil)
			}
			s.each(func(seq uint64, o *outcome) bool {
				if o != nil && o.done.Load() {
					add(o.origin, client, seq, o.status, o.flags, o.value)
				}
				return false
			})
		}
		for client, m := range st.gone {
			add(0, client, m.maxSeq, wire.StatusSessionExpired, 0, nil)
		}
		st.mu.Unlock()
	}
	out := make(map[uint32][][]byte, len(groups))
	for origin, g := range groups {
		out[origin] = append(g.chunks, g.b)
	}
	return out
}

// noteLost marks every stripe as having dropped a mark early at the dedup
// clock reading at (a re-seeding sender's stripes are not ours).
func (d *dedup) noteLost(at int64) {
	for i := range d.stripes {
		st := &d.stripes[i]
		st.mu.Lock()
		if !st.lost || at > st.lostAt {
			st.lost, st.lostAt = true, at
		}
		st.mu.Unlock()
	}
}

// restore records the outcomes and expired marks of a snapshot, the
// outcomes of the given origin. A record restored counts as a write of
// its client seen now.
func (d *dedup) restore(b []byte, origin uint32) error {
	lim := d.lim.Load()
	for len(b) > 0 {
		client, seq, stat, flags, value, rest, err := wire.NextDedupRecord(b)
		if err != nil {
			return err
		}
		b = rest
		now := d.clock()
		if client == 0 {
			d.noteLost(now - int64(seq))
			continue
		}
		st := d.stripe(client)
		st.mu.Lock()
		s := st.clients[client]
		switch {
		case stat == wire.StatusSessionExpired && s != nil:
			s.forgot = max(s.forgot, seq+1)
			s.maxSeq = max(s.maxSeq, seq)
		case stat == wire.StatusSessionExpired:
			m, ok := st.gone[client]
			if !ok {
				d.expired.Add(1)
			}
			st.gone[client] = expiredMark{maxSeq: max(m.maxSeq, seq), at: now}
			st.goneQ = append(st.goneQ, goneAt{client, now})
			for len(st.gone) > lim.perStripe {
				st.lost, st.lostAt = true, now
				st.popGone(d)
			}
		default:
			if s == nil {
				s = d.open(st, lim, client, seq, now)
			}
			st.touch(s, now)
			if s.get(seq) == nil {
				o := doneOutcome(stat, flags, append([]byte(nil), value...))
				o.origin = origin
				d.put(s, seq, o)
			}
		}
		st.mu.Unlock()
	}
	return nil
}
