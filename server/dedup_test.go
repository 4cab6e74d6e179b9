package server

import (
	"math/rand/v2"
	"testing"
	"time"

	"ftkv/wire"
)

func TestDedupFloorPrunes(t *testing.T) {
	d := newDedup()
	for s := uint64(1); s <= 10; s++ {
		d.record(7, s, 0, doneOutcome(0, 0, nil))
	}
	if o, cl := d.claim(0, 7, 5, 1, 0); o == nil || cl != claimDone {
		t.Fatal("record 5 must be remembered while the floor is 1")
	}
	if _, cl := d.claim(0, 7, 11, 6, 0); cl != claimNew {
		t.Fatal("seq 11 is above the floor and new")
	}
	if n := d.size(); n != 6 {
		t.Fatalf("%d records after floor 6, want 6 (6..11)", n)
	}
	if _, cl := d.claim(0, 7, 11, 6, 0); cl != claimInFlight {
		t.Fatal("seq 11 was claimed: it is in flight")
	}
	if _, cl := d.claim(0, 7, 3, 6, 0); cl != claimStale {
		t.Fatal("seq 3 is below the floor: a retry of it cannot happen")
	}
}

func TestDedupSnapshotRestore(t *testing.T) {
	a := newDedup()
	a.record(7, 3, 0, doneOutcome(2, 1, []byte("cur\x00")))
	a.claim(0, 7, 4, 0, 0) // in flight: travels with its REPL frame
	a.record(9, 1, 0, doneOutcome(0, 0, nil))
	b := newDedup()
	for _, c := range a.snapshot(0) {
		if err := b.restore(c, 0); err != nil {
			t.Fatal(err)
		}
	}
	o, cl := b.claim(0, 7, 3, 1, 0)
	if cl != claimDone || o.status != 2 || o.flags != 1 || string(o.value) != "cur\x00" {
		t.Fatalf("record (7,3) = %+v, %v", o, cl)
	}
	if _, cl := b.claim(0, 7, 4, 1, 0); cl != claimNew {
		t.Fatal("an unfinished record was copied")
	}
	if _, cl := b.claim(0, 9, 1, 1, 0); cl != claimDone {
		t.Fatal("record (9,1) missing")
	}
}

// TestDedupDropOrigin: dropping a shard's outcomes (its copy was reset)
// forgets every record that came with that shard, in order or out of
// order, and those of no known shard, and keeps another shard's; a
// snapshot grouped by origin carries the origins across a restore; a
// seed's snapshot of one shard carries only that shard's records (and
// those of no known shard).
func TestDedupDropOrigin(t *testing.T) {
	rec := func(d *dedup, client, seq uint64, origin uint32) {
		o := doneOutcome(0, 0, nil)
		o.origin = origin
		d.record(client, seq, 1, o)
	}
	fill := func(d *dedup) {
		rec(d, 7, 5, originOf(0))
		rec(d, 7, 3, originOf(0)) // out of order
		rec(d, 7, 6, originOf(1))
		rec(d, 8, 1, 0)
		if _, cl := d.claim(originOf(0), 9, 1, 1, 0); cl != claimNew { // a primary's, in flight
			t.Fatal(cl)
		}
	}
	check := func(d *dedup, when string) {
		t.Helper()
		for _, c := range []struct {
			client, seq uint64
			want        claim
		}{{7, 5, claimNew}, {7, 3, claimNew}, {7, 6, claimDone}, {8, 1, claimNew}} {
			if _, cl := d.claim(0, c.client, c.seq, 1, wire.FlagRetry); cl != c.want {
				t.Fatalf("%s: (%d, %d) is %v, want %v", when, c.client, c.seq, cl, c.want)
			}
		}
	}
	a := newDedup()
	fill(a)
	if n := a.dropOrigin(0); n != 4 {
		t.Fatalf("dropped %d records of shard 0 or of none known, want 4", n)
	}
	check(a, "dropped")
	if _, cl := a.claim(0, 9, 1, 1, 0); cl != claimNew {
		t.Fatalf("the primary's record in flight of shard 0 was kept: %v", cl)
	}

	b := newDedup()
	fill(b) // (its record in flight is in no snapshot)
	c := newDedup()
	groups := b.snapshotBy()
	if len(groups) != 3 {
		t.Fatalf("%d groups, want 3 (none, shard 0, shard 1)", len(groups))
	}
	for origin, chunks := range groups {
		for _, ch := range chunks {
			if err := c.restore(ch, origin); err != nil {
				t.Fatal(err)
			}
		}
	}
	c.dropOrigin(0)
	check(c, "restored, then dropped")

	// A seed of shard 1: (7,6) and (8,1) only.
	e := newDedup()
	for _, ch := range b.snapshot(1) {
		if err := e.restore(ch, originOf(1)); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		client, seq uint64
		want        claim
	}{{7, 5, claimNew}, {7, 3, claimNew}, {7, 6, claimDone}, {8, 1, claimDone}} {
		if _, cl := e.claim(0, c.client, c.seq, 1, wire.FlagRetry); cl != c.want {
			t.Fatalf("seeded with shard 1: (%d, %d) is %v, want %v", c.client, c.seq, cl, c.want)
		}
	}
}

