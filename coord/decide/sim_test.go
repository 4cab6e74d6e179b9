package decide

import (
	"fmt"
	"math/rand"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"ftkv/timing"
	"ftkv/wire"
)

// The simulation drives a Core with a model of the shell and the servers:
// processes that exit, freeze (SIGSTOP) and resume, replication links
// that break, spawns, pushes, publications, re-seeds and freezes that fail
// or take their time, a shell loop that stalls, and writes to every shard.
// Data is a per-shard counter of committed writes held by each copy. After
// every step it checks the invariants; after the faults stop it checks the
// cluster gets back to every member serving and every shard home.

const simFT = 100 * time.Millisecond

// simTail is how many steps a failure shows.
var simTail = 60

func simConfig() Config { return FromTiming(timing.New(simFT)) }

type proc struct {
	id       int
	inc      uint64
	alive    bool
	frozen   bool
	received uint64 // newest view epoch pushed to it
	applied  uint64 // newest view epoch it applied (reported in heartbeats)
	appliedT time.Time
	data     []int // committed writes held, per shard
}

type job struct {
	due time.Time
	ev  func() Event // nil: nothing to report
	do  func()
}

type sim struct {
	t         testing.TB
	r         *rand.Rand
	cfg       Config
	c         *Core
	n         int
	now       time.Time
	procs     map[[2]uint64]*proc
	jobs      []job
	faults    bool
	lagNext   bool
	cut       map[[2]int]time.Time // broken replication links (unordered pair) since
	views     []wire.View          // published, in order
	known     map[[2]uint64]bool   // incarnations the core was told are gone
	publish   int                  // Publish actions outstanding
	trace     []string
	committed []int
	// counts, for the log
	stats map[string]int
}

func newSim(t testing.TB, seed int64, legacy bool) *sim {
	r := rand.New(rand.NewSource(seed))
	n := 2 + r.Intn(4)
	s := &sim{t: t, r: r, cfg: simConfig(), n: n, now: time.Unix(1_000_000, 0),
		procs: map[[2]uint64]*proc{}, cut: map[[2]int]time.Time{}, known: map[[2]uint64]bool{},
		committed: make([]int, n), stats: map[string]int{}}
	v := wire.View{Epoch: 1}
	for i := 0; i < n; i++ {
		v.Servers = append(v.Servers, wire.Member{ID: uint32(i), Incarnation: 1, State: wire.StateServing, Host: "localhost"})
		v.Shards = append(v.Shards, wire.Placement{Primary: int32(i), Secondary: int32((i + 1) % n)})
		s.procs[[2]uint64{uint64(i), 1}] = &proc{id: i, inc: 1, alive: true, received: 1, applied: 1, appliedT: s.now, data: make([]int, n)}
	}
	spares := []string(nil)
	if r.Intn(2) == 0 {
		spares = []string{"spare-a", "spare-b"}
	}
	c, err := New(s.cfg, v, nil, nil, spares, s.now)
	if err != nil {
		t.Fatal(err)
	}
	c.firstLaggingOnly = legacy
	s.c = c
	s.views = append(s.views, c.View())
	return s
}

func (s *sim) logf(format string, a ...any) {
	s.trace = append(s.trace, fmt.Sprintf("%8.3fs ", float64(s.now.UnixNano()%1e12)/1e9)+fmt.Sprintf(format, a...))
}

func (s *sim) fail(format string, a ...any) {
	s.t.Helper()
	tail := s.trace
	if len(tail) > simTail {
		tail = tail[len(tail)-simTail:]
	}
	s.t.Fatalf("%s\nlast steps:\n%s", fmt.Sprintf(format, a...), strings.Join(tail, "\n"))
}

func (s *sim) proc(id int, inc uint64) *proc { return s.procs[[2]uint64{uint64(id), inc}] }

func (s *sim) later(d time.Duration, ev func() Event, do func()) {
	s.jobs = append(s.jobs, job{due: s.now.Add(d), ev: ev, do: do})
}

func (s *sim) delay(max time.Duration) time.Duration {
	return time.Duration(s.r.Int63n(int64(max)) + 1)
}

