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
	cls := dialClients(c, 4)
	s := seed(t)
	rng := rand.New(rand.NewSource(s))
	c.WaitRecovered(t, 10*time.Second)
	w := startWorkload(t, workloadConfig{Clients: cls, Keys: keysOnShards(n, 3, "chaos"),
		Workers: 8, OpTimeout: foOpTimeout, Seed: s})
	l := startLedger(t, cls, 2, "ledger-chaos", foOpTimeout)
	stats := newChaosStats(n, l, cls)
	waitProgress(t, c, "load before the first fault", w.Done, 200, 500*time.Millisecond)

	end := time.Now().Add(d)
	faults := 0
	for time.Now().Before(end) {
		faults++
		switch f := rng.Intn(10); {
		case f < 6:
			id := rng.Intn(n)
			t.Logf("fault %d: kill -9 server %d", faults, id)
			p := stats.probe("server kill -9", serverShards(n, id))
			v := c.KillServer(t, id)
			p.injected()
			c.WaitRecovered(t, recoverTimeout, v)
			p.done(t)
		case f < 8:
			id := rng.Intn(n)
			t.Logf("fault %d: SIGSTOP server %d", faults, id)
			p := stats.probe("server SIGSTOP", serverShards(n, id))
			v := c.StopServer(t, id)
			p.injected()
			time.Sleep(3 * testcluster.DefaultTimeout)
			c.ContServer(t, v)
			c.WaitRecovered(t, recoverTimeout, v)
			p.done(t)
		default:
			t.Logf("fault %d: kill -9 of the coordinator, then restart", faults)
			p := stats.probe("coordinator kill -9 + restart", allShards(n))
			c.KillCoord(t)
			p.injected()
			time.Sleep(time.Duration(rng.Intn(1500)) * time.Millisecond)
			c.RestartCoord(t)
			c.WaitRecovered(t, recoverTimeout)
			p.done(t)
		}
		waitProgress(t, c, "load after recovery", w.Done, 100, 500*time.Millisecond)
	}
	t.Logf("%d faults in %s", faults, d)
	stopAndCheck(t, w, l, cls[0])
	stats.report(t, s, w)
}

// TestChaosCoordGroup is TestChaos with three coordinators (a Raft group)
// for FTKV_CHAOS_DURATION (default 10s): besides kill -9 and SIGSTOP of
// servers, kill -9 of the leader coordinator (or of a follower) and its
// restart a moment later, SIGSTOP of the leader for one to four Raft
// heartbeat timeouts (long enough, mostly, for the others to elect a
// leader while it is frozen) then SIGCONT, and the leader killed together
// with a server. After each fault: a leader, every coordinator running
// again and caught up, the cluster fully recovered. Porcupine and the
// ledger at the end; time to writable per kind of fault.
func TestChaosCoordGroup(t *testing.T) {
	d := chaosDuration(t, 10*time.Second)
	const n = 3
	c := testcluster.Start(t, testcluster.Options{N: n, Coordinators: groupCoords})
	c.WaitRecovered(t, recoverTimeout)
	cls := dialClients(c, 4)
	s := seed(t)
	rng := rand.New(rand.NewSource(s))
	w := startWorkload(t, workloadConfig{Clients: cls, Keys: keysOnShards(n, 3, "chaos-cg"),
		Workers: 8, OpTimeout: foOpTimeout, Seed: s})
	l := startLedger(t, cls, 2, "ledger-chaos-cg", foOpTimeout)
	stats := newChaosStats(n, l, cls)
	waitProgress(t, c, "load before the first fault", w.Done, 200, 500*time.Millisecond)

	// The first faults take every coordinator kind once, so that even the
	// short form exercises the control plane; then at random.
	first := []int{0, 1, 2}
	end := time.Now().Add(d)
	faults := 0
	for time.Now().Before(end) {
		faults++
		f := rng.Intn(10)
		if faults <= len(first) {
			f = first[faults-1]
		}
		leader := c.LeaderIndex(t)
		switch {
		case f == 0:
			t.Logf("fault %d: kill -9 of the leader coordinator %d, then restart", faults, leader)
			p := stats.probe("leader coordinator kill -9 + restart", allShards(n))
			c.KillCoordK(t, leader)
			p.injected()
			time.Sleep(time.Duration(rng.Intn(1500)) * time.Millisecond)
			c.RestartCoordK(t, leader)
			groupSettled(t, c)
			p.done(t)
		case f == 1:
			stop := time.Duration(1+rng.Intn(4)) * 2 * testcluster.DefaultTimeout
			t.Logf("fault %d: SIGSTOP of the leader coordinator %d for %s", faults, leader, stop)
			p := stats.probe("leader coordinator SIGSTOP", allShards(n))
			c.StopCoordK(t, leader)
			p.injected()
			time.Sleep(stop)
			c.ContCoordK(t, leader)
			groupSettled(t, c)
			p.done(t)
		case f == 2:
			id := rng.Intn(n)
			t.Logf("fault %d: kill -9 of the leader coordinator %d and server %d together", faults, leader, id)
			p := stats.probe("leader coordinator + server kill -9", allShards(n))
			v := c.KillServer(t, id)
			c.KillCoordK(t, leader)
			p.injected()
			c.RestartCoordK(t, leader)
			groupSettled(t, c, v)
			p.done(t)
		case f == 3:
			k := (leader + 1 + rng.Intn(groupCoords-1)) % groupCoords
			t.Logf("fault %d: kill -9 of follower coordinator %d, then restart", faults, k)
			p := stats.probe("follower coordinator kill -9 + restart", allShards(n))
			c.KillCoordK(t, k)
			p.injected()
			time.Sleep(time.Duration(rng.Intn(1500)) * time.Millisecond)
			c.RestartCoordK(t, k)
			groupSettled(t, c)
			p.done(t)
		case f < 8:
			id := rng.Intn(n)
			t.Logf("fault %d: kill -9 server %d", faults, id)
			p := stats.probe("server kill -9", serverShards(n, id))
			v := c.KillServer(t, id)
			p.injected()
			groupSettled(t, c, v)
			p.done(t)
		default:
			id := rng.Intn(n)
			t.Logf("fault %d: SIGSTOP server %d", faults, id)
			p := stats.probe("server SIGSTOP", serverShards(n, id))
			v := c.StopServer(t, id)
			p.injected()
			time.Sleep(3 * testcluster.DefaultTimeout)
			c.ContServer(t, v)
			groupSettled(t, c, v)
			p.done(t)
		}
		if t.Failed() {
			break
		}
		waitProgress(t, c, "load after recovery", w.Done, 100, 500*time.Millisecond)
	}
	t.Logf("%d faults in %s", faults, d)
	stopAndCheck(t, w, l, cls[0])
	stats.report(t, s, w)
}

// groupSettled waits until the group has a leader, every coordinator
// answers with the leader's term and view, and the cluster has recovered
// from the victims (if any).
func groupSettled(t *testing.T, c *testcluster.Cluster, victims ...testcluster.Victim) {
	t.Helper()
	c.WaitRecovered(t, recoverTimeout+electionBound, victims...)
	for k := 0; k < c.Coordinators(); k++ {
		caughtUp(t, c, k)
	}
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
