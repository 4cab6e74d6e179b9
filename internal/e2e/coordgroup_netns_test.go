package e2e

// The coordinator group on namespace hosts: three coordinators, each in a
// network namespace of its own with its Raft, client and servers ports on
// that host's address, and three servers spawned over ssh (real sshd) on
// three more hosts. A blackhole route cuts the leader's host off from the
// other two coordinators while it still reaches every server: the cut-off
// leader must not act, the other two elect a leader that fails over a
// server during the partition, and after the heal the old leader rejoins
// as a follower. Then kill -9 of the leader coordinator inside its
// namespace, and its restart there.

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/nethost"
	"ftkv/internal/testkit/testcluster"
)

// nsGroup is a coordinator group on namespace hosts: servers on hosts
// 1..servers, coordinator k on host servers+1+k.
type nsGroup struct {
	h       *nethost.Hosts
	c       *testcluster.Cluster
	servers int
}

// coordHost is the namespace host coordinator k runs on.
func (g *nsGroup) coordHost(k int) int { return g.servers + 1 + k }

// startNSGroup brings up servers+3 namespace hosts and starts the group.
func startNSGroup(t *testing.T, servers int) *nsGroup {
	t.Helper()
	h := nethost.Up(t, servers+groupCoords)
	g := &nsGroup{h: h, servers: servers}
	var cfg []string
	for _, l := range strings.Split(h.Config(servers), "\n") {
		if !strings.HasPrefix(l, "spare ") { // the coordinators' hosts are no spares
			cfg = append(cfg, l)
		}
	}
	o := testcluster.Options{Coordinators: groupCoords,
		Config: strings.Join(cfg, "\n") + "\nssh_connect_timeout 2\n"}
	for k := 0; k < groupCoords; k++ {
		o.CoordHosts = append(o.CoordHosts, h.Addr(g.coordHost(k)))
		o.CoordWraps = append(o.CoordWraps, []string{"ip", "netns", "exec", h.NS(g.coordHost(k))})
	}
	g.c = startRemote(t, h, servers, "", o)
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		// The coordinators' whole logs, for a look after the test's
		// directory is gone.
		keep, err := os.MkdirTemp("", "ftkv-coordgroup-ns-")
		if err != nil {
			return
		}
		logs, _ := filepath.Glob(filepath.Join(g.c.Dir, "*.log"))
		for _, f := range logs {
			if b, err := os.ReadFile(f); err == nil {
				_ = os.WriteFile(filepath.Join(keep, filepath.Base(f)), b, 0o644)
			}
		}
		t.Logf("logs kept in %s", keep)
	})
	return g
}

// otherCoordAddrs lists the hosts' addresses of every coordinator but k.
func (g *nsGroup) otherCoordAddrs(k int) []string {
	var out []string
	for j := 0; j < groupCoords; j++ {
		if j != k {
			out = append(out, g.h.Addr(g.coordHost(j)))
		}
	}
	return out
}

// followers are the two coordinators other than lead, in index order.
func followers(lead int) (first, second int) {
	var f []int
	for k := 0; k < groupCoords; k++ {
		if k != lead {
			f = append(f, k)
		}
	}
	return f[0], f[1]
}

// termOf is the Raft term in a view's epoch (term << 32 | n).
func termOf(epoch uint64) uint64 { return epoch >> 32 }