// TestDedupModel checks the sorted records against a map under random
// operations: seqs at random above the floor, and seqs of a client's
// writes arriving through interleaved streams, each in order (a server
// claims its primary shard's writes and records its secondary shard's,
// behind them), as many as the session has runs.
func TestDedupModel(t *testing.T) {
	for _, shape := range []string{"random", "streams"} {
		t.Run(shape, func(t *testing.T) {
			seed := rand.Uint64()
			t.Logf("seed %d", seed)
			dedupModel(t, rand.New(rand.NewPCG(seed, 0)), shape == "streams")
		})
	}
}

func dedupModel(t *testing.T, r *rand.Rand, streams bool) {
	d := newDedup()
	model := map[uint64]*outcome{}
	floor := uint64(0)
	prune := func() {
		for s := range model {
			if s < floor {
				delete(model, s)
			}
		}
	}
	// streams: the client numbers its writes in order and sends each
	// down one of them; next delivers the head of a random stream, and
	// the floor trails the oldest write not delivered yet.
	queues := make([][]uint64, sessionRuns)
	sent, oldest := uint64(0), uint64(0)
	next := func() uint64 {
		if !streams {
			if r.IntN(10) == 0 {
				floor += uint64(r.IntN(5))
			}
			return floor + uint64(r.IntN(40))
		}
		for n := r.IntN(3); n >= 0 || sent < floor+8; n-- {
			k := r.IntN(len(queues))
			queues[k] = append(queues[k], sent)
			sent++
		}
		k := r.IntN(len(queues))
		for len(queues[k]) == 0 {
			k = (k + 1) % len(queues)
		}
		seq := queues[k][0]
		queues[k] = queues[k][1:]
		oldest = sent
		for _, q := range queues {
			if len(q) > 0 {
				oldest = min(oldest, q[0])
			}
		}
		if oldest > 20 && r.IntN(4) == 0 {
			floor = max(floor, oldest-20)
		}
		return seq
	}
	for i := 0; i < 20000; i++ {
		seq := next()
		op := r.IntN(3)
		if streams && oldest > floor && r.IntN(10) == 0 {
			// A retry of a write delivered before, or one forgotten.
			seq, op = floor+uint64(r.IntN(int(oldest-floor))), r.IntN(2)
		}
		switch op {
		case 0:
			o, cl := d.claim(0, 1, seq, floor, 0)
			prune()
			want := model[seq]
			switch {
			case seq < floor:
				if cl != claimStale {
					t.Fatalf("step %d: claim(%d) floor %d = %v, want stale", i, seq, floor, cl)
				}
			case want == nil:
				if cl != claimNew || o == nil {
					t.Fatalf("step %d: claim(%d) floor %d = %v, want new", i, seq, floor, cl)
				}
				model[seq] = o
			default:
				if o != want || (cl == claimDone) != want.done.Load() {
					t.Fatalf("step %d: claim(%d) floor %d = %p %v, model %p", i, seq, floor, o, cl, want)
				}
			}
		case 1:
			d.forget(1, seq)
			delete(model, seq)
		case 2:
			o := doneOutcome(0, 0, nil)
			d.record(1, seq, floor, o)
			prune()
			if seq >= floor {
				model[seq] = o
			}
		}
		if d.size() != len(model) {
			t.Fatalf("step %d: %d records, model %d", i, d.size(), len(model))
		}
	}
	if streams {
		st := d.stripe(1)
		s := st.clients[1]
		if s.ooo != nil && len(s.ooo.m) > len(model)/10 {
			t.Errorf("%d of %d records out of order: the runs took too few", len(s.ooo.m), len(model))
		}
	}
}

