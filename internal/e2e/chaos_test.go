package e2e

import (
	"fmt"
	"math/rand"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// chaosDuration is how long a chaos test injects faults:
// FTKV_CHAOS_DURATION (a Go duration), else def (the short form that
// runs in `make test`; `make chaos` runs minutes).
func chaosDuration(t *testing.T, def time.Duration) time.Duration {
	if v := os.Getenv("FTKV_CHAOS_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("FTKV_CHAOS_DURATION: %v", err)
		}
		return d
	}
	return def
}

// chaosRun is one chaos test under way: the cluster, the load and its
// history, the ledger, the fault measurements, and how the cluster's
// servers are hit (local processes, or processes on namespace hosts).
type chaosRun struct {
	t       *testing.T
	c       *testcluster.Cluster
	n       int
	seed    int64
	rng     *rand.Rand
	cls     []*client.Client
	w       *workload
	l       *ledger
	stats   *chaosStats
	servers serverFaults
	recover time.Duration // bound of one recovery (a leader, the servers back home)

	fault  int // number of the fault under way
	leader int // the leader coordinator when it began (a group)
}

// startChaos starts the load (porcupine history) and the ledger on c's
// n servers (keys named after prefix, each call bounded by opTimeout) and
// waits until the load runs.
func startChaos(t *testing.T, c *testcluster.Cluster, n int, prefix string, opTimeout time.Duration,
	servers serverFaults, recover time.Duration) *chaosRun {
	t.Helper()
	r := &chaosRun{t: t, c: c, n: n, cls: dialClients(c, 4), seed: seed(t), servers: servers, recover: recover}
	r.rng = rand.New(rand.NewSource(r.seed))
	r.w = startWorkload(t, workloadConfig{Clients: r.cls, Keys: keysOnShards(n, 3, prefix),
		Workers: 8, OpTimeout: opTimeout, Seed: r.seed})
	r.l = startLedger(t, r.cls, 2, "ledger-"+prefix, opTimeout)
	r.stats = newChaosStats(n, r.l, r.cls)
	waitProgress(t, c, "load before the first fault", r.w.Done, 200, 500*time.Millisecond)
	return r
}

// logf logs a line of the fault under way.
func (r *chaosRun) logf(format string, args ...any) {
	r.t.Helper()
	r.t.Logf("fault %d: %s", r.fault, fmt.Sprintf(format, args...))
}

// finish checks the history with porcupine and the ledger, and prints the
// figures.
func (r *chaosRun) finish(d time.Duration) {
	r.t.Helper()
	r.t.Logf("%d faults in %s", r.fault, d)
	stopAndCheck(r.t, r.w, r.l, r.cls[0])
	r.stats.report(r.t, r.seed, r.w)
}

// chaosFault is a kind of fault of a chaos run and how often it is drawn.
type chaosFault struct {
	weight int
	inject func(r *chaosRun) // injects, measures and waits for recovery
}

// loop injects faults for d, each once the previous has been recovered
// from and the load runs again: first the kinds at the indexes in first,
// in order, then drawn at random by weight.
func (r *chaosRun) loop(d time.Duration, kinds []chaosFault, first []int) {
	r.t.Helper()
	total := 0
	for _, k := range kinds {
		total += k.weight
	}
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		r.fault++
		f, x := 0, r.rng.Intn(total)
		for x >= kinds[f].weight {
			x -= kinds[f].weight
			f++
		}
		if r.fault <= len(first) {
			f = first[r.fault-1]
		}
		if r.c.Coordinators() > 1 {
			r.leader = r.c.LeaderIndex(r.t)
		}
		kinds[f].inject(r)
		if r.t.Failed() {
			break
		}
		waitProgress(r.t, r.c, "load after recovery", r.w.Done, 100, 500*time.Millisecond)
	}
}

// settle waits until the group has a leader, every coordinator answers
// with the leader's term and view, and the cluster has recovered from the
// victims (if any).
func (r *chaosRun) settle(victims ...testcluster.Victim) {
	r.t.Helper()
	r.c.WaitRecovered(r.t, r.recover, victims...)
	if r.c.Coordinators() == 1 {
		return
	}
	for k := 0; k < r.c.Coordinators(); k++ {
		caughtUp(r.t, r.c, k)
	}
}

// heartbeats is a random one to four Raft heartbeat timeouts (two failure
// timeouts each): how long a coordinator stays frozen or cut off.
func (r *chaosRun) heartbeats() time.Duration {
	return time.Duration(1+r.rng.Intn(4)) * 2 * testcluster.DefaultTimeout
}