// TestCoordGroupLeaderPartition: under load, the leader coordinator's
// host is cut off (blackhole routes, both ways) from the other two
// coordinators while it still reaches every server. The other two elect a
// leader with a higher term; the cut-off one stops claiming the lead and
// changes nothing (every view from then on carries the new term, no
// server is respawned by it); a server killed during the partition is
// failed over, respawned over ssh and recovered by the new leader. After
// the heal the old leader rejoins as a follower with the group's term and
// view. Then kill -9 of the leader coordinator inside its namespace: a new
// leader, a server kill still recovers, and the killed coordinator
// restarted in its namespace catches up. Porcupine and the ledger: nothing
// acknowledged is lost, every answer linearizable.
func TestCoordGroupLeaderPartition(t *testing.T) {
	const n = 3
	g := startNSGroup(t, n)
	c, h := g.c, g.h
	before := c.WaitRecovered(t, remoteRecover)
	for i, s := range before.Servers {
		checkOnHost(t, h, s, i+1)
	}
	for k := 0; k < groupCoords; k++ {
		if info := c.Coord(k); !h.Runs(g.coordHost(k), info.PID) {
			t.Fatalf("coordinator %d (pid %d) is not on host %d", k, info.PID, g.coordHost(k))
		}
	}
	cls := dialClients(c, 4)
	const opTimeout = 30 * time.Second
	w := startWorkload(t, workloadConfig{Clients: cls, Keys: keysOnShards(n, 3, "cg-part"),
		Workers: 8, OpTimeout: opTimeout, Seed: seed(t)})
	l := startLedger(t, cls, 2, "ledger-cg-part", opTimeout)
	waitProgress(t, c, "load before the partition", w.Done, 200, 500*time.Millisecond)

	old := c.LeaderIndex(t)
	oldSt := c.WaitLeader(t, 10*time.Second, func(int) bool { return true })
	t.Logf("partition: coordinator %d (leader, term %d, host %s) <-/-> coordinators on %v",
		old, oldSt.Term, h.Addr(g.coordHost(old)), g.otherCoordAddrs(old))
	cut := time.Now()
	heal := h.Isolate(g.coordHost(old), g.otherCoordAddrs(old)...)
	lead := newLeader(t, c, old, oldSt.Term, cut)
	// The cut-off coordinator stops claiming the lead (its leader lease
	// runs out without a quorum's contact).
	var why error
	deadline := time.Now().Add(electionBound)
	for {
		st, err := c.CoordStatus(old)
		if err == nil && st.Leader != old {
			t.Logf("cut-off coordinator %d reports leader %d, term %d", old, st.Leader, st.Term)
			break
		}
		why = err
		if err == nil {
			why = fmt.Errorf("still reports itself leader (term %d)", st.Term)
		}
		if time.Now().After(deadline) {
			c.Fatalf(t, "cut-off coordinator %d after %s: %v", old, electionBound, why)
		}
		time.Sleep(50 * time.Millisecond)
	}
	samePIDs(t, "after the leader's partition", before, lead)
	waitProgress(t, c, "load during the partition", w.Done, 300, time.Second)

	// A server failover completes under the new leader while the old one
	// is cut off (it still reaches the servers, and must not act).
	start := time.Now()
	v := remoteVictim(t, c, h, 1)
	rec := c.WaitRecovered(t, remoteRecover, v)
	t.Logf("server 1 killed during the partition, recovered after %s: %s", time.Since(start).Round(time.Millisecond), roles(rec, 1))
	checkReplaced(t, before, rec, 1)
	if termOf(rec.Epoch) < lead.Term {
		t.Errorf("epoch %#x after the failover carries term %d, want the new leader's %d", rec.Epoch, termOf(rec.Epoch), lead.Term)
	}
	for i, s := range rec.Servers {
		checkOnHost(t, h, s, i+1)
	}
	if st, err := c.CoordStatus(old); err == nil && st.Leader == old {
		t.Errorf("cut-off coordinator %d claims the lead again (term %d)", old, st.Term)
	}
	waitProgress(t, c, "load after the failover", w.Done, 200, 500*time.Millisecond)

	heal()
	healed := time.Now()
	caughtUp(t, c, old)
	after := c.WaitLeader(t, 10*time.Second, func(int) bool { return true })
	t.Logf("healed: coordinator %d rejoined after %s; leader %d term %d", old, time.Since(healed).Round(time.Millisecond), after.Leader, after.Term)
	if after.Leader == old {
		t.Errorf("the old leader %d leads again after the heal (term %d): it should rejoin as a follower", old, after.Term)
	}
	samePIDs(t, "after the heal", rec, after)
	onlyLeaderWatches(t, g, after.Leader)
	waitProgress(t, c, "load after the heal", w.Done, 200, 500*time.Millisecond)

	// kill -9 of the leader coordinator inside its namespace.
	k := after.Leader
	pid := c.Coord(k).PID
	if !h.Runs(g.coordHost(k), pid) {
		t.Fatalf("leader coordinator %d (pid %d) is not on host %d", k, pid, g.coordHost(k))
	}
	killed := time.Now()
	c.KillCoordK(t, k)
	t.Logf("leader coordinator %d killed (pid %d on host %d)", k, pid, g.coordHost(k))
	lead2 := newLeader(t, c, k, after.Term, killed)
	samePIDs(t, "after the leader kill", after, lead2)
	v2 := remoteVictim(t, c, h, 2)
	rec2 := c.WaitRecovered(t, remoteRecover, v2)
	checkReplaced(t, after, rec2, 2)
	c.RestartCoordK(t, k)
	if !h.Runs(g.coordHost(k), c.Coord(k).PID) {
		t.Errorf("restarted coordinator %d is not on host %d", k, g.coordHost(k))
	}
	caughtUp(t, c, k)
	waitProgress(t, c, "load at the end", w.Done, 200, 500*time.Millisecond)
	stopAndCheck(t, w, l, cls[0])
	t.Logf("ran: 3 coordinators on %s, %s, %s; servers over ssh on %s, %s, %s",
		h.NS(g.coordHost(0)), h.NS(g.coordHost(1)), h.NS(g.coordHost(2)), h.Dest(1), h.Dest(2), h.Dest(3))
}