// fakeClock is a dedup clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time      { return c.t }
func (c *fakeClock) add(d time.Duration) { c.t = c.t.Add(d) }
func newTestDedup(cfg SessionConfig) (*dedup, *fakeClock) {
	c := &fakeClock{t: time.Unix(1000, 0)}
	d := newDedupClock(c.now)
	d.configure(cfg)
	return d, c
}

// sameStripe returns n client ids (from 1 on, odd) that share a stripe.
func sameStripe(d *dedup, n int) []uint64 {
	var ids []uint64
	want := d.stripe(1)
	for id := uint64(1); len(ids) < n; id += 2 {
		if d.stripe(id) == want {
			ids = append(ids, id)
		}
	}
	return ids
}

func TestDedupSessionTTL(t *testing.T) {
	const ttl = time.Minute
	cases := []struct {
		name    string
		silence time.Duration // after the client's write of seq 5
		sweep   bool          // the sweeper runs (else another client's write expires it)
		retry   claim         // the claim of seq 5 again (floor 5)
		next    claim         // the claim of seq 6 after that
	}{
		{"within the TTL", ttl - time.Second, true, claimDone, claimNew},
		{"after the TTL, swept", ttl, true, claimExpired, claimNew},
		{"after the TTL, by a write", ttl + time.Second, false, claimExpired, claimNew},
		{"mark kept 16 TTLs", (expiredKeep + 1) * ttl / 2, true, claimExpired, claimNew},
		{"mark gone after 16 TTLs", (expiredKeep + 1) * ttl, true, claimNew, claimNew},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, clk := newTestDedup(SessionConfig{TTL: ttl})
			ids := sameStripe(d, 2)
			c, other := ids[0], ids[1]
			o, _ := d.claim(0, c, 5, 5, 0)
			o.done.Store(true)
			if s, r := d.stats(); s != 1 || r != 1 {
				t.Fatalf("stats %d sessions %d records, want 1 1", s, r)
			}
			// The silence is crossed in steps, as a sweeper would see it.
			for left := tc.silence; left > 0; {
				step := min(left, ttl/2)
				clk.add(step)
				left -= step
				if tc.sweep {
					d.sweep()
				} else {
					d.claim(0, other, uint64(left)+10, 0, 0) // a write of another client of the stripe
				}
			}
			if tc.silence >= ttl {
				if got := d.get(c); got != nil {
					t.Fatalf("session still held after %s of silence", tc.silence)
				}
			}
			if _, cl := d.claim(0, c, 5, 5, wire.FlagRetry); cl != tc.retry {
				t.Fatalf("retry of seq 5: %v, want %v", cl, tc.retry)
			}
			if _, cl := d.claim(0, c, 6, 5, 0); cl != tc.next {
				t.Fatalf("seq 6: %v, want %v", cl, tc.next)
			}
		})
	}
}

// get is the session of client (nil if none), for tests.
func (d *dedup) get(client uint64) *session {
	st := d.stripe(client)
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.clients[client]
}

func TestDedupExpiryReturnsMemory(t *testing.T) {
	d, clk := newTestDedup(SessionConfig{TTL: time.Second})
	for c := uint64(1); c <= 20000; c += 2 {
		d.claim(0, c, 1, 1, 0)
	}
	if s, r := d.stats(); s != 10000 || r != 10000 {
		t.Fatalf("%d sessions %d records, want 10000 each", s, r)
	}
	clk.add(time.Second)
	d.sweep()
	if s, r := d.stats(); s != 0 || r != 0 || d.expired.Load() != 10000 {
		t.Fatalf("after the TTL: %d sessions %d records %d marks, want 0 0 10000", s, r, d.expired.Load())
	}
	clk.add(expiredKeep * time.Second)
	d.sweep()
	if n := d.expired.Load(); n != 0 {
		t.Fatalf("%d expired marks after %d TTLs", n, expiredKeep)
	}
	for i := range d.stripes {
		if st := &d.stripes[i]; len(st.goneQ) != 0 || len(st.gone) != 0 || len(st.clients) != 0 {
			t.Fatalf("stripe %d holds %d queued marks, %d marks, %d sessions", i, len(st.goneQ), len(st.gone), len(st.clients))
		}
	}
}

