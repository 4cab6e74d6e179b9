package server

import (
	"crypto/rand"
	"encoding/binary"
	"sync"
	"sync/atomic"
	"time"

	"ftkv/limits"
	"ftkv/wire"
)

// SessionConfig bounds what a server remembers of its clients' writes
// (zero values mean the defaults).
type SessionConfig struct {
	// TTL: a client's remembered outcomes are dropped once it has been
	// silent this long on this server (no write of it seen, as primary or
	// secondary, nor restored by re-seeding). Default DefaultSessionTTL.
	TTL time.Duration
	// MaxSessions caps the clients remembered (default
	// DefaultMaxSessions); beyond it the longest-silent one expires early.
	// It is enforced per stripe of client ids (MaxSessions/64 each).
	MaxSessions int
	// MaxRecords caps one client's records (default
	// DefaultMaxSessionRecords): a new write beyond it is refused with
	// BAD_REQUEST until answers let the client raise its floor.
	MaxRecords int
}

// Session defaults: the limits package's (one definition for the
// coordinator's flags and lines and the server).
const (
	DefaultSessionTTL        = limits.DefaultSessionTTL
	DefaultMaxSessions       = limits.DefaultMaxSessions
	DefaultMaxSessionRecords = limits.DefaultMaxSessionRecords
)

func (c SessionConfig) withDefaults() SessionConfig {
	if c.TTL <= 0 {
		c.TTL = DefaultSessionTTL
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = DefaultMaxSessions
	}
	if c.MaxRecords <= 0 {
		c.MaxRecords = DefaultMaxSessionRecords
	}
	return c
}

const (
	dedupStripes = 64
	// expiredKeep: an expired session's client id and highest sequence
	// number are kept this many TTLs after it expired, so that a write
	// retried that late is refused (SESSION_EXPIRED) rather than applied
	// again.
	expiredKeep = 16
	// sweepBatch bounds the sessions one write expires on its way, so no
	// write holds a stripe long; the sweeper does the rest.
	sweepBatch = 8
)

// dedup remembers the outcome of every client write whose sequence number
// is at or above the client's floor (the client has not yet seen the answer
// of anything at or above it), so a retried write is applied at most once.
// Primaries record writes when they are sequenced, secondaries when they
// are replicated, so the record survives a promotion.
//
// A client's records form its session. Sessions live in 64 stripes, by
// client id, each with its own lock, so one client's work never holds up
// another's (nor re-seeding) for longer than one stripe operation. A
// session silent for the TTL expires: its records go, and what remains is
// its expired mark (client id, highest sequence number), which answers
// SESSION_EXPIRED to a late retry for expiredKeep TTLs more.
type dedup struct {
	lim     atomic.Pointer[sessionLimits]
	now     func() time.Time
	t0      time.Time
	mix     uint64 // odd multiplier spreading client ids over stripes (random per process)
	stripes [dedupStripes]dedupStripe

	sessions atomic.Int64 // live sessions
	records  atomic.Int64 // records held
	expired  atomic.Int64 // expired marks held
}

type sessionLimits struct {
	SessionConfig
	perStripe int // MaxSessions / dedupStripes, rounded up
}

// dedupStripe is the sessions of one stripe of client ids. Every session
// is on the lru list, longest-silent first, so expiry pops the front.
type dedupStripe struct {
	mu      sync.Mutex
	clients map[uint64]*session
	lru     session // sentinel: lru.next is the longest-silent session
	gone    map[uint64]expiredMark
	goneQ   []goneAt // expired marks in the order they were made
	goneOff int      // goneQ[:goneOff] are popped
	// lostAt is when an expired mark was last dropped early (the count
	// cap); lost says whether it ever was. For a TTL after it, a retried
	// write (wire.FlagRetry) of an unknown client may be one whose mark
	// was dropped, so it is refused instead of applied.
	lostAt int64
	lost   bool
	_      [64]byte // keep neighbouring stripes' locks off one cache line
}

type expiredMark struct {
	maxSeq uint64 // highest sequence number seen of the client
	at     int64  // when the mark was made (dedup clock)
}

type goneAt struct {
	client uint64
	at     int64
}

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
	n    int // records held (non-nil recs entries plus ooo)
}

type seqOutcome struct {
	seq uint64
	o   *outcome // nil: forgotten
}

// oooRecs are a session's out-of-order records: a map for lookups and a
// min-heap of their seqs for pruning by the floor (entries of forgotten
// records are skipped when popped). Each operation is O(log n).
type oooRecs struct {
	m map[uint64]*outcome
	h []uint64
}

