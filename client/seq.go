package client

import (
	"slices"
	"sync"
	"sync/atomic"
)

// seqs hands out a client's write sequence numbers and keeps the floor:
// the lowest one whose outcome is not known yet (every write below it is
// retired, so the servers may forget their deduplication records). Seqs
// are handed out in order and retired in any order, most of them soon and
// about in order. A ring of flags over [start, next) says which are
// retired, so begin and end cost a flag's store (a map of open seqs cost
// a gateway 6 % of its CPU). The ring grows to at most seqRingMax; a seq
// still open when the ring is full (a write stuck on an unavailable shard
// while the client writes on) moves to stuck, which holds only open
// seqs, so memory follows the writes in flight, not the writes since the
// oldest of them began.
type seqs struct {
	mu    sync.Mutex
	next  uint64   // the next seq to hand out
	start uint64   // the ring's first seq: open, or next
	done  []bool   // done[s&(len-1)] for start <= s < next; len a power of 2
	stuck []uint64 // open seqs below start, ascending
	max   int      // the ring's largest size (seqRingMax)
	now   atomic.Uint64
}

// The ring starts at seqRing flags, grows up to seqRingMax, and returns
// to seqRing when it empties after growing past seqRingKeep.
const (
	seqRing     = 64
	seqRingKeep = 4096
	seqRingMax  = 1 << 16
)

func newSeqs() *seqs {
	q := &seqs{next: 1, start: 1, done: make([]bool, seqRing), max: seqRingMax}
	q.now.Store(1)
	return q
}

// begin hands out the next seq.
func (q *seqs) begin() uint64 {
	q.mu.Lock()
	if q.next-q.start == uint64(len(q.done)) {
		if len(q.done) < q.max {
			q.grow()
		} else {
			// Full: the first seq (open) waits in stuck instead.
			q.stuck = append(q.stuck, q.start)
			q.start++
			q.advance()
		}
	}
	s := q.next
	q.done[s&uint64(len(q.done)-1)] = false
	q.next++
	q.mu.Unlock()
	return s
}

// grow doubles the ring, keeping every flag.
func (q *seqs) grow() {
	done := make([]bool, 2*len(q.done))
	old, nm := uint64(len(q.done)-1), uint64(len(done)-1)
	for s := q.start; s < q.next; s++ {
		done[s&nm] = q.done[s&old]
	}
	q.done = done
}

// advance moves start past the retired seqs at the front of the ring.
func (q *seqs) advance() {
	mask := uint64(len(q.done) - 1)
	for q.start < q.next && q.done[q.start&mask] {
		q.start++
	}
}

// end retires s.
func (q *seqs) end(s uint64) {
	q.mu.Lock()
	q.endLocked(s)
	q.mu.Unlock()
}

// endLocked retires s with q.mu held (a batch retires all of its seqs
// under one lock). A seq not open is ignored.
func (q *seqs) endLocked(s uint64) {
	switch {
	case s >= q.next:
		return
	case s < q.start:
		i, ok := slices.BinarySearch(q.stuck, s)
		if !ok {
			return
		}
		q.stuck = slices.Delete(q.stuck, i, i+1)
		if len(q.stuck) == 0 {
			q.stuck = nil
		}
	default:
		q.done[s&uint64(len(q.done)-1)] = true
		if s != q.start {
			return
		}
		q.advance()
		if q.start == q.next && len(q.done) > seqRingKeep {
			q.done = make([]bool, seqRing)
		}
	}
	q.now.Store(q.floor())
}

// floor is the lowest open seq (next when none is); q.mu held.
func (q *seqs) floor() uint64 {
	if len(q.stuck) > 0 {
		return q.stuck[0]
	}
	return q.start
}

// current is the floor, read without the lock.
func (q *seqs) current() uint64 { return q.now.Load() }