// onlyLeaderWatches checks the servers' watchers (the ssh sessions a
// coordinator keeps open to learn that a remote server exited): the leader
// keeps at most one per server, a follower none. Before, every takeover
// added a session per server and a coordinator that lost the lead kept
// its own: a group whose lead moved kept piling them up.
func onlyLeaderWatches(t *testing.T, g *nsGroup, leader int) {
	t.Helper()
	var got []int
	deadline := time.Now().Add(5 * time.Second) // the ssh clients of released watchers exit
	for {
		got = got[:0]
		ok := true
		for k := 0; k < groupCoords; k++ {
			n := sshWatchers(g.c.Coord(k).PID)
			got = append(got, n)
			if (k == leader && n > g.servers) || (k != leader && n > 0) {
				ok = false
			}
		}
		if ok {
			t.Logf("servers' watchers (ssh sessions) of coordinators 0..%d: %v, leader %d", groupCoords-1, got, leader)
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("servers' watchers (ssh sessions) of coordinators 0..%d: %v, leader %d; want at most %d for the leader, none for a follower",
				groupCoords-1, got, leader, g.servers)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// sshWatchers counts process pid's children that are ssh sessions
// watching a remote server (coord/ssh.go's watch script).
func sshWatchers(pid int) int {
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	n := 0
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...: comm may hold spaces, so after the last ')'.
		s := string(b)
		fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(fields) < 2 || fields[1] != strconv.Itoa(pid) {
			continue
		}
		cmd, _ := os.ReadFile(filepath.Join(filepath.Dir(f), "cmdline"))
		if strings.Contains(string(cmd), "echo renew") {
			n++
		}
	}
	return n
}

// loadedNSGroup starts a group on namespace hosts with n servers, the
// recorded load (keys named after prefix) and a ledger, and waits until
// the load made progress for a few failure timeouts (a leadership younger
// than that hands nothing on).
func loadedNSGroup(t *testing.T, n int, prefix string) (*nsGroup, *client.ClusterStatus, []*client.Client, *workload, *ledger) {
	t.Helper()
	g := startNSGroup(t, n)
	before := g.c.WaitRecovered(t, remoteRecover)
	cls := dialClients(g.c, 4)
	const opTimeout = 30 * time.Second
	w := startWorkload(t, workloadConfig{Clients: cls, Keys: keysOnShards(n, 3, prefix),
		Workers: 8, OpTimeout: opTimeout, Seed: seed(t)})
	l := startLedger(t, cls, 2, "ledger-"+prefix, opTimeout)
	waitProgress(t, g.c, "load before the cut", w.Done, 200, 4*testcluster.DefaultTimeout)
	return g, before, cls, w, l
}

// TestCoordGroupLeaderCutFromServers: under load, the leader
// coordinator's host is cut off (blackhole routes, both ways) from every
// server's host while it still reaches the other coordinators and the
// clients. No heartbeat reaches it and none of its views reaches a server.
// A review saw it keep the lead for the whole cut (16 s, 40 s): the views
// it committed reached no server, so every fresh client met STALE_EPOCH on
// every shard until the heal. The lead must go to a coordinator that
// reaches the servers: a new leader within a few failure timeouts, a
// fresh client writes every shard soon after the cut, the servers keep
// running (nothing respawned), the old leader follows after the heal, and
// nothing acknowledged is lost.
func TestCoordGroupLeaderCutFromServers(t *testing.T) { leaderCutFromServers(t, 3) }

// TestCoordGroupLeaderCutFromTwoServers: the same with the leader cut off
// from two of the three servers only. The review saw it fail one over and
// drop the other as a secondary, whose shard it then led alone without
// ever getting the view: the shard refused every fresh client for the
// whole cut (20 s).
func TestCoordGroupLeaderCutFromTwoServers(t *testing.T) { leaderCutFromServers(t, 2) }

// leaderCutFromServers cuts the leader off from the hosts of servers
// 0..cut-1 (of three).
func leaderCutFromServers(t *testing.T, unheard int) {
	const n = 3
	g, before, cls, w, l := loadedNSGroup(t, n, "cg-deaf")
	c, h := g.c, g.h
	oldSt := c.WaitLeader(t, 10*time.Second, func(int) bool { return true })
	old := oldSt.Leader
	var servers []string
	for i := 1; i <= unheard; i++ {
		servers = append(servers, h.Addr(i))
	}
	t.Logf("cut: coordinator %d (leader, term %d, host %s) <-/-> servers on %v", old, oldSt.Term, h.Addr(g.coordHost(old)), servers)
	cut := time.Now()
	heal := h.Isolate(g.coordHost(old), servers...)
	// The leader asks the others as soon as it misses servers' heartbeats,
	// and they reach every server.
	bound := 12 * testcluster.DefaultTimeout
	st := c.WaitLeader(t, 3*bound, func(k int) bool { return k != old })
	took := time.Since(cut)
	t.Logf("coordinator %d leads %s after the cut (term %d -> %d)", st.Leader, took.Round(time.Millisecond), oldSt.Term, st.Term)
	if took > bound {
		t.Errorf("a coordinator that hears the servers took the lead %s after the cut, want at most %s", took.Round(time.Millisecond), bound)
	}
	// The cut-off leader handed the lead over (not an election for
	// another reason).
	raw, _ := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("ftkv-coord-%d.log", old)))
	if n := strings.Count(string(raw), handOffLine); n != 1 || handOffs(c) != 1 {
		t.Errorf("coordinator %d logged %d hand-offs of the lead (%d in all), want 1", old, n, handOffs(c))
	}
	// A client that fetches the view now writes every shard.
	fresh := c.Client()
	defer fresh.Close()
	for s := 0; s < n; s++ {
		key := keysOnShard(n, s, 1, "cg-deaf-fresh")[0]
		ctx, cancel := context.WithTimeout(context.Background(), 3*bound)
		err := fresh.Put(ctx, key, []byte("after the cut"))
		cancel()
		if err != nil {
			c.Fatalf(t, "fresh client: put on shard %d %s after the cut: %v", s, time.Since(cut).Round(time.Millisecond), err)
		}
		t.Logf("fresh client wrote shard %d %s after the cut", s, time.Since(cut).Round(time.Millisecond))
	}
	if d := time.Since(cut); d > bound+5*testcluster.DefaultTimeout {
		t.Errorf("every shard writable by a fresh client only %s after the cut, want at most %s", d.Round(time.Millisecond), bound+5*testcluster.DefaultTimeout)
	}
	waitProgress(t, c, "load during the cut", w.Done, 300, time.Second)
	during := c.WaitRecovered(t, remoteRecover)
	// (Cut from some servers only, the leader still hears the rest: it
	// handed the lead on before its core failed one it did not hear.)
	samePIDs(t, "during the cut", before, during)
	// The lead stays where it went: no coordinator hands it back and
	// forth.
	if again := c.WaitLeader(t, 10*time.Second, func(int) bool { return true }); again.Leader != st.Leader || again.Term != st.Term {
		t.Errorf("the lead moved again during the cut: coordinator %d term %d, then coordinator %d term %d", st.Leader, st.Term, again.Leader, again.Term)
	}

	heal()
	caughtUp(t, c, old)
	after := c.WaitLeader(t, 10*time.Second, func(int) bool { return true })
	t.Logf("healed: leader %d term %d", after.Leader, after.Term)
	samePIDs(t, "after the heal", during, after)
	waitProgress(t, c, "load after the heal", w.Done, 200, 500*time.Millisecond)
	stopAndCheck(t, w, l, cls[0])
}

