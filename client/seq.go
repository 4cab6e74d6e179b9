package client

import (
	"sync"
	"sync/atomic"
)

// seqs hands out a client's write sequence numbers and keeps the floor:
// the lowest one whose outcome is not known yet (every write below it is
// retired, so the servers may forget their deduplication records). Seqs
// are handed out in order and retired in any order; a ring of flags over
// [floor, next) says which are retired, so neither takes more than a
// flag's store (a map of open seqs cost a gateway 6 % of its CPU).
type seqs struct {
	mu    sync.Mutex
	next  uint64 // the next seq to hand out
	floor uint64 // the lowest seq not retired (next when none is open)
	done  []bool // done[s&(len-1)] for floor <= s < next; len a power of 2
	now   atomic.Uint64
}

// seqRing is the ring's starting size, and the size it returns to when
// it has grown past seqRingKeep and empties.
const (
	seqRing     = 64
	seqRingKeep = 4096
)

func newSeqs() *seqs {
	q := &seqs{next: 1, floor: 1, done: make([]bool, seqRing)}
	q.now.Store(1)
	return q
}

// begin hands out the next seq.
func (q *seqs) begin() uint64 {
	q.mu.Lock()
	if q.next-q.floor == uint64(len(q.done)) {
		q.grow()
	}
	s := q.next
	q.done[s&uint64(len(q.done)-1)] = false
	q.next++
	q.mu.Unlock()
	return s
}

// grow doubles the ring, keeping every open seq's flag.
func (q *seqs) grow() {
	done := make([]bool, 2*len(q.done))
	old, nm := uint64(len(q.done)-1), uint64(len(done)-1)
	for s := q.floor; s < q.next; s++ {
		done[s&nm] = q.done[s&old]
	}
	q.done = done
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
	if s < q.floor || s >= q.next {
		return
	}
	mask := uint64(len(q.done) - 1)
	q.done[s&mask] = true
	if s != q.floor {
		return
	}
	for q.floor < q.next && q.done[q.floor&mask] {
		q.floor++
	}
	if q.floor == q.next && len(q.done) > seqRingKeep {
		q.done = make([]bool, seqRing)
	}
	q.now.Store(q.floor)
}

// current is the floor, read without the lock.
func (q *seqs) current() uint64 { return q.now.Load() }