func TestDedupMaxSessions(t *testing.T) {
	d, clk := newTestDedup(SessionConfig{TTL: time.Minute, MaxSessions: dedupStripes}) // one per stripe
	ids := sameStripe(d, 3)
	a, b, c := ids[0], ids[1], ids[2]
	o, _ := d.claim(0, a, 1, 1, 0)
	o.done.Store(true)
	clk.add(time.Second)
	d.claim(0, b, 1, 1, 0) // the stripe is full: a, the longest silent, expires early
	if d.get(a) != nil || d.get(b) == nil {
		t.Fatal("a must have expired for b")
	}
	if _, cl := d.claim(0, a, 1, 1, wire.FlagRetry); cl != claimExpired {
		t.Fatalf("a's retry after its early expiry: %v, want expired (its mark is kept)", cl)
	}
	// c evicts b; b's mark evicts a's: a is forgotten entirely, early.
	d.claim(0, c, 1, 1, 0)
	if _, cl := d.claim(0, a, 1, 1, wire.FlagRetry); cl != claimExpired {
		t.Fatalf("a's retry once forgotten early: %v, want expired (for a TTL)", cl)
	}
	clk.add(time.Minute / 2)
	d.claim(0, c, 2, 1, 0) // c stays live: nothing more is forgotten
	clk.add(time.Minute / 2)
	if _, cl := d.claim(0, a, 1, 1, wire.FlagRetry); cl != claimNew {
		t.Fatalf("a's retry a TTL after the early loss: %v, want new (a library client stops retrying by then)", cl)
	}
	// A first attempt (no FlagRetry) of a client the stripe does not know
	// is never refused: e evicts c, whose mark drops b's, early.
	e := sameStripe(d, 4)[3]
	d.claim(0, e, 1, 1, 0)
	if d.get(c) != nil {
		t.Fatal("c must have expired for e")
	}
	if _, cl := d.claim(0, b, 1, 1, 0); cl != claimNew {
		t.Fatalf("b's first attempt right after an early loss: %v, want new", cl)
	}
}

func TestDedupMaxRecords(t *testing.T) {
	d, _ := newTestDedup(SessionConfig{MaxRecords: 4})
	for s := uint64(1); s <= 4; s++ {
		if _, cl := d.claim(0, 7, s, 1, 0); cl != claimNew {
			t.Fatalf("seq %d: %v", s, cl)
		}
	}
	if _, cl := d.claim(0, 7, 5, 1, 0); cl != claimTooMany {
		t.Fatalf("fifth write in flight: %v, want too many", cl)
	}
	if _, cl := d.claim(0, 7, 2, 1, 0); cl != claimInFlight {
		t.Fatalf("a retry within the cap: %v, want in flight", cl)
	}
	if _, cl := d.claim(0, 7, 5, 3, 0); cl != claimNew {
		t.Fatalf("floor 3 frees two records: %v, want new", cl)
	}
	if n := d.size(); n != 3 {
		t.Fatalf("%d records, want 3 (3..5)", n)
	}
}