// TestCoordGroupLeaderCutNobodyReachesAll: the leader's host is cut from
// servers 1 and 2, one follower's from server 1 only, the other's from
// both: no coordinator reaches every server, and the first follower
// reaches the most. The leader hands it the lead before its own core
// fails a server it does not hear (server 2: its shard's secondary,
// server 0, is heard), so server 2, which the new leader reaches, is
// never failed over or respawned; server 1, which nobody reaches, is
// failed over by the new leader (and respawned after the heal). Before,
// the leader probed the servers and then asked the others, whose probes
// took as long (a dial to a cut-off server): the transfer came after the
// failure timeout, and the old leader had failed server 2. Porcupine and
// the ledger: nothing acknowledged lost.
func TestCoordGroupLeaderCutNobodyReachesAll(t *testing.T) {
	const n = 3
	g, before, cls, w, l := loadedNSGroup(t, n, "cg-most")
	c, h := g.c, g.h
	oldSt := c.WaitLeader(t, 10*time.Second, func(int) bool { return true })
	old := oldSt.Leader
	most, least := followers(old)
	// Server i runs on host i+1. The followers' cuts first: they change
	// nothing until the leader's.
	healMost := h.Isolate(g.coordHost(most), h.Addr(2))
	healLeast := h.Isolate(g.coordHost(least), h.Addr(2), h.Addr(3))
	t.Logf("cut: coordinator %d (leader, term %d) from servers 1 and 2, coordinator %d from server 1, coordinator %d from servers 1 and 2",
		old, oldSt.Term, most, least)
	cut := time.Now()
	healOld := h.Isolate(g.coordHost(old), h.Addr(2), h.Addr(3))
	bound := 12 * testcluster.DefaultTimeout
	st := c.WaitLeader(t, 3*bound, func(k int) bool { return k != old })
	t.Logf("coordinator %d leads %s after the cut (term %d -> %d)", st.Leader, time.Since(cut).Round(time.Millisecond), oldSt.Term, st.Term)
	if st.Leader != most {
		t.Errorf("coordinator %d took the lead, want %d (the one that reaches two servers)", st.Leader, most)
	}
	if n := handOffs(c); n != 1 {
		t.Errorf("%d hand-offs of the lead, want 1", n)
	}
	// Server 1 is reached by nobody: the new leader fails it over (its
	// respawn on its host fails while the cut lasts).
	c.WaitFor(t, 3*bound, "server 1 failed over", func(s *client.ClusterStatus) error {
		if s.Servers[1].PID == before.Servers[1].PID && s.Servers[1].Incarnation == before.Servers[1].Incarnation {
			return fmt.Errorf("server 1 still incarnation %d", s.Servers[1].Incarnation)
		}
		return nil
	})
	waitProgress(t, c, "load during the cut", w.Done, 300, time.Second)
	during := c.Status(t)
	for _, i := range []int{0, 2} {
		if a, b := during.Servers[i], before.Servers[i]; a.PID != b.PID || a.Incarnation != b.Incarnation {
			t.Errorf("server %d, which the new leader reaches, changed during the cut: pid %d -> %d, incarnation %d -> %d",
				i, b.PID, a.PID, b.Incarnation, a.Incarnation)
		}
	}

	healOld()
	healMost()
	healLeast()
	caughtUp(t, c, old)
	after := c.WaitRecovered(t, remoteRecover)
	t.Logf("healed: leader %d, server 1 incarnation %d", c.WaitLeader(t, 10*time.Second, func(int) bool { return true }).Leader, after.Servers[1].Incarnation)
	waitProgress(t, c, "load after the heal", w.Done, 200, 500*time.Millisecond)
	stopAndCheck(t, w, l, cls[0])
}