// step feeds one event, checks the invariants and carries out the actions.
func (s *sim) step(ev Event) {
	before := s.c.View()
	acts := s.c.Step(ev)
	switch e := ev.(type) {
	case Tick:
		if len(acts) > 0 {
			s.logf("Tick")
		}
	case Heartbeat:
		if len(acts) > 0 || len(e.Links) > 0 {
			s.logf("Heartbeat %d/%d epoch %d links %v", e.HB.ID, e.HB.Incarnation, e.HB.Epoch, e.Links)
		}
	default:
		s.logf("%T%+v", ev, ev)
	}
	for _, a := range acts {
		s.logf("  -> %T%+v", a, brief(a))
	}
	s.check(before, ev)
	for _, a := range acts {
		s.do(a)
	}
}

func brief(a Action) any {
	switch a := a.(type) {
	case Publish:
		return fmt.Sprintf("{epoch %d %s %v %v}", a.View.Epoch, a.Why, states(a.View), a.View.Shards)
	case Push:
		return fmt.Sprintf("{%d/%d epoch %d}", a.ID, a.Inc, a.View.Epoch)
	}
	return a
}

func states(v wire.View) []string {
	var out []string
	for _, m := range v.Servers {
		out = append(out, fmt.Sprintf("%s/%d", wire.StateName(m.State), m.Incarnation))
	}
	return out
}

func (s *sim) do(a Action) {
	switch a := a.(type) {
	case Publish:
		s.publish++
		if s.publish > 1 {
			s.fail("two Publish actions outstanding")
		}
		nv := a.View
		s.later(s.delay(simFT/2), func() Event {
			s.publish--
			if s.faults && s.r.Intn(8) == 0 {
				return PublishFailed{}
			}
			e := Published{}
			if s.r.Intn(3) == 0 {
				e.Epoch = nv.Epoch + uint64(s.r.Intn(4)) // restamped (a new term)
			}
			return e
		}, nil)
	case Push:
		s.later(s.delay(simFT), func() Event { return s.push(a) }, nil)
	case Kill:
		if p := s.proc(a.ID, a.Inc); p != nil && p.alive {
			s.later(s.delay(simFT/4), nil, func() { s.exit(p) })
		}
	case Spawn:
		s.stats["spawn"]++
		s.later(s.delay(3*simFT), func() Event {
			if p := s.proc(a.ID, a.Old); p != nil && p.alive {
				s.exit(p)
			}
			if s.faults && s.r.Intn(4) == 0 {
				s.stats["spawn failed"]++
				return SpawnFailed{ID: a.ID, Inc: a.Inc}
			}
			s.procs[[2]uint64{uint64(a.ID), a.Inc}] = &proc{id: a.ID, inc: a.Inc, alive: true, data: make([]int, s.n)}
			return nil // its first heartbeat registers it
		}, nil)
	case AskSeed:
		s.later(s.delay(2*simFT), func() Event { return s.seed(a) }, nil)
	case Freeze:
		s.later(s.delay(simFT), func() Event {
			p := s.proc(a.Primary, a.PrimaryInc)
			ok := p != nil && p.alive && !p.frozen && !(s.faults && s.r.Intn(6) == 0)
			return FreezeResult{Shard: a.Shard, Epoch: a.Epoch, OK: ok}
		}, nil)
	default:
		s.fail("unknown action %T", a)
	}
}

func (s *sim) exit(p *proc) {
	if !p.alive {
		return
	}
	p.alive = false
	s.later(s.delay(simFT/4), func() Event {
		s.known[[2]uint64{uint64(p.id), p.inc}] = true
		return ProcessExited{ID: p.id, Inc: p.inc}
	}, nil)
}