// Descending and random sequence numbers cost about what ascending ones
// do (they once copied the client's whole record list each).
func TestDedupHostileSeqsCheap(t *testing.T) {
	const n = 100000
	run := func(next func(i int) uint64) time.Duration {
		best := time.Duration(1 << 62)
		for range 3 {
			d, _ := newTestDedup(SessionConfig{MaxRecords: 2 * n})
			start := time.Now()
			for i := 0; i < n; i++ {
				if _, cl := d.claim(0, 7, next(i), 0, 0); cl != claimNew {
					t.Fatalf("write %d: %v", i, cl)
				}
			}
			best = min(best, time.Since(start))
			if d.size() != n {
				t.Fatalf("%d records, want %d", d.size(), n)
			}
		}
		return best
	}
	r := rand.New(rand.NewPCG(1, 2))
	perm := r.Perm(n)
	asc := run(func(i int) uint64 { return uint64(i) + 1 })
	desc := run(func(i int) uint64 { return uint64(n - i) })
	rnd := run(func(i int) uint64 { return uint64(perm[i]) + 1 })
	t.Logf("%d writes of one client: ascending %s, descending %s, random %s", n, asc, desc, rnd)
	// Quadratic copying took ~100x longer; the bound leaves room for noise.
	if desc > 40*asc+50*time.Millisecond || rnd > 40*asc+50*time.Millisecond {
		t.Fatalf("descending %s or random %s far slower than ascending %s", desc, rnd, asc)
	}
	// And pruning them is O(log n) each: raise the floor past them all.
	d, _ := newTestDedup(SessionConfig{MaxRecords: 2 * n})
	for i := 0; i < n; i++ {
		d.claim(0, 7, uint64(n-i), 0, 0)
	}
	d.claim(0, 7, n+1, n+1, 0)
	if d.size() != 1 {
		t.Fatalf("%d records after the floor passed them, want 1", d.size())
	}
}

func TestDedupSnapshotCarriesSessions(t *testing.T) {
	a, clk := newTestDedup(SessionConfig{TTL: time.Minute})
	ids := sameStripe(a, 3)
	gone, back, live := ids[0], ids[1], ids[2]
	a.record(gone, 9, 1, doneOutcome(0, 0, nil))
	a.record(back, 4, 1, doneOutcome(0, 0, nil))
	clk.add(time.Minute)
	a.sweep()                                    // gone and back expire
	a.record(back, 7, 5, doneOutcome(0, 0, nil)) // back returns: seqs up to 4 are forgotten
	a.record(live, 3, 1, doneOutcome(wire.StatusMismatch, 0, []byte("cur")))
	a.record(live, 2, 1, doneOutcome(0, 0, nil)) // out of order
	b, _ := newTestDedup(SessionConfig{TTL: time.Minute})
	for _, c := range a.snapshot(0) {
		if err := b.restore(c, 0); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		client, seq, floor uint64
		want               claim
	}{
		{gone, 9, 1, claimExpired},
		{back, 4, 4, claimExpired}, // forgotten when it expired on a
		{back, 5, 5, claimNew},     // never seen
		{back, 7, 5, claimDone},
		{live, 3, 1, claimDone},
		{live, 2, 1, claimDone},
	}
	for _, tc := range cases {
		if _, cl := b.claim(0, tc.client, tc.seq, tc.floor, wire.FlagRetry); cl != tc.want {
			t.Errorf("client %d seq %d after re-seeding: %v, want %v", tc.client, tc.seq, cl, tc.want)
		}
	}
	if s, r := b.stats(); s != 2 || r != 4 {
		t.Errorf("%d sessions %d records, want 2 4 (3 restored, 1 new)", s, r)
	}
}

// A session whose out-of-order records empty and fill again (a server
// records one client's writes from two shards' interleaved streams) makes
// the next set of them as large as the last at once, instead of growing
// a map from empty each time; an emptied set is dropped, not kept.
func TestSessionOutOfOrderRefill(t *testing.T) {
	s := &session{client: 1}
	base := uint64(0)
	cycle := func() {
		s.put(base+1000, doneOutcome(0, 0, nil)) // in order: appended
		for seq := base + 999; seq > base+499; seq-- {
			// Below every run's last: the empty runs take one each,
			// the rest are out of order.
			s.put(seq, doneOutcome(0, 0, nil))
		}
		if s.ooo == nil || len(s.ooo.m) != 500-(sessionRuns-1) {
			t.Fatalf("out-of-order records: %v", s.ooo)
		}
		s.raise(base + 1001)
		if s.ooo != nil || s.n != 0 {
			t.Fatalf("after the floor passed them: ooo %v, %d records", s.ooo, s.n)
		}
		base += 1000
	}
	cycle()
	if s.oooPeak != 500-(sessionRuns-1) {
		t.Fatalf("the emptied set's peak is %d, want %d", s.oooPeak, 500-(sessionRuns-1))
	}
	allocs := fewestAllocs(cycle)
	// 501 outcomes (doneOutcome) are the caller's; the rest is the
	// session's: the set (its map's few parts and its heap, each made
	// once) and the runs' arrays. Growing them from empty made 31.
	if extra, want := allocs-501, float64(7+sessionRuns); extra > want {
		t.Fatalf("a refill of 500 out-of-order records made %.0f allocations beyond the outcomes, want at most %.0f", extra, want)
	}
}

