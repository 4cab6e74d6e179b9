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
	// runs hold the records in sorted runs: a write above a run's last
	// seq is appended to it, the floor prunes each run's front. A server
	// records one client's writes from several streams that interleave
	// (its primary shard's claims, its secondary shard's replicated
	// writes, behind them): each stream fills a run of its own, in
	// order. A write that fits no run (below every run's last, none
	// empty) goes to ooo. (With one run and the map, half of a server's
	// records went through the map: 6 % of its CPU at SET depth 16.)
	runs [sessionRuns]recRun
	ooo  *oooRecs
	// oooPeak is how many out-of-order records the last ooo held at
	// most: the next one is made that large at once (ooo is dropped when
	// it empties, so an idle session holds no map).
	oooPeak int
	n       int   // records held (non-nil runs' entries plus ooo)
	held    int64 // their values' bytes (outcome.held)
}

// sessionRuns is how many sorted runs a session keeps: a server is
// primary of a shard and secondary of another, three streams when a
// failover gave it a second primary shard.
const sessionRuns = 3

// recRun is one sorted run of a session's records.
type recRun struct {
	recs []seqOutcome
	// peak is how long recs grew before it last emptied (high: since
	// then); the next recs is made that large at once.
	peak, high int
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

// search is the position of seq in r.recs, or where it would go.
func (r *recRun) search(seq uint64) (int, bool) {
	lo, hi := 0, len(r.recs)
	if hi == 0 || r.recs[hi-1].seq < seq {
		return hi, false // the usual case: a new write
	}
	if r.recs[0].seq > seq {
		return 0, false
	}
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if r.recs[m].seq < seq {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo, lo < len(r.recs) && r.recs[lo].seq == seq
}

// find is the run and position holding seq's entry (whose record may
// have been forgotten: nil), or ok false.
func (s *session) find(seq uint64) (r *recRun, i int, ok bool) {
	for k := range s.runs {
		r = &s.runs[k]
		if i, ok = r.search(seq); ok {
			return r, i, true
		}
	}
	return nil, 0, false
}

// get returns the record of seq, or nil.
func (s *session) get(seq uint64) *outcome {
	if r, i, ok := s.find(seq); ok {
		return r.recs[i].o
	}
	if s.ooo != nil {
		return s.ooo.m[seq]
	}
	return nil
}

// put stores o for seq (at or above the floor) and reports whether it is
// a new record.
func (s *session) put(seq uint64, o *outcome) bool {
	if seq < s.floor {
		return false
	}
	if r, i, ok := s.find(seq); ok {
		old := r.recs[i].o
		r.recs[i].o = o
		s.held += int64(o.held)
		if old == nil {
			s.n++
		} else {
			s.held -= int64(old.held)
		}
		return old == nil
	}
	if s.ooo != nil {
		if old, had := s.ooo.m[seq]; had {
			s.ooo.m[seq] = o
			s.held += int64(o.held) - int64(old.held)
			return false
		}
	}
	// The run whose last seq is the highest below seq (that stream's
	// own), else an empty one.
	var fit, empty *recRun
	for k := range s.runs {
		r := &s.runs[k]
		if len(r.recs) == 0 {
			if empty == nil {
				empty = r
			}
		} else if last := r.recs[len(r.recs)-1].seq; last < seq && (fit == nil || last > fit.recs[len(fit.recs)-1].seq) {
			fit = r
		}
	}
	if fit == nil {
		fit = empty
	}
	if fit != nil {
		if fit.recs == nil && fit.peak > 0 {
			fit.recs = make([]seqOutcome, 0, fit.peak)
		}
		fit.recs = append(fit.recs, seqOutcome{seq, o})
		s.held += int64(o.held)
		fit.high = max(fit.high, len(fit.recs))
	} else {
		if s.ooo == nil {
			s.ooo = &oooRecs{m: make(map[uint64]*outcome, s.oooPeak), h: make([]uint64, 0, s.oooPeak)}
		}
		s.ooo.m[seq] = o
		s.held += int64(o.held)
		s.ooo.push(seq)
		s.ooo.peak = max(s.ooo.peak, len(s.ooo.m))
	}
	s.n++
	return true
}

// remove forgets the record of seq and reports whether there was one.
func (s *session) remove(seq uint64) bool {
	if r, i, ok := s.find(seq); ok {
		if r.recs[i].o == nil {
			return false
		}
		s.held -= int64(r.recs[i].o.held)
		r.recs[i].o = nil // (pruned with the front)
		s.n--
		return true
	}
	if s.ooo != nil {
		if o, ok := s.ooo.m[seq]; ok {
			s.held -= int64(o.held)
			delete(s.ooo.m, seq)
			s.n--
			return true
		}
	}
	return false
}

// each calls fn for every entry of the runs and of ooo (o nil: a
// forgotten record's entry); fn returns whether to forget the record.
// Callers hold the session's stripe.
func (s *session) each(fn func(seq uint64, o *outcome) (forget bool)) (forgotten int) {
	for k := range s.runs {
		r := &s.runs[k]
		for j, e := range r.recs {
			if fn(e.seq, e.o) && e.o != nil {
				s.held -= int64(e.o.held)
				r.recs[j].o = nil // (pruned with the front)
				forgotten++
			}
		}
	}
	if s.ooo != nil {
		for seq, o := range s.ooo.m {
			if fn(seq, o) {
				if o != nil {
					s.held -= int64(o.held)
				}
				delete(s.ooo.m, seq)
				forgotten++
			}
		}
	}
	s.n -= forgotten
	return forgotten
}

// raise moves the floor up to floor, dropping the records below it, and
// returns how many it dropped.
func (s *session) raise(floor uint64) int {
	if floor <= s.floor {
		return 0
	}
	s.floor = floor
	dropped := 0
	for k := range s.runs {
		r := &s.runs[k]
		if len(r.recs) == 0 || r.recs[0].seq >= floor {
			continue
		}
		i, _ := r.search(floor)
		for _, e := range r.recs[:i] {
			if e.o != nil {
				s.held -= int64(e.o.held)
				dropped++
			}
		}
		clear(r.recs[:i])
		r.recs = r.recs[i:] // the array's front is reclaimed when append reallocates
		if len(r.recs) == 0 {
			r.recs, r.peak, r.high = nil, r.high, 0
		}
	}
	if q := s.ooo; q != nil {
		for len(q.h) > 0 && q.h[0] < floor {
			seq := q.pop()
			if o, ok := q.m[seq]; ok {
				if o != nil {
					s.held -= int64(o.held)
				}
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