// push models a server applying a view: it takes it only once each of its
// secondaries in that view has received it (the replication links are
// set up on application), and fails otherwise (hole 8).
func (s *sim) push(a Push) Event {
	p := s.proc(a.ID, a.Inc)
	res := PushResult{ID: a.ID, Inc: a.Inc, Epoch: a.View.Epoch}
	if p == nil || !p.alive || p.frozen || (s.faults && s.r.Intn(6) == 0) {
		return res
	}
	if a.View.Epoch > p.received {
		p.received = a.View.Epoch
	}
	if a.View.Epoch < p.applied {
		return res // stale
	}
	for _, pl := range a.View.Shards {
		if int(pl.Primary) == a.ID && pl.Secondary >= 0 {
			m := a.View.Servers[pl.Secondary]
			q := s.proc(int(m.ID), m.Incarnation)
			if q == nil || q.received < a.View.Epoch {
				return res
			}
		}
	}
	if a.View.Epoch > p.applied {
		p.applied, p.appliedT = a.View.Epoch, s.now
	}
	res.OK = true
	return res
}

// seed models re-seeding: the primary copies its shard to the target.
func (s *sim) seed(a AskSeed) Event {
	res := SeedResult{ID: a.ID, Inc: a.Inc, Shard: a.Shard, Epoch: a.Epoch}
	src := s.proc(a.Primary, a.PrimaryInc)
	dst := s.proc(a.ID, a.Inc)
	if src == nil || dst == nil || !src.alive || !dst.alive || src.frozen || dst.frozen || s.isCut(a.Primary, a.ID) || (s.faults && s.r.Intn(8) == 0) {
		return res
	}
	if src.data[a.Shard] < dst.data[a.Shard] {
		s.fail("re-seed source %d holds %d writes of shard %d, its target %d holds %d", a.Primary, src.data[a.Shard], a.Shard, a.ID, dst.data[a.Shard])
	}
	if src.data[a.Shard] != s.committed[a.Shard] {
		s.fail("re-seed source %d holds %d writes of shard %d, %d were acknowledged", a.Primary, src.data[a.Shard], a.Shard, s.committed[a.Shard])
	}
	dst.data[a.Shard] = src.data[a.Shard]
	res.OK = true
	return res
}

func pair(a, b int) [2]int {
	if a > b {
		a, b = b, a
	}
	return [2]int{a, b}
}

func (s *sim) isCut(a, b int) bool { _, ok := s.cut[pair(a, b)]; return ok }

// write commits one write on shard sh if its primary (and secondary, if
// any) are up, applied the current view and can reach each other.
func (s *sim) write(sh int) {
	v := s.c.View()
	pl := v.Shards[sh]
	if pl.Primary < 0 {
		return
	}
	pm := v.Servers[pl.Primary]
	p := s.proc(int(pm.ID), pm.Incarnation)
	if p == nil || !p.alive || p.frozen || p.applied != v.Epoch {
		return
	}
	var q *proc
	if pl.Secondary >= 0 {
		sm := v.Servers[pl.Secondary]
		q = s.proc(int(sm.ID), sm.Incarnation)
		if q == nil || !q.alive || q.frozen || q.applied != v.Epoch || s.isCut(int(pm.ID), int(sm.ID)) {
			return
		}
	}
	p.data[sh]++
	if q != nil {
		q.data[sh]++
	}
	s.committed[sh]++
}

// check verifies the invariants after a step from view before.
func (s *sim) check(before wire.View, ev Event) {
	s.t.Helper()
	v := s.c.View()
	if v.Epoch < before.Epoch {
		s.fail("epoch went back from %d to %d", before.Epoch, v.Epoch)
	}
	if v.Epoch != before.Epoch {
		last := s.views[len(s.views)-1]
		if v.Epoch <= last.Epoch {
			s.fail("published epoch %d after %d", v.Epoch, last.Epoch)
		}
		s.checkView(last, v)
		s.views = append(s.views, v)
	}
	// Hole 3: no lease for a member down in the view being published or
	// in the current one, nor for a failed or condemned record.
	for _, w := range []wire.View{v, s.pendingView()} {
		for i, m := range w.Servers {
			if !live(m) && s.c.Lease(i, m.Incarnation) && s.c.nodes[i].Inc == m.Incarnation {
				s.fail("member %d/%d is down in epoch %d but its lease may be renewed", i, m.Incarnation, w.Epoch)
			}
		}
	}
}

func (s *sim) pendingView() wire.View {
	v, ok := s.c.Pending()
	if !ok {
		return wire.View{}
	}
	return v
}

