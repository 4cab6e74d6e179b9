package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftkv/bench/hostile"
	"ftkv/client"
	"ftkv/hashring"
	"ftkv/internal/testkit/testcluster"
	"ftkv/limits"
	"ftkv/wire"
)

// The hostile-client tests: each runs one probe of package
// bench/hostile against a real 3-server cluster while honest clients work
// on every shard, and asserts that no server exits, no failover happens
// (the epoch does not move), the honest clients keep succeeding within
// their usual latency and the target server's memory stays within budget.
// FTKV_HOSTILE_LONG=1 makes every probe run longer and harder.

func hostileLong() bool { return os.Getenv("FTKV_HOSTILE_LONG") != "" }

// short or long form of a figure.
func sl[T any](short, long T) T {
	if hostileLong() {
		return long
	}
	return short
}

// honestLoad is one goroutine per shard doing a put and a get of a key of
// that shard in a loop, recording each operation's latency in the current
// phase. Each operation must end within honestDeadline.
type honestLoad struct {
	cl     *client.Client
	keys   []string // keys[s] belongs to shard s
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu     sync.Mutex
	phase  string
	phases map[string]*honestPhase
}

type honestPhase struct {
	lat     []time.Duration
	ok      []int // successes per shard
	errs    int
	firstEs []string
}

// honestDeadline is how long an honest operation may take while a probe
// attacks its server: 2 s, four failure timeouts, scaled with the failure
// timeout under the race detector as the cluster's own timing is (the
// servers then run several times slower: in one CI run of 1,841 s an
// honest write of the attacked shard missed a fixed 2 s in both
// TestHostileManySlowReaders and TestHostileWriteFlood, the slowest others
// taking 0.66 and 0.92 s).
var honestDeadline = 4 * testcluster.DefaultTimeout