// outcome is the remembered answer to one client write. The connections
// waiting for it are the write path's business (entry.retries), not the
// record's: the record outlives them.
type outcome struct {
	// done is set once the write committed (or, on a secondary, when the
	// record is made); status, flags and value are final from then on.
	// It is atomic so a retry on another event loop reads it without the
	// dedup lock.
	done   atomic.Bool
	status wire.Status
	flags  uint8
	value  []byte // current value for a MISMATCH answer
}

// doneOutcome is a finished record, as a secondary learns it.
func doneOutcome(st wire.Status, flags uint8, value []byte) *outcome {
	o := &outcome{status: st, flags: flags, value: value}
	o.done.Store(true)
	return o
}

func newDedup() *dedup { return newDedupClock(time.Now) }

func newDedupClock(now func() time.Time) *dedup {
	var b [8]byte
	_, _ = rand.Read(b[:])
	d := &dedup{now: now, t0: now(), mix: binary.LittleEndian.Uint64(b[:]) | 1}
	for i := range d.stripes {
		st := &d.stripes[i]
		st.clients = make(map[uint64]*session)
		st.gone = make(map[uint64]expiredMark)
		st.lru.prev, st.lru.next = &st.lru, &st.lru
	}
	d.configure(SessionConfig{})
	return d
}

// configure sets the limits (zero fields: the defaults). The server calls
// it before it takes part in a view, so before any write.
func (d *dedup) configure(c SessionConfig) {
	c = c.withDefaults()
	d.lim.Store(&sessionLimits{SessionConfig: c, perStripe: (c.MaxSessions + dedupStripes - 1) / dedupStripes})
}

// clock is the time since the dedup began (monotonic with a real clock).
func (d *dedup) clock() int64 { return int64(d.now().Sub(d.t0)) }

func (d *dedup) stripe(client uint64) *dedupStripe {
	return &d.stripes[(client*d.mix)>>58]
}

// claim is what a primary's sequencer learns about a client write.
type claim uint8

const (
	claimNew      claim = iota // not seen before: the returned record is registered for it
	claimDone                  // answered before: answer again from the record
	claimInFlight              // sequenced, not committed yet: wait for it
	claimStale                 // below the client's floor: it can no longer be a retry
	claimExpired               // may be a retry of a forgotten write: SESSION_EXPIRED
	claimTooMany               // the client has MaxRecords records: refused
)

// claim prunes client's records below floor and looks up (client, seq);
// an unknown write gets a new, unfinished record, registered at once so
// a retry arriving on another event loop finds it. flags are the
// request's (wire.FlagRetry matters).
func (d *dedup) claim(client, seq, floor uint64, flags uint8) (*outcome, claim) {
	lim := d.lim.Load()
	now := d.clock()
	st := d.stripe(client)
	st.mu.Lock()
	defer st.mu.Unlock()
	d.expire(st, lim, now, sweepBatch)
	s := st.clients[client]
	if s == nil {
		if m, ok := st.gone[client]; ok && seq <= m.maxSeq {
			return nil, claimExpired
		}
		if _, ok := st.gone[client]; !ok && flags&wire.FlagRetry != 0 && st.lost && now-st.lostAt < int64(lim.TTL) {
			return nil, claimExpired
		}
		s = d.open(st, lim, client, now)
	}
	st.touch(s, now)
	d.raise(s, floor)
	if seq < s.floor {
		return nil, claimStale
	}
	if o := s.get(seq); o != nil {
		if o.done.Load() {
			return o, claimDone
		}
		return o, claimInFlight
	}
	if seq < s.forgot {
		return nil, claimExpired
	}
	if s.n >= lim.MaxRecords {
		return nil, claimTooMany
	}
	o := &outcome{}
	d.put(s, seq, o)
	return o, claimNew
}

// record prunes client's records below floor and stores o for seq, for a
// secondary that learns a write's outcome from its primary (its primary
// checked the limits).
func (d *dedup) record(client, seq, floor uint64, o *outcome) {
	lim := d.lim.Load()
	now := d.clock()
	st := d.stripe(client)
	st.mu.Lock()
	defer st.mu.Unlock()
	d.expire(st, lim, now, sweepBatch)
	s := st.clients[client]
	if s == nil {
		s = d.open(st, lim, client, now)
	}
	st.touch(s, now)
	d.raise(s, floor)
	d.put(s, seq, o)
}

