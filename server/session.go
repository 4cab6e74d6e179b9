package server

// session is one client's remembered outcomes.
type session struct {
	client     uint64
	seen       int64 // dedup clock of the last write seen
	prev, next *session
	floor      uint64
	// forgot: seqs below it that have no record were forgotten when the
	// session expired earlier (it came back): refused, never applied.
	forgot uint64
	maxSeq uint64
	// recs are sorted by seq: in-order writes append at the end, the
	// floor prunes the front. A write below the last one goes to ooo.
	recs []seqOutcome
	ooo  *oooRecs
	// oooPeak is how many out-of-order records the last ooo held at
	// most: the next one is made that large at once (ooo is dropped when
	// it empties, so an idle session holds no map). (A server records
	// one client's writes from two shards' streams, which interleave:
	// under load ooo empties and fills again all the time, and growing a
	// map from empty each time cost 4 % of a server's CPU.)
	oooPeak int
	// recsPeak is likewise how long recs grew before it last emptied
	// (recsHigh: since then); the next recs is made that large at once.
	recsPeak, recsHigh int
	n                  int // records held (non-nil recs entries plus ooo)
}

type seqOutcome struct {
	seq uint64
	o   *outcome // nil: forgotten
}

// oooRecs are a session's out-of-order records: a map for lookups and a
// min-heap of their seqs for pruning by the floor (entries of forgotten
// records are skipped when popped). Each operation is O(log n).
type oooRecs struct {
	m    map[uint64]*outcome
	h    []uint64
	peak int // len(m) at most
}

// get returns the record of seq, or nil.
func (s *session) get(seq uint64) *outcome {
	if i, ok := s.search(seq); ok {
		return s.recs[i].o
	}
	if s.ooo != nil {
		return s.ooo.m[seq]
	}
	return nil
}

// search is the position of seq in recs, or where it would go.
func (s *session) search(seq uint64) (int, bool) {
	lo, hi := 0, len(s.recs)
	if hi > 0 && s.recs[hi-1].seq < seq {
		return hi, false // the usual case: a new write
	}
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.recs[m].seq < seq {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(s.recs) && s.recs[lo].seq == seq
}

// put stores o for seq (at or above the floor) and reports whether it is
// a new record.
func (s *session) put(seq uint64, o *outcome) bool {
	if seq < s.floor {
		return false
	}
	i, ok := s.search(seq)
	switch {
	case ok:
		fresh := s.recs[i].o == nil
		s.recs[i].o = o
		if fresh {
			s.n++
		}
		return fresh
	case i == len(s.recs):
		if s.recs == nil && s.recsPeak > 0 {
			s.recs = make([]seqOutcome, 0, s.recsPeak)
		}
		s.recs = append(s.recs, seqOutcome{seq, o})
		s.recsHigh = max(s.recsHigh, len(s.recs))
	default:
		if s.ooo == nil {
			s.ooo = &oooRecs{m: make(map[uint64]*outcome, s.oooPeak), h: make([]uint64, 0, s.oooPeak)}
		}
		if _, had := s.ooo.m[seq]; had {
			s.ooo.m[seq] = o
			return false
		}
		s.ooo.m[seq] = o
		s.ooo.push(seq)
		s.ooo.peak = max(s.ooo.peak, len(s.ooo.m))
	}
	s.n++
	return true
}

// remove forgets the record of seq and reports whether there was one.
func (s *session) remove(seq uint64) bool {
	if i, ok := s.search(seq); ok {
		if s.recs[i].o == nil {
			return false
		}
		s.recs[i].o = nil // (pruned with the front)
		s.n--
		return true
	}
	if s.ooo != nil {
		if _, ok := s.ooo.m[seq]; ok {
			delete(s.ooo.m, seq)
			s.n--
			return true
		}
	}
	return false
}

// raise moves the floor up to floor, dropping the records below it, and
// returns how many it dropped.
func (s *session) raise(floor uint64) int {
	if floor <= s.floor {
		return 0
	}
	s.floor = floor
	dropped := 0
	i, _ := s.search(floor)
	for _, r := range s.recs[:i] {
		if r.o != nil {
			dropped++
		}
	}
	clear(s.recs[:i])
	s.recs = s.recs[i:] // the array's front is reclaimed when append reallocates
	if len(s.recs) == 0 {
		s.recs, s.recsPeak, s.recsHigh = nil, s.recsHigh, 0
	}
	if q := s.ooo; q != nil {
		for len(q.h) > 0 && q.h[0] < floor {
			seq := q.pop()
			if _, ok := q.m[seq]; ok {
				delete(q.m, seq)
				dropped++
			}
		}
		if len(q.m) == 0 {
			s.ooo, s.oooPeak = nil, q.peak
		}
	}
	s.n -= dropped
	return dropped
}

func (q *oooRecs) push(seq uint64) {
	q.h = append(q.h, seq)
	for i := len(q.h) - 1; i > 0; {
		p := (i - 1) / 2
		if q.h[p] <= q.h[i] {
			break
		}
		q.h[p], q.h[i] = q.h[i], q.h[p]
		i = p
	}
	// Forgotten records leave their seq in the heap: rebuild it from the
	// map when those are the majority.
	if len(q.h) > 64 && len(q.h) > 2*len(q.m) {
		q.h = q.h[:0]
		for seq := range q.m {
			q.h = append(q.h, seq)
		}
		for i := len(q.h)/2 - 1; i >= 0; i-- {
			q.down(i)
		}
	}
}

func (q *oooRecs) pop() uint64 {
	top := q.h[0]
	last := len(q.h) - 1
	q.h[0] = q.h[last]
	q.h = q.h[:last]
	q.down(0)
	return top
}

func (q *oooRecs) down(i int) {
	for {
		l := 2*i + 1
		if l >= len(q.h) {
			return
		}
		m := l
		if r := l + 1; r < len(q.h) && q.h[r] < q.h[l] {
			m = r
		}
		if q.h[i] <= q.h[m] {
			return
		}
		q.h[i], q.h[m] = q.h[m], q.h[i]
		i = m
	}
}