// TestCoordGroupElectedCutFromServers: a coordinator cut off from every
// server (while it reaches the other coordinators) wins the election
// after the leader dies. It must not take the servers for dead: it hands
// the lead to the coordinator that reaches them, and no server is killed
// or started again. (A review: such a coordinator, elected when the
// leader stalled, found no server answering, took it for a power cut and
// restarted the cluster from the servers' logs; over ssh, through the
// cut, it failed at that for 28 s, and every server was replaced after.)
// To make the cut-off one win, the other follower is cut from the leader
// while a server is killed and recovered: its log is behind, and Raft
// elects only a member whose log is as new as a majority's.
func TestCoordGroupElectedCutFromServers(t *testing.T) { electedCutFrom(t, 3) }

// TestCoordGroupElectedCutFromOneServer: the same with the elected
// coordinator cut from server 2 only. It must not fail that server over
// (the others reach it): before, its core failed it half a second into
// the takeover, before any hand-off could be asked for, and the server
// stayed down, its respawn failing through the cut (a review: 12-24 s).
func TestCoordGroupElectedCutFromOneServer(t *testing.T) { electedCutFrom(t, 1) }

// electedCutFrom runs the elections above with the elected coordinator
// cut from the last cut servers.
func electedCutFrom(t *testing.T, cut int) {
	const n = 3
	g, _, cls, w, l := loadedNSGroup(t, n, "cg-elect")
	c, h := g.c, g.h
	lead := c.WaitLeader(t, 10*time.Second, func(int) bool { return true }).Leader
	cutOff, behind := followers(lead)
	var servers []string
	for i := n - cut; i < n; i++ {
		servers = append(servers, h.Addr(i+1))
	}
	healCutOff := h.Isolate(g.coordHost(cutOff), servers...)
	// Both ways: a blackhole route on behind's host only drops what
	// behind sends. The leader's segments on Raft connections already
	// open still arrive (their acks are dropped): a busy one carries
	// new entries for a retransmission timeout, an idle pooled one its
	// next request whenever it comes, and the leader's replication falls
	// back to one when its pipeline times out. Behind then caught up
	// with every entry committed so far and won the election. The route
	// on the leader's host stops its sends on open connections too.
	healFrom := h.Isolate(g.coordHost(behind), h.Addr(g.coordHost(lead)))
	healTo := h.Isolate(g.coordHost(lead), h.Addr(g.coordHost(behind)))
	healBehind := func() { healTo(); healFrom() }
	t.Logf("coordinator %d cut from servers on %v, coordinator %d from the leader %d (both ways)", cutOff, servers, behind, lead)
	// The cut holds once behind's Raft misses the leader.
	lost := func() int {
		raw, _ := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("ftkv-coord-%d.log", behind)))
		return strings.Count(string(raw), "heartbeat timeout reached")
	}
	for n0, deadline := lost(), time.Now().Add(electionBound); lost() == n0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			c.Fatalf(t, "coordinator %d still hears the leader %s after the cut", behind, electionBound)
		}
	}
	v := c.KillServer(t, 0)
	rec := c.WaitRecovered(t, remoteRecover, v)
	waitProgress(t, c, "load after server 0's recovery", w.Done, 200, 500*time.Millisecond)

	c.KillCoordK(t, lead)
	healBehind()
	died := time.Now()
	bound := 12 * testcluster.DefaultTimeout
	st := c.WaitLeader(t, 3*bound, func(k int) bool { return k == behind })
	t.Logf("coordinator %d leads %s after the leader died (term %d)", st.Leader, time.Since(died).Round(time.Millisecond), st.Term)
	raw, _ := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("ftkv-coord-%d.log", cutOff)))
	if !strings.Contains(string(raw), `"leading the coordinators"`) {
		t.Errorf("coordinator %d never led: the scenario did not happen", cutOff)
	} else if !strings.Contains(string(raw), "servers unreached at takeover") {
		t.Errorf("coordinator %d led and did not hand the lead on", cutOff)
	}
	if d := time.Since(died); d > bound {
		t.Errorf("the coordinator that reaches the servers led only %s after the leader died, want at most %s", d.Round(time.Millisecond), bound)
	}
	waitProgress(t, c, "load under the new leader", w.Done, 300, time.Second)
	samePIDs(t, "after the election", rec, c.WaitRecovered(t, remoteRecover))

	healCutOff()
	rejoinAndCheck(t, c, lead, cutOff, w, l, cls[0])
}