func startHonest(t *testing.T, c *testcluster.Cluster) *honestLoad {
	t.Helper()
	cl := c.Client()
	n := len(cl.View().Shards)
	ring := hashring.New(n)
	h := &honestLoad{cl: cl, keys: make([]string, n), phase: "baseline", phases: map[string]*honestPhase{}}
	for i, found := 0, 0; found < n; i++ {
		k := fmt.Sprintf("honest/%d", i)
		if s := ring.Shard(k); h.keys[s] == "" {
			h.keys[s] = k
			found++
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	for s, k := range h.keys {
		h.wg.Add(1)
		go func() {
			defer h.wg.Done()
			val := []byte("honest value of " + k)
			for i := 0; ctx.Err() == nil; i++ {
				octx, ocancel := context.WithTimeout(ctx, honestDeadline)
				start := time.Now()
				var err error
				if i%2 == 0 {
					err = cl.Put(octx, k, val)
				} else {
					var got []byte
					got, err = cl.Get(octx, k)
					if err == nil && string(got) != string(val) {
						err = fmt.Errorf("get %q: %q, want %q", k, got, val)
					}
				}
				d := time.Since(start)
				ocancel()
				if ctx.Err() != nil {
					return
				}
				h.record(s, d, err)
				if err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}()
	}
	t.Cleanup(h.stop)
	return h
}

func (h *honestLoad) record(shard int, d time.Duration, err error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.phases[h.phase]
	if p == nil {
		p = &honestPhase{ok: make([]int, len(h.keys))}
		h.phases[h.phase] = p
	}
	if err != nil {
		p.errs++
		if len(p.firstEs) < 5 {
			p.firstEs = append(p.firstEs, fmt.Sprintf("shard %d: %v", shard, err))
		}
		return
	}
	p.lat = append(p.lat, d)
	p.ok[shard]++
}

func (h *honestLoad) setPhase(name string) {
	h.mu.Lock()
	h.phase = name
	h.mu.Unlock()
}

func (h *honestLoad) stop() {
	h.cancel()
	h.wg.Wait()
}

// honestStats summarises one phase.
type honestStats struct {
	n, errs       int
	p50, p99, max time.Duration
	perShard      []int
	firstErrs     []string
}

func (s honestStats) String() string {
	return fmt.Sprintf("%d ok (per shard %v), %d errors, p50 %s p99 %s max %s",
		s.n, s.perShard, s.errs, s.p50.Round(10*time.Microsecond), s.p99.Round(10*time.Microsecond), s.max.Round(10*time.Microsecond))
}

func (h *honestLoad) stats(phase string) honestStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	p := h.phases[phase]
	if p == nil {
		return honestStats{perShard: make([]int, len(h.keys))}
	}
	lat := slices.Clone(p.lat)
	slices.Sort(lat)
	st := honestStats{n: len(lat), errs: p.errs, perShard: slices.Clone(p.ok), firstErrs: slices.Clone(p.firstEs)}
	if len(lat) > 0 {
		st.p50 = lat[len(lat)/2]
		st.p99 = lat[min(len(lat)-1, len(lat)*99/100)]
		st.max = lat[len(lat)-1]
	}
	return st
}

// hostileRun is one probe's test: the cluster, the honest load, what was
// recorded before the probe and the RSS watches.
type hostileRun struct {
	t       *testing.T
	c       *testcluster.Cluster
	h       *honestLoad
	epoch   uint64
	pids    map[int]int
	target  int
	rss     map[int]*hostile.RSSWatch
	logFrom int
	res     hostile.Result
	// hbAge is the largest age of the target's last heartbeat seen in the
	// coordinator's status while the probe ran.
	hbAge time.Duration
	// latencyFloor, when set, is the least bound check puts on the honest
	// clients' p99 during the probe (for a probe that loads the test's
	// own process, where the honest clients run, beside the server).
	latencyFloor time.Duration
}

// startHostile starts a default cluster (or one from cfg), the honest load
// and its baseline, and records the epoch, the pids and the RSS of every
// server. The target of the probe is server 1.
func startHostile(t *testing.T, o testcluster.Options) *hostileRun {
	t.Helper()
	testcluster.SkipIfSecure(t, "the probes' hostile clients speak the protocol in plaintext, without credentials")
	// Memory budgets hold for the binaries users run: the race
	// detector multiplies a server's RSS (and slows it ~5x).
	o.Plain = true
	// The servers log every write as users' do, but without waiting for
	// fsyncs: these probes count answers and session records within
	// fixed durations, and one-shot clients write one at a time, so a
	// disk's fsync latency (not what is measured here) would decide them.
	o.Args = append([]string{"-fsync", "no"}, o.Args...)
	c := testcluster.Start(t, o)
	st := c.WaitRecovered(t, 20*time.Second)
	r := &hostileRun{t: t, c: c, epoch: st.Epoch, pids: map[int]int{}, target: 1, rss: map[int]*hostile.RSSWatch{}}
	for _, s := range st.Servers {
		r.pids[s.ID] = s.PID
	}
	r.h = startHonest(t, c)
	time.Sleep(sl(2*time.Second, 5*time.Second))
	for id, pid := range r.pids {
		w, err := hostile.WatchRSS(pid, 10*time.Millisecond)
		if err != nil {
			t.Fatalf("server %d pid %d: %v", id, pid, err)
		}
		r.rss[id] = w
		t.Cleanup(func() { w.Stop() })
	}
	r.logFrom = len(c.Log())
	r.h.setPhase("probe")
	return r
}

// cfg is the probe's configuration aimed at the target server.
func (r *hostileRun) cfg() hostile.Config {
	return hostile.Config{Coord: r.c.Addr, ServerID: r.target, Logf: r.t.Logf}
}

// run runs the probe and logs its result.
func (r *hostileRun) run(name string, cfg hostile.Config) hostile.Result {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	hb := hostile.WatchHeartbeats(r.c.Addr, r.target, 0)
	res, err := hostile.Run(ctx, name, cfg)
	var samples int
	r.hbAge, samples = hb.Stop()
	r.t.Logf("probe result:\n%s", res)
	r.t.Logf("target's heartbeats during the probe: the last one at most %s old (%d status samples; failure timeout %s)",
		r.hbAge, samples, testcluster.DefaultTimeout)
	if err != nil {
		r.t.Errorf("probe %s: %v", name, err)
	}
	r.res = res
	return res
}

// check waits for the coordinator to notice anything the probe did, then
// asserts that nothing a client does takes a server down: same epoch, same pids, every server serving,
// honest clients succeeding on every shard with p99 within 10x their
// baseline plus 100ms, and the target's RSS growth within budget.
func (r *hostileRun) check(budget int64) {
	t, c := r.t, r.c
	t.Helper()
	r.h.setPhase("after")
	time.Sleep(2 * testcluster.DefaultTimeout)
	r.h.stop()
	base, during, after := r.h.stats("baseline"), r.h.stats("probe"), r.h.stats("after")
	t.Logf("honest clients: baseline %s", base)
	t.Logf("honest clients: during the probe %s", during)
	t.Logf("honest clients: after the probe %s", after)
	// Liveness never depends on client load: the target's heartbeats keep
	// coming well within the failure timeout.
	if r.hbAge > testcluster.DefaultTimeout/2 {
		t.Errorf("target's last heartbeat was %s old during the probe: over half the failure timeout %s", r.hbAge, testcluster.DefaultTimeout)
	}
	bound := max(10*base.p99+100*time.Millisecond, r.latencyFloor)
	if during.errs > 0 || after.errs > 0 {
		t.Errorf("honest clients failed: %d errors during the probe, %d after; first: %q %q", during.errs, after.errs, during.firstErrs, after.firstErrs)
	}
	if during.p99 > bound {
		t.Errorf("honest p99 during the probe %s, over the bound %s (10x the baseline %s + 100ms, at least %s)", during.p99, bound, base.p99, r.latencyFloor)
	}
	for s, n := range during.perShard {
		if n == 0 {
			t.Errorf("no honest operation on shard %d succeeded during the probe", s)
		}
	}
	for id := range r.pids {
		rs := r.rss[id].Stop()
		t.Logf("server %d: %s", id, rs)
		if id == r.target && rs.Growth() > budget {
			t.Errorf("target server %d: RSS grew by %s (%s -> peak %s), budget %s", id, hostile.Bytes(rs.Growth()), hostile.Bytes(rs.Before), hostile.Bytes(rs.Peak), hostile.Bytes(budget))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	st, err := c.TryStatus(ctx)
	cancel()
	if err != nil {
		t.Errorf("status after the probe: %v", err)
	} else {
		if st.Epoch != r.epoch {
			t.Errorf("epoch moved from %d to %d: a failover happened", r.epoch, st.Epoch)
		}
		for _, s := range st.Servers {
			if s.PID != r.pids[s.ID] {
				t.Errorf("server %d: pid %d before the probe, %d after: the server exited", s.ID, r.pids[s.ID], s.PID)
			}
			if s.State != "serving" {
				t.Errorf("server %d is %q after the probe", s.ID, s.State)
			}
		}
	}
	for id, pid := range r.pids {
		if testcluster.PIDGone(pid) {
			t.Errorf("server %d (pid %d) is gone", id, pid)
		}
	}
	r.logSummary()
}

var logMsgRE = regexp.MustCompile(`"level":"(warn|error|fatal|panic)".*?"message":"([^"]*)"`)

// logSummary logs the warnings and errors the cluster logged since the
// probe started, counted by message.
func (r *hostileRun) logSummary() {
	log := r.c.Log()
	if r.logFrom > len(log) {
		r.logFrom = 0
	}
	counts := map[string]int{}
	var firsts []string
	for _, line := range strings.Split(log[r.logFrom:], "\n") {
		m := logMsgRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		k := m[1] + ": " + m[2]
		if counts[k] == 0 && len(firsts) < 12 {
			firsts = append(firsts, line)
		}
		counts[k]++
	}
	keys := make([]string, 0, len(counts))
	for k := range counts {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %5d  %s", counts[k], k)
	}
	if len(keys) == 0 {
		b.WriteString(" none")
	}
	r.t.Logf("warnings and errors logged since the probe started:%s", b.String())
	if len(firsts) > 0 {
		r.t.Logf("first of each:\n%s", strings.Join(firsts, "\n"))
	}
}

// TestHostileSlowReader: GETs of a 1 MiB value pipelined on 4 connections
// and never read. The server must push back (stop reading) or close those
// connections, not buffer every answer: RSS growth within 64 MiB. The
// probe runs in a process of its own: in the test's (race-instrumented)
// process it starved the test's own honest clients and heartbeat watch
// (13-19 status samples, 24-56 operations on the attacked shard), so
// what they measured was the test, not the server (78-80 samples and
// 7,046-7,568 operations apart, RSS +24.6 MiB).
func TestHostileSlowReader(t *testing.T) { hostileSlowReader(t, false) }

// TestHostileSlowWriter: as TestHostileSlowReader, but each GET is
// followed by a PUT of the same 1 MiB value: the writes go through the
// log and the replication to the secondary while the answers are never
// read. RSS growth within 64 MiB and no failover, as for the reader. Its
// probe stays in the test's process (its honest clients are not starved
// there: 390-511 status samples): from a process of its own, writing
// faster, it grew the server by +44 to +78 MiB in 5 runs (one over the
// bound), against +38-50 MiB in the test's process.
func TestHostileSlowWriter(t *testing.T) { hostileSlowReader(t, true) }

func hostileSlowReader(t *testing.T, writes bool) {
	r := startHostile(t, testcluster.Options{})
	cfg := r.cfg()
	cfg.Size = 1 << 20
	cfg.Conns = sl(4, 8)
	cfg.Duration = sl(5*time.Second, 30*time.Second)
	cfg.Writes = writes
	if writes {
		r.run("slow-reader", cfg)
	} else {
		r.runApart("slow-reader", cfg)
	}
	r.check(64 << 20)
}

// TestHostileManySlowReaders: as TestHostileSlowReader, on 500
// connections (2,000 in the long form), from a process of their own.
// Each one alone stays under every limit of its own (one answer of 1 MiB
// queued, below output_soft_limit), so only what all of them hold
// together bounds the server: the output budget, now enforced beyond
// pausing (the connections whose answers went unread longest are
// closed) and, on the server, answers over 64 KiB held back beyond one
// and a half times it while small ones go on. What clients may hold is
// 1.5 x output_budget + input_budget + inflight_budget (116 MiB by
// default); gnet's buffers are rounded up and grown by copies, and the
// collector's limit follows what they hold: RSS growth within three
// times that (85-144 MiB measured, 10 runs). The honest client of the
// attacked shard must meet its deadline too (honestDeadline): with a 1 MiB input cap
// for paused connections and queued answers counted once in the
// collector's limit, one of its operations missed it in 1 to 4 of 6
// runs (page faults of copies into gnet's buffers held an event loop
// for up to 1.2 s: internal/connlimit InboundCap, server/gc.go
// gcLimit). Before the output budget was enforced: +529 MiB, the shard's
// honest client served 290 operations in 8 s (and one timed out); with
// 1,000 connections +999 MiB and a failover, the replication link's
// answers unread by a loop busy for 1.7 s taken for a silent secondary
// (TestLinkStallNotBlamedWhileLoopBusy).
func TestHostileManySlowReaders(t *testing.T) {
	r := startHostile(t, testcluster.Options{})
	cfg := r.cfg()
	cfg.Size = 1 << 20
	cfg.Conns = raiseNoFile(t, uint64(sl(500, 2000)))
	cfg.Duration = sl(8*time.Second, 30*time.Second)
	res := r.runApart("slow-reader", cfg)
	if res.Opened < cfg.Conns {
		t.Errorf("only %d of %d connections opened (%d dial errors)", res.Opened, cfg.Conns, res.DialErrors)
	}
	held := int64(limits.DefaultOutputBudget)*3/2 + limits.DefaultInputBudget + limits.DefaultInflightBudget
	r.check(3 * held)
	// The operator sees the evictions.
	for _, s := range r.c.Status(t).Servers {
		if s.ID != r.target {
			continue
		}
		v, ok := scrapeTarget(t, s.MetricsAddr)["ftkv_server_client_connections_output_evicted_total"]
		t.Logf("server %d: ftkv_server_client_connections_output_evicted_total %.0f", s.ID, v)
		if !ok || v == 0 {
			t.Errorf("server %d: ftkv_server_client_connections_output_evicted_total %.0f (present: %v), want the connections closed for the output budget counted", s.ID, v, ok)
		}
	}
}

// raiseNoFile raises this process's RLIMIT_NOFILE so that it can hold n
// connections: the soft limit to the hard one and, with CAP_SYS_RESOURCE,
// the hard limit itself. It returns how many connections the probe can
// open (it keeps 64 descriptors for itself).
func raiseNoFile(t *testing.T, n uint64) int {
	t.Helper()
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		t.Fatal(err)
	}
	old := rl
	t.Cleanup(func() { _ = syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	want := syscall.Rlimit{Cur: max(rl.Max, n+128), Max: max(rl.Max, n+128)}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
		t.Logf("RLIMIT_NOFILE %d/%d not raised to %d: %v", old.Cur, old.Max, want.Max, err)
		want = syscall.Rlimit{Cur: old.Max, Max: old.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &want); err != nil {
			t.Fatalf("RLIMIT_NOFILE soft %d to hard %d: %v", old.Cur, old.Max, err)
		}
	}
	return int(min(n, want.Cur-64))
}

// serverNoFile is the RLIMIT_NOFILE (soft and hard) the idle-connections
// test gives the coordinator and so its servers: below the 20,000
// connections of the probe (so that accept meets EMFILE, as on a host with
// the common limits) and above the default max_clients of 10,000.
const serverNoFile = 12288

// TestHostileIdleConns: 20,000 idle connections to one server's client
// port, whose process may hold only 12,288 descriptors. The server must
// keep serving: beyond max_clients (10,000) a new connection gets an error
// frame and is closed, and an accept error (EMFILE) never stops the engine.
func TestHostileIdleConns(t *testing.T) {
	r := startHostile(t, testcluster.Options{Wrap: []string{"sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$@"`, serverNoFile), "sh"}})
	n := raiseNoFile(t, 20000)
	cfg := r.cfg()
	cfg.Conns = n
	// Opening them took over 10 s once, beside other heavy work (18,070
	// of 19,936 by then): the bound is for the machine, not the server.
	cfg.Duration = sl(20*time.Second, 30*time.Second)
	res := r.run("idle-conns", cfg)
	if res.Opened < n {
		t.Errorf("only %d of %d connections opened (%d dial errors): the server stopped accepting", res.Opened, n, res.DialErrors)
	}
	if held := res.Opened - res.ClosedByServer; held > 10000 {
		t.Errorf("%d connections held open, over the default max_clients 10000", held)
	}
	r.check(256 << 20)
}

// TestHostileHalfFrames: connections that send half a frame header and
// then nothing must be closed after the frame timeout (default 10s).
func TestHostileHalfFrames(t *testing.T) {
	r := startHostile(t, testcluster.Options{})
	cfg := r.cfg()
	cfg.Conns = sl(1000, 5000)
	cfg.Duration = sl(13*time.Second, 30*time.Second)
	res := r.run("half-frames", cfg)
	if res.ClosedByServer < res.Opened {
		t.Errorf("%d of %d half-frame connections still open after %s (frame_timeout default 10s)", res.Opened-res.ClosedByServer, res.Opened, cfg.Duration)
	}
	r.check(64 << 20)
}

// TestHostileHugeLength: a length prefix of 4 GiB on the client, peer and
// control ports is refused at once: the connection is closed within a
// second and nothing is allocated.
func TestHostileHugeLength(t *testing.T) {
	r := startHostile(t, testcluster.Options{})
	cfg := r.cfg()
	cfg.Conns = sl(20, 200)
	res := r.run("huge-length", cfg)
	if len(res.Parts) != 3 {
		t.Errorf("probed %d ports, want 3 (client, peer, control)", len(res.Parts))
	}
	for _, p := range res.Parts {
		if p.Opened == 0 || p.ClosedByServer < p.Opened || p.MaxCloseAfter > time.Second {
			t.Errorf("%s: %d of %d connections closed, the slowest after %s; want all within 1s", p.Probe, p.ClosedByServer, p.Opened, p.MaxCloseAfter)
		}
	}
	r.check(64 << 20)
}

// TestHostileUnauthBig: before HELLO the control and peer ports take
// nothing larger than 4 KiB: a header announcing 4 MiB closes the
// connection at once, and whole 4 MiB frames never park in the server.
func TestHostileUnauthBig(t *testing.T) {
	r := startHostile(t, testcluster.Options{})
	cfg := r.cfg()
	cfg.Conns = sl(8, 32)
	cfg.Duration = sl(5*time.Second, 30*time.Second)
	res := r.run("unauth-big", cfg)
	headers := 0
	for _, p := range res.Parts {
		if !strings.HasSuffix(p.Probe, "header only") {
			continue
		}
		headers++
		if p.Opened == 0 || p.ClosedByServer < p.Opened || p.MaxCloseAfter > time.Second {
			t.Errorf("%s: %d of %d connections closed within 2s (slowest %s) after a header announcing a 4 MiB frame before HELLO; want all within 1s",
				p.Probe, p.ClosedByServer, p.Opened, p.MaxCloseAfter)
		}
	}
	if headers != 2 {
		t.Errorf("probed %d ports, want 2 (peer, control)", headers)
	}
	r.check(64 << 20)
}

// TestHostileBadSeqs: random client ids, descending sequence numbers and
// floor 0 forever cost O(log n) or O(1) per write: the descending stream
// keeps its rate, and memory stays bounded.
func TestHostileBadSeqs(t *testing.T) {
	// Random client ids open a session each and the descending stream
	// piles records on one client: memory is bounded by max_sessions and
	// max_session_records (defaults 100,000 and 65,536: +86 MiB RSS
	// measured), here set lower to check that the bound holds within
	// the 64 MiB budget.
	r := startHostile(t, testcluster.Options{Config: "3\nlocalhost 0 0 0\nlocalhost 0 0 0\nlocalhost 0 0 0\nmax_sessions 20000\nmax_session_records 8192\n"})
	cfg := r.cfg()
	cfg.Conns = 2
	cfg.Duration = sl(8*time.Second, 60*time.Second)
	res := r.run("bad-seqs", cfg)
	for _, p := range res.Parts {
		if p.Answers == 0 {
			t.Errorf("%s: no write answered", p.Probe)
		}
		if p.RateLast < p.RateFirst/4 {
			t.Errorf("%s: %.0f answers/s in the last second, %.0f in the first: each write costs more as records pile up", p.Probe, p.RateLast, p.RateFirst)
		}
	}
	r.check(64 << 20)
}

// TestHostileWriteFlood: 200 connections each keep 4,096 PUTs of 1 KiB
// unanswered (each within its own max_inflight) and read every answer,
// faster than the shard commits them. What the server holds for all of
// them together is bounded: writes in flight by inflight_budget (4 MiB),
// unread input by input_budget (64 MiB: beyond it the connection holding
// the most is closed), queued answers by output_budget; RSS growth within
// 256 MiB (gnet's input buffers are powers of two grown by copies; 155-187
// MiB measured), no failover, honest clients served. Before the in-flight
// budget, every connection put its 4,096 writes in flight: a failover
// (the target's heartbeats 0.65-2 s late), honest writes of its shard
// waiting up to 5 s, and RSS growth of 226-479 MiB in 6 s.
//
// Once the flood is over, no server counts any write in flight
// (ftkv_server_inflight_bytes): the writes of connections closed before
// their answers were never uncounted (a review: 4,236,056 bytes kept for
// good, over the budget, slowing every pipelining client of the server).
func TestHostileWriteFlood(t *testing.T) {
	r := startHostile(t, testcluster.Options{Args: []string{"-metrics", "127.0.0.1:0"}})
	// The flood's 200 connections write from a process of their own, as
	// an attacker does: from this one, where the honest clients run,
	// under the race detector beside the rest of CI they starved them (a
	// CI run: honest operations on the shards the flood does not touch
	// fell from ~5,000 to 275 and 1,070 in the same time, p99 353 ms
	// against a bound of 114 ms; another, 218 and 855, and one of shard
	// 0 waited past its 2 s deadline). Honest
	// writes of the flooded shard wait behind up to inflight_budget of
	// the flood's: their p99 must stay within the failure timeout (before
	// the budget they waited up to 5 s, and the shard failed over).
	r.latencyFloor = testcluster.DefaultTimeout
	cfg := r.cfg()
	cfg.Duration = sl(6*time.Second, 30*time.Second)
	res := r.runApart("write-flood", cfg)
	if res.Statuses["OK"] == 0 {
		t.Errorf("no PUT of the flood acknowledged: %v", res.Statuses)
	}
	r.check(256 << 20)
	if res.ClosedByServer == 0 {
		t.Logf("no flood connection was closed by the server: the closed-connection case did not arise")
	}
	st := r.c.Status(t)
	for _, s := range st.Servers {
		var left float64
		deadline := time.Now().Add(5 * time.Second)
		for {
			sc := scrapeTarget(t, s.MetricsAddr)
			v, ok := sc["ftkv_server_inflight_bytes"]
			if !ok {
				t.Fatalf("server %d has no ftkv_server_inflight_bytes", s.ID)
			}
			if left = v; left == 0 || time.Now().After(deadline) {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if left != 0 {
			t.Errorf("server %d counts %.0f bytes of writes in flight 5 s after the flood ended, want 0", s.ID, left)
		}
	}
}

// sessionRecords reads the planned per-server status fields
// "session_records" (dedup records held) and "sessions"; it fails the test
// when the status has none.
func sessionRecords(t *testing.T, c *testcluster.Cluster) map[int]int64 {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := hostile.StatusJSON(ctx, c.Addr)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	var doc struct {
		Servers []map[string]json.RawMessage `json:"servers"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("status: %v", err)
	}
	out := map[int]int64{}
	for _, s := range doc.Servers {
		var id, recs int64
		_ = json.Unmarshal(s["id"], &id)
		v, ok := s["session_records"]
		if !ok {
			t.Fatalf("status of server %d has no session_records field; it has: %s", id, fieldNames(s))
		}
		if err := json.Unmarshal(v, &recs); err != nil {
			t.Fatalf("server %d: session_records %s: %v", id, v, err)
		}
		out[int(id)] = recs
	}
	return out
}

func fieldNames(m map[string]json.RawMessage) string {
	var ks []string
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return strings.Join(ks, " ")
}

// TestHostileOneShot: short-lived clients, one put each with a fresh
// client id. Each leaves a dedup record behind; the status must show them
// (session_records) and memory must stay within 64 MiB.
func TestHostileOneShot(t *testing.T) {
	r := startHostile(t, testcluster.Options{})
	cfg := r.cfg()
	cfg.Clients = sl(20000, 100000)
	cfg.Conns = 8
	// The probe ends when every client is answered; the bound only stops
	// a machine too busy to get there (12,094 of 20,000 in 20 s once,
	// beside other heavy work).
	cfg.Duration = sl(60*time.Second, 5*time.Minute)
	res := r.run("one-shot", cfg)
	if res.Answers < int64(cfg.Clients) || res.Statuses["OK"] < int64(cfg.Clients) {
		t.Errorf("%d of %d one-shot clients answered, %d OK", res.Answers, cfg.Clients, res.Statuses["OK"])
	}
	r.check(64 << 20)
	recs := sessionRecords(t, r.c)
	t.Logf("session_records after %d one-shot clients: %v", cfg.Clients, recs)
}

// TestHostileSessionTTL: with session_ttl 8s, the dedup records of
// one-shot clients are dropped once they were silent that long (the
// status's session_records returns to its baseline), and a write retried
// after its session expired is refused (SESSION_EXPIRED), never applied
// twice.
func TestHostileSessionTTL(t *testing.T) {
	const ttl = 8 * time.Second
	cfg := "3\nlocalhost 0 0 0\nlocalhost 0 0 0\nlocalhost 0 0 0\nsession_ttl 8s\n"
	t.Logf("the cluster file has the config line \"session_ttl 8s\"")
	r := startHostile(t, testcluster.Options{Config: cfg})
	before := sessionRecords(t, r.c)
	// A write of a client that then goes silent, overwritten by another.
	key := keyOfShard(len(r.h.cl.View().Shards), r.target)
	st := r.c.Status(t)
	write := wire.Append(nil, &wire.Frame{Op: wire.OpPut, ID: 9, Client: 0x5e55_1011 | 1, Seq: 1, Floor: 1, Key: []byte(key), Value: []byte("first")})
	// (UNAVAILABLE, the target's lease lapsing on a loaded machine, is
	// retried with the same client and sequence number, as a client does:
	// it applies once.)
	f := rawRoundTrip(t, st.Servers[r.target].Addr, write)
	for deadline := time.Now().Add(10 * time.Second); f.Status == wire.StatusUnavailable && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond)
		f = rawRoundTrip(t, st.Servers[r.target].Addr, write)
	}
	if f.Status != wire.StatusOK {
		t.Fatalf("first write: %s %s", f.Status, f.Value)
	}
	if err := r.h.cl.Put(context.Background(), key, []byte("second")); err != nil {
		t.Fatal(err)
	}
	pc := r.cfg()
	pc.Clients = sl(3000, 100000)
	pc.Duration = sl(20*time.Second, 5*time.Minute)
	res := r.run("one-shot", pc)
	// Every record must be counted until it expires. A probe that ran
	// for longer than the TTL less a margin (a loaded CI machine: 5,000
	// clients took 6.5 s once against a 6 s TTL) saw its first records
	// expire before the count could be read: then only the share of
	// the writes answered in the TTL's last stretch is due.
	want := res.Statuses["OK"]
	if fresh := ttl - 2*time.Second; res.Elapsed > fresh {
		want = int64(float64(want) * fresh.Seconds() / res.Elapsed.Seconds())
		t.Logf("the probe ran %s, longer than the TTL less 2 s: %d of its %d records are due in the count", res.Elapsed, want, res.Statuses["OK"])
	}
	// Heartbeats carry the counts: wait for one sent after the probe.
	var peak map[int]int64
	counted := false
	for deadline := time.Now().Add(5 * time.Second); !counted && time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		peak = sessionRecords(t, r.c)
		// (Less the honest clients' own records counted before: their
		// next write's floor prunes them, as below.)
		counted = peak[r.target] >= before[r.target]+want-16
	}
	if !counted {
		t.Fatalf("target server %d: session_records %d before the probe, %d 5s after it (every server: before %v, after %v); %d one-shot writes answered OK, want %d counted",
			r.target, before[r.target], peak[r.target], before, peak, res.Statuses["OK"], want)
	}
	t.Logf("session_records before %v, after %d one-shot clients %v", before, res.Answers, peak)
	var after map[int]int64
	testcluster.Eventually(t, 3*ttl+5*time.Second, "session_records back to the baseline", func() bool {
		after = sessionRecords(t, r.c)
		for id, n := range after {
			if n > before[id]+16 { // the honest clients' own open writes
				return false
			}
		}
		return true
	})
	t.Logf("session_records %s after the TTL: %v", ttl, after)
	// The silent client retries its write after its session expired: a
	// definite error, and the write is not applied again.
	f = rawRoundTrip(t, st.Servers[r.target].Addr, write)
	t.Logf("retry after the session expired: %s %q", f.Status, f.Value)
	if f.Status == wire.StatusOK {
		t.Errorf("a write retried after its session expired was answered OK; want SESSION_EXPIRED")
	}
	if v, err := r.h.cl.Get(context.Background(), key); err != nil || string(v) != "second" {
		t.Errorf("after the expired retry %q holds %q (%v), want \"second\": the write was applied twice", key, v, err)
	}
	r.check(64 << 20)
}

// keyOfShard is a key of shard s in a ring of n shards.
func keyOfShard(n, s int) string {
	ring := hashring.New(n)
	for i := 0; ; i++ {
		if k := fmt.Sprintf("hostile/shard%d/%d", s, i); ring.Shard(k) == s {
			return k
		}
	}
}

// rawRoundTrip sends one frame to addr on a connection of its own and
// returns the answer.
func rawRoundTrip(t *testing.T, addr string, frame []byte) wire.Frame {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := nc.Write(frame); err != nil {
		t.Fatal(err)
	}
	f, err := readFrame(bufio.NewReader(nc))
	if err != nil {
		t.Fatalf("%s: no answer: %v", addr, err)
	}
	return f
}