// forget drops the record of (client, seq): a write its primary gave up
// on (the client retries it elsewhere).
func (d *dedup) forget(client, seq uint64) {
	st := d.stripe(client)
	st.mu.Lock()
	defer st.mu.Unlock()
	if s := st.clients[client]; s != nil && s.remove(seq) {
		d.records.Add(-1)
	}
}

// open makes client's session, which takes over its expired mark if it
// has one (the seqs up to it stay refused); if the stripe is full, its
// longest-silent session expires first.
func (d *dedup) open(st *dedupStripe, lim *sessionLimits, client uint64, now int64) *session {
	if len(st.clients) >= lim.perStripe {
		d.expireSession(st, lim, st.lru.next, now)
	}
	s := &session{client: client}
	if m, ok := st.gone[client]; ok {
		delete(st.gone, client)
		d.expired.Add(-1)
		s.forgot, s.maxSeq = m.maxSeq+1, m.maxSeq
	}
	st.clients[client] = s
	s.prev, s.next = st.lru.prev, &st.lru
	st.lru.prev.next, st.lru.prev = s, s
	d.sessions.Add(1)
	return s
}

// touch notes a write of s seen now: s becomes the most recent session.
func (st *dedupStripe) touch(s *session, now int64) {
	s.seen = now
	if st.lru.prev == s {
		return
	}
	s.prev.next, s.next.prev = s.next, s.prev
	s.prev, s.next = st.lru.prev, &st.lru
	st.lru.prev.next, st.lru.prev = s, s
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

func (d *dedup) raise(s *session, floor uint64) { d.records.Add(-int64(s.raise(floor))) }

func (d *dedup) put(s *session, seq uint64, o *outcome) {
	if seq > s.maxSeq {
		s.maxSeq = seq
	}
	if s.put(seq, o) {
		d.records.Add(1)
	}
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
		s.recs = append(s.recs, seqOutcome{seq, o})
	default:
		if s.ooo == nil {
			s.ooo = &oooRecs{m: make(map[uint64]*outcome)}
		}
		if _, had := s.ooo.m[seq]; had {
			s.ooo.m[seq] = o
			return false
		}
		s.ooo.m[seq] = o
		s.ooo.push(seq)
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
		s.recs = nil
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
			s.ooo = nil
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

// snapshot encodes every finished outcome and every expired mark, for a
// re-seeding secondary (writes still in flight reach it with their REPL
// frames). Records are packed in chunks of about 1 MiB, each one SEED
// frame; one stripe is locked at a time.
func (d *dedup) snapshot() [][]byte {
	var chunks [][]byte
	var b []byte
	flush := func() {
		if len(b) >= 1<<20 {
			chunks = append(chunks, b)
			b = nil
		}
	}
	for i := range d.stripes {
		st := &d.stripes[i]
		st.mu.Lock()
		for client, s := range st.clients {
			if s.forgot > 0 {
				b = wire.AppendDedupRecord(b, client, s.forgot-1, wire.StatusSessionExpired, 0, nil)
			}
			each := func(seq uint64, o *outcome) {
				if o != nil && o.done.Load() {
					b = wire.AppendDedupRecord(b, client, seq, o.status, o.flags, o.value)
					flush()
				}
			}
			for _, r := range s.recs {
				each(r.seq, r.o)
			}
			if s.ooo != nil {
				for seq, o := range s.ooo.m {
					each(seq, o)
				}
			}
		}
		for client, m := range st.gone {
			b = wire.AppendDedupRecord(b, client, m.maxSeq, wire.StatusSessionExpired, 0, nil)
			flush()
		}
		st.mu.Unlock()
	}
	return append(chunks, b)
}

// restore records the outcomes and expired marks of a snapshot. A record
// restored counts as a write of its client seen now.
func (d *dedup) restore(b []byte) error {
	lim := d.lim.Load()
	for len(b) > 0 {
		client, seq, stat, flags, value, rest, err := wire.NextDedupRecord(b)
		if err != nil {
			return err
		}
		b = rest
		now := d.clock()
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
				s = d.open(st, lim, client, now)
			}
			st.touch(s, now)
			if s.get(seq) == nil {
				d.put(s, seq, doneOutcome(stat, flags, append([]byte(nil), value...)))
			}
		}
		st.mu.Unlock()
	}
	return nil
}

// sessionConfig is the sessions' part of the server's limits.
func (c *Config) sessionConfig() SessionConfig {
	return SessionConfig{TTL: c.Limits.SessionTTL, MaxSessions: c.Limits.MaxSessions, MaxRecords: c.Limits.MaxSessionRecords}
}