func (s *sim) checkView(old, v wire.View) {
	s.t.Helper()
	for sh, pl := range v.Shards {
		if pl.Primary >= 0 && pl.Primary == pl.Secondary {
			s.fail("epoch %d: shard %d has %d as primary and secondary", v.Epoch, sh, pl.Primary)
		}
		// (A member made to re-seed another shard, rule 4b, keeps the
		// shards it led.)
		kept := pl.Primary >= 0 && pl.Primary == old.Shards[sh].Primary && v.Servers[pl.Primary].Incarnation == old.Servers[pl.Primary].Incarnation &&
			v.Servers[pl.Primary].State == wire.StateReseeding
		if pl.Primary >= 0 && v.Servers[pl.Primary].State != wire.StateServing && !kept {
			s.fail("epoch %d: shard %d led by %d in state %s", v.Epoch, sh, pl.Primary, wire.StateName(v.Servers[pl.Primary].State))
		}
		if pl.Secondary >= 0 && !live(v.Servers[pl.Secondary]) {
			s.fail("epoch %d: shard %d has secondary %d in state %s", v.Epoch, sh, pl.Secondary, wire.StateName(v.Servers[pl.Secondary].State))
		}
		op := old.Shards[sh]
		if pl.Primary >= 0 && pl.Primary != op.Primary {
			// A new primary must have been a complete copy.
			if pl.Primary != op.Secondary || old.Servers[pl.Primary].State != wire.StateServing {
				s.fail("epoch %d: shard %d moved to %d, which was not its serving secondary in epoch %d (%v)", v.Epoch, sh, pl.Primary, old.Epoch, op)
			}
		}
		if pl.Primary >= 0 {
			m := v.Servers[pl.Primary]
			if p := s.proc(int(m.ID), m.Incarnation); p != nil && p.data[sh] != s.committed[sh] {
				s.fail("epoch %d: shard %d led by %d which holds %d of %d acknowledged writes", v.Epoch, sh, pl.Primary, p.data[sh], s.committed[sh])
			}
		}
	}
	// Suspicion (Down, not Dead) never fails the last complete copy.
	for i, m := range v.Servers {
		om := old.Servers[i]
		if !live(om) || m.State != wire.StateDown || m.Incarnation != om.Incarnation {
			continue
		}
		for sh, op := range old.Shards {
			held := int(op.Primary) == i || (int(op.Secondary) == i && om.State == wire.StateServing)
			if held && (v.Shards[sh].Primary < 0 || int(v.Shards[sh].Primary) == i) {
				s.fail("epoch %d: member %d failed on suspicion held the last complete copy of shard %d", v.Epoch, i, sh)
			}
		}
	}
	_ = s.known
}

// heartbeats delivers a heartbeat from every running, unfrozen process.
func (s *sim) heartbeats() {
	for _, p := range s.sortedProcs() {
		if !p.alive || p.frozen {
			continue
		}
		hb := Heartbeat{Now: s.now, HB: wire.Heartbeat{ID: uint32(p.id), Incarnation: p.inc, PID: uint32(1000 + p.inc), Epoch: p.applied,
			Addr: fmt.Sprintf("s%d-%d", p.id, p.inc)}}
		v := s.c.View()
		if p.applied == v.Epoch {
			for sh, pl := range v.Shards {
				if int(pl.Primary) == p.id && pl.Secondary >= 0 && s.isCut(p.id, int(pl.Secondary)) {
					since := s.cut[pair(p.id, int(pl.Secondary))]
					if p.appliedT.After(since) {
						since = p.appliedT
					}
					hb.Links = append(hb.Links, Link{Shard: sh, Secondary: int(pl.Secondary), Incarnation: v.Servers[pl.Secondary].Incarnation, DownFor: s.now.Sub(since)})
				}
			}
		}
		s.step(hb)
		if !s.c.Lease(p.id, p.inc) {
			s.exit(p) // a server refused a heartbeat exits (STALE_EPOCH)
		}
	}
}

