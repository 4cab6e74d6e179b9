package decide

import "ftkv/wire"

// Current records, per shard, which of its two holders keeps a copy that
// holds every write acknowledged so far: bit 1 for the home server s,
// bit 2 for the next one (s+1 mod n), the only servers that ever hold a
// copy of s. A copy that misses acknowledged writes (its server was out
// while the other copy alone acknowledged them) is complete in its log
// and tells nothing of what it misses; only this record, committed with
// every view, says it must never lead (or be restored, or chosen at a
// restart). nil or a short record: every copy counts (a cluster that
// never committed one).
type Current []uint8

// Both marks both copies of a shard current.
const Both uint8 = 3

// Bit is the bit of server holder for shard s of n (0 when holder never
// holds s).
func Bit(n, s, holder int) uint8 {
	switch {
	case holder == s:
		return 1
	case n > 1 && holder == (s+1)%n:
		return 2
	}
	return 0
}

// Has reports whether holder's copy of shard s may hold every
// acknowledged write.
func (c Current) Has(n, s, holder int) bool {
	if s >= len(c) {
		return true
	}
	return c[s]&Bit(n, s, holder) != 0
}

// AllCurrent is the record of a cluster of n that starts afresh.
func AllCurrent(n int) Current {
	c := make(Current, n)
	for s := range c {
		c[s] = Both
	}
	return c
}

// Next is the record once v is committed (views are committed before any
// server applies them, so a copy leaves the record before the other one
// acknowledges a write alone): a shard's primary holds every acknowledged
// write, and so does its secondary when that server is serving (a
// re-seeding one is not whole yet). A shard without a primary (both
// copies gone) keeps what it had, for the copies that come back.
func (c Current) Next(v wire.View) Current {
	n := len(v.Shards)
	out := make(Current, n)
	for s, p := range v.Shards {
		if p.Primary < 0 {
			out[s] = Both
			if s < len(c) {
				out[s] = c[s]
			}
			continue
		}
		out[s] = Bit(n, s, int(p.Primary))
		if q := int(p.Secondary); q >= 0 && q < len(v.Servers) && v.Servers[q].State == wire.StateServing {
			out[s] |= Bit(n, s, q)
		}
	}
	return out
}