// Callers read the clock once per batch (claimAt, recordAt), so a write
// may carry a time a little older than one already seen: the sessions'
// list stays in order of time seen, which expiry walks from its head.
func TestDedupSeenStaysOrdered(t *testing.T) {
	d := newDedup()
	st := d.stripe(1)
	var clients []uint64
	for c := uint64(1); len(clients) < 3; c++ {
		if d.stripe(c) == st {
			clients = append(clients, c)
		}
	}
	d.recordAt(100, clients[0], 1, 0, doneOutcome(0, 0, nil))
	d.recordAt(300, clients[1], 1, 0, doneOutcome(0, 0, nil))
	d.claimAt(200, 1, clients[2], 1, 0, 0) // read before the 300, applied after
	prev := int64(-1)
	for s := st.lru.next; s != &st.lru; s = s.next {
		if s.seen < prev {
			t.Fatalf("session %d seen at %d after one seen at %d", s.client, s.seen, prev)
		}
		prev = s.seen
	}
	if prev != 300 {
		t.Fatalf("the newest session was seen at %d, want 300", prev)
	}
	// The last session, seen again at an older time than its own (and
	// newer than the one before it), keeps its time.
	d.recordAt(400, clients[0], 2, 0, doneOutcome(0, 0, nil))
	d.recordAt(350, clients[0], 3, 0, doneOutcome(0, 0, nil))
	if last := st.lru.prev; last.client != clients[0] || last.seen != 400 {
		t.Fatalf("last session %d seen at %d, want %d at 400", last.client, last.seen, clients[0])
	}
}

// A secondary records a replicated write's outcome for retries after a
// promotion: plain successes share one record (no allocation per write);
// anything else (a MISMATCH with the current value, a refused append)
// gets its own, with the value copied out of the read buffer.
func TestSecondaryOutcomes(t *testing.T) {
	st := &secState{shard: 2, dd: newDedup()}
	a := st.outcomeOf(&wire.Frame{Op: wire.OpRepl, Status: wire.StatusOK})
	b := st.outcomeOf(&wire.Frame{Op: wire.OpRepl, Status: wire.StatusOK, Flags: wire.FlagDelete})
	if a != b || !a.done.Load() || a.status != wire.StatusOK || a.origin != originOf(2) || a.value != nil {
		t.Fatalf("plain successes: %p %p %+v", a, b, a)
	}
	buf := []byte("current")
	m := st.outcomeOf(&wire.Frame{Op: wire.OpRepl, Status: wire.StatusMismatch,
		Flags: wire.FlagNoop | wire.FlagOldPresent, Value: buf})
	copy(buf, "XXXXXXX") // the read buffer is reused
	if m == a || m.status != wire.StatusMismatch || m.flags != wire.FlagOldPresent ||
		string(m.value) != "current" || m.origin != originOf(2) || !m.done.Load() {
		t.Fatalf("mismatch record: %+v", m)
	}
	n := st.outcomeOf(&wire.Frame{Op: wire.OpRepl, Status: wire.StatusOK, Flags: wire.FlagNoop | wire.FlagOldPresent})
	if n == a || n.flags != wire.FlagOldPresent {
		t.Fatalf("an OK with the old value present shares the plain record: %+v", n)
	}
}

// Likewise for the in-order records: a session whose records empty and
// fill again makes the next array as long as the last at once.
func TestSessionInOrderRefill(t *testing.T) {
	s := &session{client: 1}
	base := uint64(0)
	cycle := func() {
		for seq := base + 1; seq <= base+500; seq++ {
			s.put(seq, doneOutcome(0, 0, nil))
		}
		if len(s.runs[0].recs) != 500 || s.ooo != nil {
			t.Fatalf("%d in-order records, ooo %v", len(s.runs[0].recs), s.ooo)
		}
		s.raise(base + 501)
		if s.runs[0].recs != nil || s.n != 0 {
			t.Fatalf("after the floor passed them: %d records", s.n)
		}
		base += 500
	}
	cycle()
	if s.runs[0].peak != 500 {
		t.Fatalf("the emptied records' peak is %d, want 500", s.runs[0].peak)
	}
	// 500 outcomes are the caller's; growing the array from empty made 10
	// more.
	if extra := fewestAllocs(cycle) - 500; extra > 1 {
		t.Fatalf("a refill of 500 in-order records made %.0f allocations beyond the outcomes, want 1", extra)
	}
}