func (s *sim) sortedProcs() []*proc {
	var out []*proc
	for id := 0; id < s.n; id++ {
		for inc := uint64(1); inc <= s.c.nodes[id].Inc; inc++ {
			if p := s.proc(id, inc); p != nil {
				out = append(out, p)
			}
		}
	}
	s.r.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out
}

// fault injects one random fault.
func (s *sim) fault() {
	ps := s.sortedProcs()
	var alive []*proc
	for _, p := range ps {
		if p.alive {
			alive = append(alive, p)
		}
	}
	switch k := s.r.Intn(10); {
	case k < 3 && len(alive) > 0:
		p := alive[s.r.Intn(len(alive))]
		s.logf("FAULT kill %d/%d", p.id, p.inc)
		s.stats["kill"]++
		s.exit(p)
	case k < 5 && len(alive) > 0:
		p := alive[s.r.Intn(len(alive))]
		if !p.frozen {
			s.logf("FAULT freeze %d/%d", p.id, p.inc)
			s.stats["freeze"]++
			p.frozen = true
			s.later(s.delay(4*simFT), nil, func() { p.frozen = false; s.logf("resume %d/%d", p.id, p.inc) })
		}
	case k < 7 && s.n > 1:
		a := s.r.Intn(s.n)
		b := (a + 1) % s.n
		if !s.isCut(a, b) {
			s.logf("FAULT cut %d-%d", a, b)
			s.stats["cut"]++
			s.cut[pair(a, b)] = s.now
			s.later(s.delay(5*simFT), nil, func() { delete(s.cut, pair(a, b)); s.logf("heal %d-%d", a, b) })
		}
	case k < 8:
		s.logf("FAULT loop stall")
		s.stats["stall"]++
		s.lagNext = true
	}
}

// run simulates faultTicks ticks with faults, then up to quietTicks
// without, and checks the cluster is whole again.
func (s *sim) run(faultTicks, quietTicks int) {
	dt := s.cfg.FailureTimeout / 10
	s.faults = true
	for tick := 0; tick < faultTicks+quietTicks; tick++ {
		if tick == faultTicks {
			s.faults = false
			s.cut = map[[2]int]time.Time{}
			for _, p := range s.procs {
				p.frozen = false
			}
			s.logf("faults stop")
		}
		if s.faults && s.r.Intn(12) == 0 {
			s.fault()
		}
		if s.lagNext {
			s.lagNext = false
			s.now = s.now.Add(s.cfg.FailureTimeout/2 + s.delay(s.cfg.FailureTimeout))
		} else {
			s.now = s.now.Add(dt)
		}
		// Due jobs, in random order relative to the heartbeats and tick.
		var due []job
		rest := s.jobs[:0]
		for _, j := range s.jobs {
			if !j.due.After(s.now) {
				due = append(due, j)
			} else {
				rest = append(rest, j)
			}
		}
		s.jobs = rest
		s.r.Shuffle(len(due), func(i, j int) { due[i], due[j] = due[j], due[i] })
		tickAt := s.r.Intn(len(due) + 1)
		for k := 0; k <= len(due); k++ {
			if k == tickAt {
				if tick%2 == 0 {
					s.heartbeats()
				}
				s.step(Tick{Now: s.now})
			}
			if k < len(due) {
				if due[k].do != nil {
					due[k].do()
				}
				if due[k].ev != nil {
					if ev := due[k].ev(); ev != nil {
						s.step(ev)
					}
				}
			}
		}
		for w := s.r.Intn(3); w > 0; w-- {
			s.write(s.r.Intn(s.n))
		}
		if !s.faults && s.whole() {
			s.stats["quiet ticks"] += tick - faultTicks
			return
		}
	}
	s.fail("the cluster is not whole %s after the faults stopped: view %d %v %v; records %v",
		time.Duration(quietTicks)*dt, s.c.view.Epoch, states(s.c.view), s.c.view.Shards, s.records())
}

func (s *sim) records() []string {
	var out []string
	for _, nd := range s.c.nodes {
		out = append(out, fmt.Sprintf("%d:%s/%d conf %d", nd.ID, nd.State, nd.Inc, nd.Confirmed))
	}
	return out
}

