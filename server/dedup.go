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
	held     atomic.Int64 // bytes of values all records hold (outcome.held; maxHeldTotal)
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
	// held is value's bytes as counted in its session's held (the
	// stripe's lock; hold, put and the removals keep the sum).
	held int32
	// origin is 1 + the shard whose copy the record came with (0: none
	// known): when that copy is dropped for a full re-seeding, its
	// records go too (dropOrigin).
	origin uint32
}

// originOf is the outcome.origin of a record that comes with shard's copy.
func originOf(shard int) uint32 { return uint32(shard) + 1 }

// doneOutcome is a finished record, as a secondary learns it.
func doneOutcome(st wire.Status, flags uint8, value []byte) *outcome {
	o := &outcome{status: st, flags: flags, value: value, held: int32(len(value))}
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
	claimTooMany               // the client has MaxRecords records: refused for now (retryable)
)

// claim prunes client's records below floor and looks up (client, seq);
// an unknown write gets a new, unfinished record of origin, registered at
// once so a retry arriving on another event loop finds it. flags are the
// request's (wire.FlagRetry matters).
func (d *dedup) claim(origin uint32, client, seq, floor uint64, flags uint8) (*outcome, claim) {
	return d.claimAt(d.clock(), origin, client, seq, floor, flags)
}

// claimAt is claim at the time now (d.clock), which a caller claiming a
// batch of writes reads once for all of them: reading the clock for each
// write was 3-4 % of a loaded server's CPU.
func (d *dedup) claimAt(now int64, origin uint32, client, seq, floor uint64, flags uint8) (*outcome, claim) {
	lim := d.lim.Load()
	st := d.stripe(client)
	st.mu.Lock()
	defer st.mu.Unlock()
	d.expire(st, lim, now, sweepBatch)
	s := st.clients[client]
	if s == nil {
		if m, ok := st.gone[client]; ok && seq <= m.maxSeq {
			return nil, claimExpired
		}
		if _, ok := st.gone[client]; !ok && flags&wire.FlagRetry != 0 && st.recentlyLost(lim, now) {
			return nil, claimExpired
		}
		s = d.open(st, lim, client, seq, now)
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
	// Beyond the bounds a write is refused, retryable: the client's floor
	// rises as its oldest write is answered. That oldest write (at the
	// floor) is never refused: refused, it would hold the floor below
	// the records that make the count forever (100 gateway connections'
	// SET k v NX GET on a 1 MiB key: 16 mismatches above a lower seq that
	// arrived later refused every write of the gateway to that server
	// until their deadline, TestDedupOldestWriteNeverRefused). It adds
	// at most one record: once answered, the floor passes it.
	if seq > s.floor && (s.n >= lim.MaxRecords || s.held >= maxHeldBytes) {
		return nil, claimTooMany
	}
	o := &outcome{origin: origin}
	d.put(s, seq, o)
	return o, claimNew
}

// record prunes client's records below floor and stores o for seq, for a
// secondary that learns a write's outcome from its primary (its primary
// checked the limits).
func (d *dedup) record(client, seq, floor uint64, o *outcome) {
	d.recordAt(d.clock(), client, seq, floor, o)
}

// recordAt is record at the time now (d.clock; see claimAt).
func (d *dedup) recordAt(now int64, client, seq, floor uint64, o *outcome) {
	lim := d.lim.Load()
	st := d.stripe(client)
	st.mu.Lock()
	defer st.mu.Unlock()
	d.expire(st, lim, now, sweepBatch)
	s := st.clients[client]
	if s == nil {
		s = d.open(st, lim, client, seq, now)
	}
	st.touch(s, now)
	d.raise(s, floor)
	d.put(s, seq, o)
}

// dropOrigin forgets every record that came with shard's copy (its
// origin): the copy is dropped for a full re-seeding, and a write it held
// that the shard's primary never committed must not be answered from its
// record when the client retries it (the seeding brings the primary's
// records). Records of no known origin (from a snapshot written before
// origins were kept) go too: a retry applied again is a lesser harm than
// an acknowledged write lost. It returns how many it dropped.
func (d *dedup) dropOrigin(shard int) int {
	want := originOf(shard)
	n := 0
	for i := range d.stripes {
		st := &d.stripes[i]
		st.mu.Lock()
		for _, s := range st.clients {
			held := s.held
			n += s.each(func(_ uint64, o *outcome) bool {
				return o != nil && (o.origin == want || o.origin == 0)
			})
			d.held.Add(s.held - held)
		}
		st.mu.Unlock()
	}
	d.records.Add(-int64(n))
	return n
}

// maxHeldBytes bounds the bytes of values one client's records hold (a
// MISMATCH answer keeps the value it saw, for a retry): a new write beyond
// it is refused as beyond MaxRecords. Each such record pinned a value a
// later write replaced: one client that never raised its floor held
// 1.2 GB on each server of a shard with 600 mismatches against 1 MB
// values, and up to MaxRecords (64 GiB) were allowed (a review).
const maxHeldBytes = 16 << 20

// maxHeldTotal bounds the bytes of values all clients' records hold
// together: beyond it a further MISMATCH answer is not remembered (put,
// hold). Each client staying under maxHeldBytes, 256 client ids pinned
// 512 MiB on the two servers of a shard for the session TTL
// (TestMismatchRecordsHoldBoundedAcrossClients), and one client may use
// as many ids as max_sessions. A failed compare-and-swap changed
// nothing, so a retry of one whose record was not kept is compared again
// (linearizable at the retry); records of writes that changed something
// keep no value and are never dropped for it.
const maxHeldTotal = 64 << 20

// hold counts o's value in the bytes its client's records hold, once its
// primary set it (after claim registered o for seq); a record dropped
// meanwhile is not counted.
func (d *dedup) hold(client, seq uint64, o *outcome) {
	st := d.stripe(client)
	st.mu.Lock()
	defer st.mu.Unlock()
	if s := st.clients[client]; s != nil && o.held == 0 && len(o.value) > 0 && s.get(seq) == o {
		if d.held.Load()+int64(len(o.value)) > maxHeldTotal {
			// (Its connections have o: their answer carries the value.)
			if s.remove(seq) {
				d.records.Add(-1)
			}
			return
		}
		o.held = int32(len(o.value))
		s.held += int64(o.held)
		d.held.Add(int64(o.held))
	}
}

// forget drops the record of (client, seq): a write its primary gave up
// on (the client retries it elsewhere).
func (d *dedup) forget(client, seq uint64) {
	st := d.stripe(client)
	st.mu.Lock()
	defer st.mu.Unlock()
	if s := st.clients[client]; s != nil {
		held := s.held
		if s.remove(seq) {
			d.records.Add(-1)
		}
		d.held.Add(s.held - held)
	}
}

// sessionConfig is the sessions' part of the server's limits.
func (c *Config) sessionConfig() SessionConfig {
	return SessionConfig{TTL: c.Limits.SessionTTL, MaxSessions: c.Limits.MaxSessions, MaxRecords: c.Limits.MaxSessionRecords}
}