// serverFaults hits the cluster's servers: kill -9, SIGSTOP and SIGCONT
// of a server's current incarnation.
type serverFaults interface {
	kill(t *testing.T, id int) testcluster.Victim
	stop(t *testing.T, id int) testcluster.Victim
	cont(t *testing.T, v testcluster.Victim)
}

// localServers are servers that are children of the test's coordinators.
type localServers struct{ c *testcluster.Cluster }

func (s localServers) kill(t *testing.T, id int) testcluster.Victim { return s.c.KillServer(t, id) }
func (s localServers) stop(t *testing.T, id int) testcluster.Victim { return s.c.StopServer(t, id) }
func (s localServers) cont(t *testing.T, v testcluster.Victim)      { s.c.ContServer(t, v) }

// measure runs one fault of kind that touches shards: inject (it returns
// the servers it killed or froze), then lift (waits and undoes the fault;
// nil: nothing to undo), then waits for the recovery, and records the
// fault's time to writable.
func (r *chaosRun) measure(kind string, shards []int, inject func() []testcluster.Victim, lift func()) {
	r.t.Helper()
	p := r.stats.probe(kind, shards)
	vs := inject()
	p.injected()
	if lift != nil {
		lift()
	}
	r.settle(vs...)
	p.done(r.t)
}

// none is an injection's list of victims when it hits no server.
func none(f func()) func() []testcluster.Victim {
	return func() []testcluster.Victim { f(); return nil }
}

// Faults of the servers.
var (
	serverKill = func(r *chaosRun) {
		id := r.rng.Intn(r.n)
		r.logf("kill -9 server %d", id)
		r.measure("server kill -9", serverShards(r.n, id),
			func() []testcluster.Victim { return []testcluster.Victim{r.servers.kill(r.t, id)} }, nil)
	}
	serverStop = func(r *chaosRun) {
		id := r.rng.Intn(r.n)
		r.logf("SIGSTOP server %d", id)
		var v testcluster.Victim
		r.measure("server SIGSTOP", serverShards(r.n, id),
			func() []testcluster.Victim { v = r.servers.stop(r.t, id); return []testcluster.Victim{v} },
			func() { time.Sleep(3 * testcluster.DefaultTimeout); r.servers.cont(r.t, v) })
	}
)

// Faults of a coordinator group's members.
var (
	leaderKill = func(r *chaosRun) {
		r.logf("kill -9 of the leader coordinator %d, then restart", r.leader)
		r.restartAfterKill("leader coordinator kill -9 + restart", r.leader)
	}
	followerKill = func(r *chaosRun) {
		k := (r.leader + 1 + r.rng.Intn(r.c.Coordinators()-1)) % r.c.Coordinators()
		r.logf("kill -9 of follower coordinator %d, then restart", k)
		r.restartAfterKill("follower coordinator kill -9 + restart", k)
	}
	leaderStop = func(r *chaosRun) {
		stop := r.heartbeats()
		r.logf("SIGSTOP of the leader coordinator %d for %s", r.leader, stop)
		r.measure("leader coordinator SIGSTOP", allShards(r.n), none(func() { r.c.StopCoordK(r.t, r.leader) }),
			func() { time.Sleep(stop); r.c.ContCoordK(r.t, r.leader) })
	}
	leaderAndServerKill = func(r *chaosRun) {
		id := r.rng.Intn(r.n)
		r.logf("kill -9 of the leader coordinator %d and server %d together", r.leader, id)
		r.measure("leader coordinator + server kill -9", allShards(r.n), func() []testcluster.Victim {
			v := r.servers.kill(r.t, id)
			r.c.KillCoordK(r.t, r.leader)
			return []testcluster.Victim{v}
		}, func() { r.c.RestartCoordK(r.t, r.leader) })
	}
)

// restartAfterKill kills coordinator k, restarts it a random moment later
// and waits for the group to settle, measured as kind.
func (r *chaosRun) restartAfterKill(kind string, k int) {
	r.measure(kind, allShards(r.n), none(func() { r.c.KillCoordK(r.t, k) }), func() {
		time.Sleep(time.Duration(r.rng.Intn(1500)) * time.Millisecond)
		r.c.RestartCoordK(r.t, k)
	})
}

// coordGroupFaults are TestChaosCoordGroup's kinds of fault: the
// coordinators' first (the short form takes each once), then the servers'.
func coordGroupFaults() []chaosFault {
	return []chaosFault{{1, leaderKill}, {1, leaderStop}, {1, leaderAndServerKill}, {1, followerKill},
		{4, serverKill}, {2, serverStop}}
}