// rejoinAndCheck restarts the killed coordinator dead, waits until it and
// coordinator other caught up with the group, and checks the load and
// the ledger.
func rejoinAndCheck(t *testing.T, c *testcluster.Cluster, dead, other int, w *workload, l *ledger, cl *client.Client) {
	t.Helper()
	c.RestartCoordK(t, dead)
	caughtUp(t, c, dead)
	caughtUp(t, c, other)
	waitProgress(t, c, "load after the heal", w.Done, 200, 500*time.Millisecond)
	stopAndCheck(t, w, l, cl)
}

// TestCoordGroupNewLeaderCutSoon: the leader coordinator is killed, and
// the one elected in its place is cut from server 2's host a moment
// after it took the cluster over (silently: its dials there time out).
// The third coordinator reaches every server, so the new leader must
// hand it the lead before its core fails server 2 (whose secondary it
// still hears): server 2 is never failed
// over or respawned. Before, a leadership asked nobody for its first two
// failure timeouts, and its core failed server 2 a failure timeout after
// the cut (an attack saw the server then stay down through the cut, its
// respawn failing over ssh). Porcupine and the ledger: nothing
// acknowledged lost.
func TestCoordGroupNewLeaderCutSoon(t *testing.T) {
	const n = 3
	g, before, cls, w, l := loadedNSGroup(t, n, "cg-soon")
	c, h := g.c, g.h
	first := c.WaitLeader(t, 10*time.Second, func(int) bool { return true })
	took := func(k int) int {
		raw, _ := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("ftkv-coord-%d.log", k)))
		return strings.Count(string(raw), `"taking over running servers"`)
	}
	var tookOver [groupCoords]int
	for k := range tookOver {
		tookOver[k] = took(k)
	}
	c.KillCoordK(t, first.Leader)
	// The cut comes as soon as the new leader has taken the servers over
	// (its log says so): its core's grace, one failure timeout, is not
	// over.
	lead := -1
	for deadline := time.Now().Add(30 * time.Second); lead < 0; time.Sleep(10 * time.Millisecond) {
		for k := range tookOver {
			if k != first.Leader && took(k) > tookOver[k] {
				lead = k
			}
		}
		if time.Now().After(deadline) {
			c.Fatalf(t, "no coordinator took the servers over 30s after the leader's kill")
		}
	}
	cut := time.Now()
	// The route is cut on the server's host: the leader's dials there
	// go unanswered (its probe takes its whole third of the failure
	// timeout), where a route cut on its own host fails them at once.
	heal := h.Isolate(3, h.Addr(g.coordHost(lead)))
	t.Logf("coordinator %d (leader since the kill of %d) cut from server 2's host as it took the servers over", lead, first.Leader)
	bound := 12 * testcluster.DefaultTimeout
	next := c.WaitLeader(t, 3*bound, func(k int) bool { return k != lead && k != first.Leader })
	d := time.Since(cut)
	t.Logf("coordinator %d leads %s after the cut (term %d)", next.Leader, d.Round(time.Millisecond), next.Term)
	if d > bound {
		t.Errorf("the coordinator that reaches every server took the lead %s after the cut, want at most %s", d.Round(time.Millisecond), bound)
	}
	if n := handOffs(c); n != 1 {
		t.Errorf("%d hand-offs of the lead logged, want 1", n)
	}
	waitProgress(t, c, "load after the hand-off", w.Done, 300, time.Second)
	samePIDs(t, "during the cut", before, c.WaitRecovered(t, remoteRecover))

	heal()
	rejoinAndCheck(t, c, first.Leader, lead, w, l, cls[0])
}