// fewestAllocs is the fewest allocations f made per run in a few
// measurements: testing.AllocsPerRun counts the whole process's, and
// goroutines a test before left winding down (timers, sweepers) add some
// to one measurement or another.
func fewestAllocs(f func()) float64 {
	best := testing.AllocsPerRun(3, f)
	for range 6 {
		best = min(best, testing.AllocsPerRun(3, f))
	}
	return best
}

// heldSum is the bytes s's records hold, counted afresh.
func heldSum(s *session) (n int64) {
	s.each(func(_ uint64, o *outcome) bool {
		if o != nil {
			n += int64(o.held)
		}
		return false
	})
	return n
}

// TestDedupHeldBytesBounded: the values MISMATCH records keep count
// against their client (maxHeldBytes): beyond, its new writes are refused
// as beyond MaxRecords, until its floor drops records. One client with
// its floor kept low held 1.2 GB of replaced 1 MB values on each server
// of a shard (a review), where only MaxRecords (65,536) bounded it.
func TestDedupHeldBytesBounded(t *testing.T) {
	d, _ := newTestDedup(SessionConfig{})
	const mb = 1 << 20
	seq := uint64(0)
	mismatch := func(floor uint64) claim {
		seq++
		o, cl := d.claim(0, 7, seq, floor, 0)
		if cl == claimNew {
			o.value = make([]byte, mb)
			d.hold(7, seq, o)
		}
		return cl
	}
	for i := 0; i < maxHeldBytes/mb; i++ {
		if cl := mismatch(1); cl != claimNew {
			t.Fatalf("mismatch %d (%d MiB held): %v, want new", i+1, i, cl)
		}
	}
	if cl := mismatch(1); cl != claimTooMany {
		t.Fatalf("a write with %d MiB held: %v, want too many", maxHeldBytes/mb, cl)
	}
	seq-- // (refused: not recorded)
	s := d.get(7)
	if s.held != maxHeldBytes || heldSum(s) != s.held {
		t.Fatalf("held %d (records: %d), want %d", s.held, heldSum(s), maxHeldBytes)
	}
	// A floor that drops half of them lets writes in again.
	if cl := mismatch(9); cl != claimNew {
		t.Fatalf("after floor 9: %v, want new", cl)
	}
	if want := int64(maxHeldBytes/2 + mb); s.held != want || heldSum(s) != want {
		t.Fatalf("after floor 9: held %d (records: %d), want %d", s.held, heldSum(s), want)
	}
	// Forgotten, dropped with their origin, or replaced: the sum follows.
	d.forget(7, 10)
	if s.held != heldSum(s) || s.held != int64(maxHeldBytes/2) {
		t.Fatalf("after forget: held %d (records: %d)", s.held, heldSum(s))
	}
	d.record(7, 11, 9, doneOutcome(wire.StatusMismatch, 0, []byte("small")))
	if want := int64(maxHeldBytes/2 - mb + 5); s.held != want || heldSum(s) != want {
		t.Fatalf("after a record replaced: held %d (records: %d), want %d", s.held, heldSum(s), want)
	}
	d.dropOrigin(0) // (origin 0: every record of unknown origin)
	if s.held != 0 || heldSum(s) != 0 || d.held.Load() != 0 {
		t.Fatalf("after dropOrigin: held %d (records: %d, all clients: %d), want 0", s.held, heldSum(s), d.held.Load())
	}
}