// TestChaos injects random faults for FTKV_CHAOS_DURATION (default 8s;
// `make chaos` runs it for minutes): kill -9 of a random server, SIGSTOP of
// a random server for three failure timeouts then SIGCONT, and kill -9 of
// the coordinator followed by a restart. After each fault it waits for full
// recovery. Under load throughout; at the end porcupine must find the
// history linearizable and every acknowledged put must be readable. Every
// fault's time to writable again is measured (chaosStats).
func TestChaos(t *testing.T) {
	d := chaosDuration(t, 8*time.Second)
	const n = 3
	c := testcluster.Start(t, testcluster.Options{N: n})
	c.WaitRecovered(t, 10*time.Second)
	r := startChaos(t, c, n, "chaos", foOpTimeout, localServers{c}, recoverTimeout)
	coordKill := func(r *chaosRun) {
		r.logf("kill -9 of the coordinator, then restart")
		r.measure("coordinator kill -9 + restart", allShards(n), none(func() { c.KillCoord(t) }), func() {
			time.Sleep(time.Duration(r.rng.Intn(1500)) * time.Millisecond)
			c.RestartCoord(t)
		})
	}
	r.loop(d, []chaosFault{{6, serverKill}, {2, serverStop}, {2, coordKill}}, nil)
	r.finish(d)
}

// TestChaosCoordGroup is TestChaos with three coordinators (a Raft group)
// for FTKV_CHAOS_DURATION (default 10s): besides kill -9 and SIGSTOP of
// servers, kill -9 of the leader coordinator (or of a follower) and its
// restart a moment later, SIGSTOP of the leader for one to four Raft
// heartbeat timeouts (long enough, mostly, for the others to elect a
// leader while it is frozen) then SIGCONT, and the leader killed together
// with a server. After each fault: a leader, every coordinator running
// again and caught up, the cluster fully recovered. Porcupine and the
// ledger at the end; time to writable per kind of fault. Partitions of
// coordinators: TestChaosCoordGroupNetns.
func TestChaosCoordGroup(t *testing.T) {
	d := chaosDuration(t, 10*time.Second)
	const n = 3
	c := testcluster.Start(t, testcluster.Options{N: n, Coordinators: groupCoords})
	c.WaitRecovered(t, recoverTimeout)
	r := startChaos(t, c, n, "chaos-cg", foOpTimeout, localServers{c}, recoverTimeout+electionBound)
	// The first faults take every coordinator kind once, so that even the
	// short form exercises the control plane; then at random.
	r.loop(d, coordGroupFaults(), []int{0, 1, 2})
	r.finish(d)
}

// serverShards are the shards a fault of server id touches: the one it
// leads and the one it is the secondary of.
func serverShards(n, id int) []int { return []int{id, (id - 1 + n) % n} }

func allShards(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// chaosStats measures, for every fault, its time to writable again: from
// the fault's injection until a put to every shard the fault touches has
// been acknowledged (puts issued from just before the injection on, one
// after the other per shard, each retried by the client until it
// succeeds), and the longest a single such put took while the fault and
// the recovery lasted (a stall that starts later, e.g. when leases run
// out under a frozen coordinator). The puts go through the ledger, so
// they are checked for loss too.
type chaosStats struct {
	n   int
	l   *ledger
	cls []*client.Client

	mu     sync.Mutex
	ttw    map[string][]time.Duration
	stall  map[string][]time.Duration
	probes int
}

func newChaosStats(n int, l *ledger, cls []*client.Client) *chaosStats {
	return &chaosStats{n: n, l: l, cls: cls, ttw: map[string][]time.Duration{}, stall: map[string][]time.Duration{}}
}

// faultProbe is the measurement of one fault.
type faultProbe struct {
	s      *chaosStats
	kind   string
	mu     sync.Mutex
	t0     time.Time         // injection
	first  map[int]time.Time // shard -> first put acknowledged after t0
	worst  time.Duration
	stop   chan struct{}
	wg     sync.WaitGroup
	shards []int
}

// probe starts writing to shards (one writer per shard) for a fault of
// kind about to be injected; call injected right after the injection and
// done once the cluster has recovered.
func (s *chaosStats) probe(kind string, shards []int) *faultProbe {
	s.mu.Lock()
	s.probes++
	id := s.probes
	s.mu.Unlock()
	p := &faultProbe{s: s, kind: kind, first: map[int]time.Time{}, stop: make(chan struct{}), shards: shards}
	p.t0 = time.Now()
	for i, sh := range shards {
		keys := keysOnShard(s.n, sh, 1, fmt.Sprintf("ttw-%d-%d", id, sh))
		cl := s.cls[i%len(s.cls)]
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for j := 0; ; j++ {
				select {
				case <-p.stop:
					return
				default:
				}
				k := fmt.Sprintf("%s/%d", keys[0], j)
				start := time.Now()
				err := s.l.put(cl, k, "v"+k)
				took := time.Since(start)
				p.mu.Lock()
				if took > p.worst {
					p.worst = took
				}
				if _, ok := p.first[sh]; !ok && err == nil && !start.Before(p.t0) {
					p.first[sh] = time.Now()
				}
				p.mu.Unlock()
				time.Sleep(time.Millisecond)
			}
		}()
	}
	return p
}