// whole: every member serving and confirmed; every shard that still has
// a copy at home with its home secondary.
func (s *sim) whole() bool {
	v := s.c.view
	if s.c.pending != nil {
		return false
	}
	for i, m := range v.Servers {
		nd := s.c.nodes[i]
		if m.State != wire.StateServing || nd.State != Serving || nd.Confirmed < v.Epoch {
			return false
		}
	}
	for sh, pl := range v.Shards {
		if pl.Primary < 0 {
			continue // both copies were lost: unavailable for good
		}
		if int(pl.Primary) != sh || (s.n > 1 && int(pl.Secondary) != (sh+1)%s.n) {
			return false
		}
	}
	return true
}

func simSeeds(t *testing.T) (seeds []int64) {
	if v := os.Getenv("DECIDE_SEED"); v != "" {
		seed, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("DECIDE_SEED=%q: %v", v, err)
		}
		simTail = 100000
		return []int64{seed}
	}
	runs := 2000
	if raceEnabled {
		runs = 300
	}
	if v := os.Getenv("DECIDE_RUNS"); v != "" {
		runs, _ = strconv.Atoi(v)
	}
	base := time.Now().UnixNano()
	for i := 0; i < runs; i++ {
		seeds = append(seeds, base+int64(i))
	}
	return seeds
}

// TestSimulation runs random fault schedules; a failure names its seed,
// which DECIDE_SEED=<seed> replays (DECIDE_RUNS sets how many run).
func TestSimulation(t *testing.T) {
	seeds := simSeeds(t)
	t.Logf("%d runs from seed %d (replay one with DECIDE_SEED=<seed>)", len(seeds), seeds[0])
	total := map[string]int{}
	for _, seed := range seeds {
		s := newSim(t, seed, false)
		s.trace = append(s.trace, fmt.Sprintf("seed %d, %d servers", seed, s.n))
		ok := t.Run(fmt.Sprintf("seed=%d", seed), func(t *testing.T) {
			s.t = t
			s.run(400, 1500)
		})
		if !ok {
			t.Fatalf("seed %d failed: replay with DECIDE_SEED=%d go test -run TestSimulation ./coord/decide", seed, seed)
		}
		for k, v := range s.stats {
			total[k] += v
		}
		total["epochs"] += int(s.c.view.Epoch)
	}
	t.Logf("totals: %v", total)
}

// TestSimulationCatchesHole8 runs the simulation with the re-push of the
// coordinator before the fix (only the first lagging member gets the view
// again): a primary whose view application waits on a secondary that never
// got the view is re-pushed forever, and the cluster never gets whole. A
// failure of this test means the simulation no longer sees hole 8.
func TestSimulationCatchesHole8(t *testing.T) {
	base := time.Now().UnixNano()
	for i := int64(0); i < 400; i++ {
		s := newSim(&catcher{TB: t}, base+i, true)
		stuck := func() (stuck bool) {
			defer func() {
				if r := recover(); r != nil {
					c, ok := r.(caught)
					if !ok {
						panic(r)
					}
					if !strings.Contains(c.msg, "not whole") {
						t.Fatalf("seed %d: the legacy re-push broke another invariant: %s", base+i, c.msg)
					}
					stuck = true
				}
			}()
			s.run(400, 1500)
			return false
		}()
		if stuck {
			t.Logf("seed %d: caught with the legacy re-push after %d runs", base+i, i+1)
			return
		}
	}
	t.Fatal("400 runs with the legacy re-push never got stuck")
}

type caught struct{ msg string }

// catcher turns the simulation's Fatalf into a panic the test recovers.
type catcher struct{ testing.TB }

func (c *catcher) Fatalf(f string, a ...any) { panic(caught{fmt.Sprintf(f, a...)}) }
func (c *catcher) Helper()                   {}

// FuzzSimulation lets `go test -fuzz FuzzSimulation ./coord/decide` search
// fault schedules (the fuzzer's input is the simulation's seed).
func FuzzSimulation(f *testing.F) {
	for _, seed := range []int64{1, 2, 3, 1796009813915112510, 1796009839124824017} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, seed int64) {
		newSim(t, seed, false).run(400, 1500)
	})
}