// TestCoordGroupCutMembersElectedWhileLeaderStalls: both followers are
// cut from every server's host, and the leader, the only coordinator that
// reaches the servers, is stopped (SIGSTOP) for longer than a takeover
// waits for its answer. One of the cut followers is elected, reaches no
// server and hears nothing from the stopped one. It must not restart the
// cluster from the servers' logs (no host refused its dials: nothing says
// the servers died): before, it did, failed through the cut, and once the
// cut healed replaced every server that had run on all along (an attack,
// with a pause of 5 s). The lead must end with a coordinator that reaches
// the servers, the servers never replaced. Porcupine and the ledger:
// nothing acknowledged lost.
func TestCoordGroupCutMembersElectedWhileLeaderStalls(t *testing.T) {
	const n = 3
	g, before, cls, w, l := loadedNSGroup(t, n, "cg-stall")
	c, h := g.c, g.h
	lead := c.WaitLeader(t, 10*time.Second, func(int) bool { return true }).Leader
	f1, f2 := followers(lead)
	var servers []string
	for i := 1; i <= n; i++ {
		servers = append(servers, h.Addr(i))
	}
	heal1 := h.Isolate(g.coordHost(f1), servers...)
	heal2 := h.Isolate(g.coordHost(f2), servers...)
	// Longer than an election and the takeover's four failure timeouts
	// of asking again.
	stall := electionBound + 6*testcluster.DefaultTimeout
	t.Logf("coordinators %d and %d cut from every server; leader %d stopped for %s", f1, f2, lead, stall)
	c.StopCoordK(t, lead)
	time.Sleep(stall)
	c.ContCoordK(t, lead)
	time.Sleep(2 * time.Second)
	heal1()
	heal2()
	t.Logf("leader %d continued, cuts healed 2s later", lead)
	st := c.WaitLeader(t, 3*electionBound, func(int) bool { return true })
	t.Logf("coordinator %d leads (term %d)", st.Leader, st.Term)
	waitProgress(t, c, "load after the heal", w.Done, 300, time.Second)
	after := c.WaitRecovered(t, remoteRecover)
	samePIDs(t, "after the stall and the heal", before, after)
	for k := 0; k < groupCoords; k++ {
		raw, _ := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("ftkv-coord-%d.log", k)))
		if strings.Contains(string(raw), "restarting it from the servers' logs") {
			t.Errorf("coordinator %d restarted the running cluster from the servers' logs", k)
		}
	}
	stopAndCheck(t, w, l, cls[0])
}