// TestDedupHeldTotalBounded: many clients each under maxHeldBytes; the
// records of all of them keep at most maxHeldTotal of values (one more
// MISMATCH answer is then not remembered, as a secondary or a seeding
// learns it or as a primary sets it), and the total follows every way a
// record goes (floor, expiry).
func TestDedupHeldTotalBounded(t *testing.T) {
	d, clock := newTestDedup(SessionConfig{})
	const mb = 1 << 20
	n := maxHeldTotal/mb + 8
	for c := 1; c <= n; c++ {
		if c%2 == 0 { // as a primary does
			o, cl := d.claim(0, uint64(c), 1, 1, 0)
			if cl != claimNew {
				t.Fatalf("client %d: %v, want new", c, cl)
			}
			o.value = make([]byte, mb)
			d.hold(uint64(c), 1, o)
		} else { // as a secondary learns it
			d.record(uint64(c), 1, 1, doneOutcome(wire.StatusMismatch, 0, make([]byte, mb)))
		}
	}
	if h := d.held.Load(); h != maxHeldTotal {
		t.Fatalf("%d clients with a 1 MiB mismatch each: %d bytes held, want %d", n, h, maxHeldTotal)
	}
	if got, want := d.size(), maxHeldTotal/mb; got != want {
		t.Fatalf("%d records kept, want %d", got, want)
	}
	d.record(1, 2, 2, doneOutcome(wire.StatusOK, 0, nil)) // client 1's floor passes its mismatch
	if h := d.held.Load(); h != maxHeldTotal-mb {
		t.Fatalf("after a floor rose past one: %d bytes held, want %d", h, maxHeldTotal-mb)
	}
	clock.add(d.lim.Load().TTL)
	d.sweep()
	if h := d.held.Load(); h != 0 {
		t.Fatalf("after every session expired: %d bytes held, want 0", h)
	}
}

// TestDedupOldestWriteNeverRefused: a client's floor is its oldest write
// in flight, so a refusal "too many writes in flight" of that write
// itself can never end: the floor cannot rise past it, and the records
// above it that make the client's count (or held bytes) stay. Through a
// real cluster, 100 gateway connections each sending SET k v NX GET on an
// existing key of 1 MiB: the gateway's writes reached the server out of
// seq order, 16 mismatches of 1 MiB filled the client's held bytes above
// a lower seq that was refused, and every write of the gateway (all its
// users share one client id) to that server was refused until the
// deadline (74 of 100 answered CLUSTERDOWN, an unrelated SET of another
// key waited 4.7 s). The write at the floor is let in; the others beyond
// the bound are still refused.
func TestDedupOldestWriteNeverRefused(t *testing.T) {
	const mb = 1 << 20
	d, _ := newTestDedup(SessionConfig{})
	for seq := uint64(2); seq < 2+maxHeldBytes/mb; seq++ {
		o, cl := d.claim(0, 7, seq, 1, 0)
		if cl != claimNew {
			t.Fatalf("seq %d: %v, want new", seq, cl)
		}
		o.value = make([]byte, mb)
		d.hold(7, seq, o)
		o.status = wire.StatusMismatch
		o.done.Store(true)
	}
	next := uint64(2 + maxHeldBytes/mb)
	if _, cl := d.claim(0, 7, next, 1, 0); cl != claimTooMany {
		t.Fatalf("a write above the floor with %d MiB held: %v, want too many", maxHeldBytes/mb, cl)
	}
	// The client's oldest write (its floor: 1) arrives last, and again
	// as a retry: the floor cannot rise before it is answered.
	for try := 0; try < 3; try++ {
		if _, cl := d.claim(0, 7, 1, 1, wire.FlagRetry); cl != claimNew && cl != claimInFlight {
			t.Fatalf("attempt %d of the client's oldest write (seq 1 = its floor): %v, want it let in", try+1, cl)
		}
	}

	// The same with the count of records (MaxRecords).
	d, _ = newTestDedup(SessionConfig{MaxRecords: 4})
	for seq := uint64(2); seq < 6; seq++ {
		o, cl := d.claim(0, 9, seq, 1, 0)
		if cl != claimNew {
			t.Fatalf("seq %d: %v, want new", seq, cl)
		}
		o.status = wire.StatusOK
		o.done.Store(true)
	}
	if _, cl := d.claim(0, 9, 6, 1, 0); cl != claimTooMany {
		t.Fatalf("a fifth write above the floor with MaxRecords 4: %v, want too many", cl)
	}
	if _, cl := d.claim(0, 9, 1, 1, wire.FlagRetry); cl != claimNew {
		t.Fatalf("the client's oldest write (seq 1 = its floor) with MaxRecords 4 held above it: %v, want new", cl)
	}
}