// injected marks the moment the fault took effect.
func (p *faultProbe) injected() {
	p.mu.Lock()
	p.t0 = time.Now()
	clear(p.first)
	p.mu.Unlock()
}

// done stops the writers and records the fault's figures.
func (p *faultProbe) done(t *testing.T) {
	t.Helper()
	// Recovered means writable: give the writers a moment to show it.
	deadline := time.Now().Add(foOpTimeout)
	for {
		p.mu.Lock()
		got := len(p.first)
		p.mu.Unlock()
		if got == len(p.shards) || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(p.stop)
	p.wg.Wait()
	p.mu.Lock()
	defer p.mu.Unlock()
	var ttw time.Duration
	for _, sh := range p.shards {
		f, ok := p.first[sh]
		if !ok {
			t.Errorf("%s: shard %d not writable %s after recovery", p.kind, sh, foOpTimeout)
			return
		}
		ttw = max(ttw, f.Sub(p.t0))
	}
	t.Logf("  %s: writable again after %s (longest put %s)", p.kind, ttw.Round(time.Millisecond), p.worst.Round(time.Millisecond))
	p.s.mu.Lock()
	p.s.ttw[p.kind] = append(p.s.ttw[p.kind], ttw)
	p.s.stall[p.kind] = append(p.s.stall[p.kind], p.worst)
	p.s.mu.Unlock()
}

// pctl is the p-th percentile (nearest rank) of sorted d.
func pctl(d []time.Duration, p float64) time.Duration {
	i := int(p*float64(len(d)) + 0.999999)
	if i < 1 {
		i = 1
	}
	if i > len(d) {
		i = len(d)
	}
	return d[i-1]
}

// report prints the chaos figures: per kind of fault its count and the
// p50/p99/max of the time to writable and of the longest put, then the
// totals (operations of the history and the ledger, violations).
func (s *chaosStats) report(t *testing.T, seed int64, w *workload) {
	s.mu.Lock()
	defer s.mu.Unlock()
	kinds := make([]string, 0, len(s.ttw))
	total := 0
	for k, v := range s.ttw {
		kinds = append(kinds, k)
		total += len(v)
	}
	sort.Strings(kinds)
	var b strings.Builder
	fmt.Fprintf(&b, "chaos figures (seed %d): %d faults\n", seed, total)
	fmt.Fprintf(&b, "%-40s %6s  %28s  %28s\n", "fault", "count", "time to writable p50/p99/max", "longest put p50/p99/max")
	for _, k := range kinds {
		a, st := slices.Clone(s.ttw[k]), slices.Clone(s.stall[k])
		slices.Sort(a)
		slices.Sort(st)
		r := func(d time.Duration) string { return d.Round(time.Millisecond).String() }
		fmt.Fprintf(&b, "%-40s %6d  %28s  %28s\n", k, len(a),
			r(pctl(a, 0.5))+"/"+r(pctl(a, 0.99))+"/"+r(a[len(a)-1]),
			r(pctl(st, 0.5))+"/"+r(pctl(st, 0.99))+"/"+r(st[len(st)-1]))
	}
	nerr, _ := w.Errors()
	verdict := "0 (porcupine: linearizable; ledger: nothing lost)"
	if t.Failed() {
		verdict = "the test failed: see above"
	}
	fmt.Fprintf(&b, "ops: %d in the history (%d failed), %d ledger and probe puts (%d acknowledged); violations: %s",
		len(w.hist.operations()), nerr, s.l.puts.Load(), s.l.Acked(), verdict)
	t.Log(b.String())
}
