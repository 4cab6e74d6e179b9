package e2e

// Servers on other hosts: every test here makes its own hosts as
// network namespaces with their own addresses and real sshd (package
// nethost), and the coordinator spawns the servers there with the system
// ssh client. Faults are real: kill -9 inside a host's namespace, a host's
// processes killed and its link taken down, a blackhole route between a
// host and the coordinator, a missing binary and a refused key.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/nethost"
	"ftkv/internal/testkit/testcluster"
)

// remoteRecover bounds kill -> recovered for servers spawned over ssh: each
// ssh command costs a connection set-up (over a second here, mostly the
// remote login shell's rc files).
const remoteRecover = 60 * time.Second

// startRemote starts a cluster whose servers run on hosts 1..servers of h
// (the rest are spares), with extra config lines appended.
func startRemote(t *testing.T, h *nethost.Hosts, servers int, extra string, o testcluster.Options) *testcluster.Cluster {
	t.Helper()
	o.Config = h.Config(servers) + extra
	if o.Wrap != nil {
		// The coordinator's own host is no spare.
		var keep []string
		for _, l := range strings.Split(o.Config, "\n") {
			if !strings.HasPrefix(l, "spare ") {
				keep = append(keep, l)
			}
		}
		o.Config = strings.Join(keep, "\n")
	}
	c := testcluster.Start(t, o)
	t.Cleanup(func() {
		if t.Failed() {
			for i := 0; i < servers; i++ {
				b, _ := os.ReadFile(filepath.Join(c.Dir, fmt.Sprintf("server_%d.log", i)))
				t.Logf("server_%d.log (tail):\n%s", i, tailLines(string(b), 25))
			}
		}
	})
	return c
}

func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// hostOf returns which host of h server s runs on (0 when none).
func hostOf(h *nethost.Hosts, s client.ServerStatus) int {
	for i := 1; i <= h.N; i++ {
		if s.Host == h.Dest(i) {
			return i
		}
	}
	return 0
}

// checkOnHost asserts that server s runs on host i as the status says: its
// host is host i's ssh destination, its address is on host i, and its pid
// is a bin/server process of that id inside host i's namespace.
func checkOnHost(t *testing.T, h *nethost.Hosts, s client.ServerStatus, i int) {
	t.Helper()
	if s.Host != h.Dest(i) {
		t.Errorf("server %d: host %q, want %q", s.ID, s.Host, h.Dest(i))
	}
	if host, _, err := net.SplitHostPort(s.Addr); err != nil || host != h.Addr(i) {
		t.Errorf("server %d: addr %q, want host %s", s.ID, s.Addr, h.Addr(i))
	}
	if !h.Runs(i, s.PID) {
		t.Errorf("server %d: pid %d is not a process on host %d (%s)", s.ID, s.PID, i, h.NS(i))
		return
	}
	cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.PID))
	args := strings.Split(string(cmdline), "\x00")
	if len(args) < 3 || filepath.Base(args[0]) != "server" || args[1] != "-id" || args[2] != fmt.Sprint(s.ID) {
		t.Errorf("server %d: pid %d runs %q, want bin/server -id %d", s.ID, s.PID, args, s.ID)
	}
}

// remoteVictim kills server id's current incarnation with kill -9, by its
// pid, inside the namespace of the host it runs on.
func remoteVictim(t *testing.T, c *testcluster.Cluster, h *nethost.Hosts, id int) testcluster.Victim {
	t.Helper()
	s := c.Status(t).Servers[id]
	i := hostOf(h, s)
	if i == 0 {
		t.Fatalf("server %d runs on %q, not one of the test's hosts", id, s.Host)
	}
	h.Kill9(i, s.PID)
	return testcluster.Victim{ID: id, PID: s.PID, Incarnation: s.Incarnation}
}

// TestRemoteCluster: three servers on three namespace
// hosts, spawned over ssh by a coordinator in the root namespace, serve P/G
// from bin/client; status shows the remote addresses and the remote pids;
// shutdown dumps every server's tables in its working directory.
func TestRemoteCluster(t *testing.T) {
	h := nethost.Up(t, 3)
	c := startRemote(t, h, 3, "", testcluster.Options{})
	bin := c.Bin
	// P/G over the CLI, on keys of every shard.
	keys := keysOnShards(3, 2, "remote")
	var script, want strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&script, "P %q %q\nG %q\n", k, "value of "+k, k)
		fmt.Fprintf(&want, "OK\nvalue of %s\n", k)
	}
	r := runCLI(t, bin, c.Addr, script.String())
	if r.code != 0 || r.stdout != want.String() {
		t.Fatalf("session: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := runCLI(t, bin, c.Addr, "", "G", keys[0]); r.code != 0 || r.stdout != "value of "+keys[0]+"\n" {
		t.Fatalf("one-shot G: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	r = runCLI(t, bin, c.Addr, "", "status", "--json")
	var st client.ClusterStatus
	if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || r.code != 0 {
		t.Fatalf("status --json: exit %d, %v: %q", r.code, err, r.stdout)
	}
	if len(st.Servers) != 3 {
		t.Fatalf("status lists %d servers", len(st.Servers))
	}
	for i, s := range st.Servers {
		if s.State != "serving" {
			t.Errorf("server %d is %q", i, s.State)
		}
		checkOnHost(t, h, s, i+1)
	}
	table := runCLI(t, bin, c.Addr, "", "status").stdout
	for i := 1; i <= 3; i++ {
		if !strings.Contains(table, h.Addr(i)+":") || !strings.Contains(table, h.Dest(i)) {
			t.Errorf("status table lacks host %d (%s):\n%s", i, h.Dest(i), table)
		}
	}
	pids := []int{st.Servers[0].PID, st.Servers[1].PID, st.Servers[2].PID}
	if err := c.Shutdown(15 * time.Second); err != nil {
		t.Fatalf("shutdown: %v\n%s", err, c.Stderr())
	}
	for i, pid := range pids {
		if h.Runs(i+1, pid) {
			t.Errorf("server %d (pid %d) still runs on host %d after shutdown", i, pid, i+1)
		}
		for _, kind := range []string{"primary", "secondary"} {
			if fi, err := os.Stat(filepath.Join(c.Dir, fmt.Sprintf("server_%d.%s", i, kind))); err != nil || fi.Size() == 0 {
				t.Errorf("server_%d.%s in the remote working directory: %v", i, kind, err)
			}
		}
	}
	t.Logf("ran: 3 servers over ssh on namespace hosts %s, %s, %s", h.Dest(1), h.Dest(2), h.Dest(3))
}

// TestRemoteKill: kill -9 of a remote server by its
// pid inside its namespace, under load: it is respawned over ssh on its own
// host, re-seeded and handed its shard back; porcupine finds the history
// linearizable and every acknowledged ledger put is there.
func TestRemoteKill(t *testing.T) {
	const n = 3
	h := nethost.Up(t, n)
	c := startRemote(t, h, n, "", testcluster.Options{})
	cls := dialClients(c, 4)
	c.WaitRecovered(t, 10*time.Second)
	w := startWorkload(t, workloadConfig{Clients: cls, Keys: keysOnShards(n, 3, "remote-kill"),
		Workers: 8, OpTimeout: foOpTimeout, Seed: seed(t)})
	l := startLedger(t, cls, 2, "ledger-remote-kill", foOpTimeout)
	waitProgress(t, c, "load before the kill", w.Done, 200, 500*time.Millisecond)
	for _, victim := range []int{1, 0} {
		before := c.Status(t)
		t.Logf("kill -9 in %s: %s", h.NS(victim+1), roles(before, victim))
		start := time.Now()
		v := remoteVictim(t, c, h, victim)
		after := c.WaitRecovered(t, remoteRecover, v)
		t.Logf("recovered %s after %s", roles(after, victim), time.Since(start).Round(time.Millisecond))
		for i, s := range after.Servers {
			checkOnHost(t, h, s, i+1) // respawned on its own host
			b := before.Servers[i]
			if i != victim && (s.PID != b.PID || s.Incarnation != b.Incarnation) {
				t.Errorf("server %d was not killed but changed: pid %d -> %d", i, b.PID, s.PID)
			}
		}
		waitProgress(t, c, "load after recovery", w.Done, 200, 500*time.Millisecond)
	}
	stopAndCheck(t, w, l, cls[0])
	t.Logf("ran: kill -9 of remote servers over real sshd")
}

// TestRemoteHostDown: a whole host goes down (every
// process on it killed, sshd included, and its link down). Respawning there
// keeps failing, so the server moves to the spare host; the view carries
// its new address, clients follow, no call fails and nothing acknowledged
// is lost.
func TestRemoteHostDown(t *testing.T) {
	const n = 3
	h := nethost.Up(t, n+1) // host 4 is the spare
	c := startRemote(t, h, n, "ssh_connect_timeout 2\n", testcluster.Options{})
	cls := dialClients(c, 4)
	c.WaitRecovered(t, 10*time.Second)
	w := startWorkload(t, workloadConfig{Clients: cls, Keys: keysOnShards(n, 3, "host-down"),
		Workers: 8, OpTimeout: 30 * time.Second, Seed: seed(t)})
	l := startLedger(t, cls, 2, "ledger-host-down", 30*time.Second)
	waitProgress(t, c, "load before the host goes down", w.Done, 200, 500*time.Millisecond)

	const victim = 1
	before := c.Status(t)
	t.Logf("host %d (%s) goes down: %s", victim+1, h.Dest(victim+1), roles(before, victim))
	start := time.Now()
	h.HostDown(victim + 1)
	v := testcluster.Victim{ID: victim, PID: before.Servers[victim].PID, Incarnation: before.Servers[victim].Incarnation}
	after := c.WaitRecovered(t, 2*remoteRecover, v)
	t.Logf("recovered on the spare after %s: %s", time.Since(start).Round(time.Millisecond), roles(after, victim))
	checkOnHost(t, h, after.Servers[victim], n+1)
	for i, s := range after.Servers {
		if i != victim {
			checkOnHost(t, h, s, i+1)
		}
	}
	log := c.Log()
	if !strings.Contains(log, "moving the server to a spare host") {
		t.Errorf("no log line about the move to the spare host")
	}
	if k := strings.Count(log, `"respawn failed"`); k < 3 {
		t.Errorf("%d failed respawns logged before the move, want >= 3", k)
	}
	waitProgress(t, c, "load on the spare", w.Done, 200, 500*time.Millisecond)
	stopAndCheck(t, w, l, cls[0])
	// A client that never saw the old address finds the server at the new one.
	fresh := c.Client()
	for _, k := range keysOnShard(n, victim, 5, "after-move") {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if err := fresh.Put(ctx, k, []byte("x")); err != nil {
			t.Errorf("put %q on the moved shard: %v", k, err)
		}
		cancel()
	}
	t.Logf("ran: host down, server moved to spare host %s", h.Dest(n+1))
}

// TestRemoteUnpluggedPrimary: the host of shard 1's primary drops off the
// network with its server still running (a power cut, a dead switch
// port): nothing closes the clients' connections to it, and no packet
// comes back from it, not even a reset. The coordinator moves its shard to
// the secondary and the server to the spare host. Requests that were
// waiting on the lost host when it went must follow the shard there; no
// call may fail within its timeout, none may take 5 s. The client's own
// connections set TCP_USER_TIMEOUT (internal/netopt, 2 s: the host's
// kernel acknowledges nothing), which ends such a wait by itself; these
// clients dial with a plain dialer (as one passed with client.WithDialer
// may be), so only the client's watchOverdue can. Before it, their calls
// in flight on the lost host waited out their 20 s (without a deadline,
// TCP's retransmissions: about 15 minutes).
func TestRemoteUnpluggedPrimary(t *testing.T) {
	const n, victim = 3, 1
	h := nethost.Up(t, n+1) // host 4 is the spare
	c := startRemote(t, h, n, "ssh_connect_timeout 2\n", testcluster.Options{})
	plain := client.WithDialer((&net.Dialer{Timeout: 2 * time.Second, KeepAlive: -1}).DialContext)
	cls := make([]*client.Client, 4)
	for i := range cls {
		cls[i] = c.Client(plain, client.WithConnsPerServer(1+i%2))
	}
	before := c.WaitRecovered(t, 10*time.Second)
	const opTimeout = 20 * time.Second
	w := startWorkload(t, workloadConfig{Clients: cls, Keys: keysOnShards(n, 3, "unplugged"),
		Workers: 8, OpTimeout: opTimeout, Seed: seed(t)})
	l := startLedger(t, cls, 2, "ledger-unplugged", opTimeout)
	waitProgress(t, c, "load before the unplug", w.Done, 200, 500*time.Millisecond)

	t.Logf("host %d (%s) unplugged: %s", victim+1, h.Dest(victim+1), roles(before, victim))
	start := time.Now()
	h.Unplug(victim + 1)
	defer h.Plug(victim + 1)
	st := c.WaitFor(t, 30*time.Second, "failover of the unplugged primary", func(st *client.ClusterStatus) error {
		if !slices.Contains(st.Servers[victim+1].PrimaryOf, victim) {
			return fmt.Errorf("shard %d primary not moved: server %d primary of %v", victim, victim+1, st.Servers[victim+1].PrimaryOf)
		}
		return nil
	})
	t.Logf("failed over to server %d after %s (epoch %d)", victim+1, time.Since(start).Round(time.Millisecond), st.Epoch)
	if !h.Runs(victim+1, before.Servers[victim].PID) {
		t.Fatalf("the unplugged server's process is gone: the test would prove nothing")
	}
	// Every worker must get on: none may sit on a call to the lost host.
	waitProgress(t, c, "load after the failover", w.Done, 300, 5*time.Second)
	w.Stop()
	var longest time.Duration
	for _, op := range w.hist.operations() {
		if op.Output.(kvOutput).unknown {
			continue // (failed: counted by stopAndCheck; its return is open)
		}
		if d := time.Duration(op.Return - op.Call); d > longest {
			longest = d
		}
	}
	t.Logf("longest call across the unplug: %s", longest.Round(time.Millisecond))
	if longest > 5*time.Second {
		t.Errorf("a call took %s: it waited on the unplugged host instead of following its shard", longest.Round(time.Millisecond))
	}
	stopAndCheck(t, w, l, cls[0])
	t.Logf("ran: a primary's host unplugged with its server running")
}

// TestRemotePartition: the coordinator runs on a host
// of its own; a blackhole route cuts the primary of shard 1 off from the
// coordinator (both ways) while clients and its neighbours still reach it.
// The coordinator fails it over and cannot kill or respawn it until the
// partition heals; meanwhile the cut-off server must neither acknowledge a
// write nor serve a stale read (porcupine), no acknowledged write is lost
// and every shard keeps serving. After the heal the cluster recovers fully.
func TestRemotePartition(t *testing.T) {
	const n, victim = 3, 1
	h := nethost.Up(t, n+1) // host 4 runs the coordinator
	ch := n + 1
	c := startRemote(t, h, n, "ssh_connect_timeout 2\n", testcluster.Options{
		Wrap: []string{"ip", "netns", "exec", h.NS(ch)}, AddrHost: h.Addr(ch),
	})
	cls := dialClients(c, 4)
	before := c.WaitRecovered(t, 10*time.Second)
	w := startWorkload(t, workloadConfig{Clients: cls, Keys: keysOnShards(n, 3, "partition"),
		Workers: 8, OpTimeout: 30 * time.Second, Seed: seed(t)})
	l := startLedger(t, cls, 2, "ledger-partition", 30*time.Second)
	waitProgress(t, c, "load before the partition", w.Done, 200, 500*time.Millisecond)

	t.Logf("partition: host %d (%s) <-/-> coordinator on host %d (%s); %s", victim+1, h.Dest(victim+1), ch, h.Addr(ch), roles(before, victim))
	h.Partition(victim+1, h.Addr(ch))
	healed := false
	defer func() {
		if !healed {
			h.Heal(victim+1, h.Addr(ch))
		}
	}()
	// Failed over: shard 1 is led by its former secondary, and the old
	// incarnation still runs on the cut-off host.
	st := c.WaitFor(t, 30*time.Second, "failover of the cut-off primary", func(st *client.ClusterStatus) error {
		if !slices.Contains(st.Servers[victim+1].PrimaryOf, victim) {
			return fmt.Errorf("shard %d primary not moved: server %d primary of %v", victim, victim+1, st.Servers[victim+1].PrimaryOf)
		}
		return nil
	})
	t.Logf("failed over to server %d (epoch %d)", victim+1, st.Epoch)
	if !h.Runs(victim+1, before.Servers[victim].PID) {
		t.Fatalf("the cut-off server's process is gone: the test would prove nothing")
	}
	// Service continues on every shard while the partition lasts.
	waitProgress(t, c, "load during the partition", w.Done, 300, 3*time.Second)
	if !h.Runs(victim+1, before.Servers[victim].PID) {
		t.Logf("note: the cut-off incarnation exited during the partition")
	}
	h.Heal(victim+1, h.Addr(ch))
	healed = true
	v := testcluster.Victim{ID: victim, PID: before.Servers[victim].PID, Incarnation: before.Servers[victim].Incarnation}
	after := c.WaitRecovered(t, 2*remoteRecover, v)
	t.Logf("recovered after the heal: %s", roles(after, victim))
	checkOnHost(t, h, after.Servers[victim], victim+1)
	testcluster.Eventually(t, 20*time.Second, "the old incarnation gone from its host", func() bool {
		return !h.Runs(victim+1, v.PID)
	})
	waitProgress(t, c, "load after the heal", w.Done, 200, 500*time.Millisecond)
	stopAndCheck(t, w, l, cls[0])
	t.Logf("ran: partition between a primary's host and the coordinator")
}

// retryLines returns the "respawn failed" log lines of server id that
// carry want in their error.
func retryLines(log string, id int, want string) []string {
	var out []string
	for _, line := range strings.Split(log, "\n") {
		if strings.Contains(line, `"respawn failed"`) && strings.Contains(line, fmt.Sprintf(`"node":%d,`, id)) &&
			strings.Contains(line, want) {
			out = append(out, line)
		}
	}
	return out
}

var retryInRE = regexp.MustCompile(`"retry_in_ms":([0-9.]+)`)

// checkBackoff asserts at least two attempts with a growing retry delay.
func checkBackoff(t *testing.T, what string, lines []string) {
	t.Helper()
	if len(lines) < 2 {
		t.Errorf("%s: %d failed respawns logged, want a retry", what, len(lines))
		return
	}
	var delays []string
	for _, l := range lines {
		if m := retryInRE.FindStringSubmatch(l); m != nil {
			delays = append(delays, m[1])
		}
	}
	t.Logf("%s: %d attempts; first: %s; retry_in (ms): %v", what, len(lines), lines[0], delays)
	if len(delays) >= 2 && delays[0] == delays[1] {
		t.Errorf("%s: retry delay did not grow: %v", what, delays)
	}
}

// checkAllShards writes and reads a key on every shard.
func checkAllShards(t *testing.T, cl *client.Client, n int, prefix string) {
	t.Helper()
	for s := 0; s < n; s++ {
		k := keysOnShard(n, s, 1, prefix)[0]
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		err := cl.Put(ctx, k, []byte(prefix))
		if err == nil {
			var v []byte
			v, err = cl.Get(ctx, k)
			if err == nil && string(v) != prefix {
				err = fmt.Errorf("read %q", v)
			}
		}
		cancel()
		if err != nil {
			t.Errorf("shard %d while a respawn keeps failing: %v", s, err)
		}
	}
}

// TestRemoteSpawnFailures: a missing remote binary,
// a refused key and an unreachable host each give a clear log line and a
// retry with back-off while the coordinator keeps serving every shard; once
// the cause is fixed, the server comes back.
func TestRemoteSpawnFailures(t *testing.T) {
	const n = 3
	h := nethost.Up(t, n)
	// The hosts run a copy of bin/server that the test can take away.
	binDir := t.TempDir()
	remoteBin := filepath.Join(binDir, "server")
	b, err := os.ReadFile(filepath.Join(testcluster.Bin(t), "server"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(remoteBin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	c := startRemote(t, h, n, "ssh_connect_timeout 2\nremote_bin "+remoteBin+"\n", testcluster.Options{})
	cl := c.Client()
	c.WaitRecovered(t, 10*time.Second)

	cases := []struct {
		name   string
		victim int
		want   string // in the log line
		breakF func()
		fixF   func()
	}{
		{"missing binary", 0, "is missing or not executable on this host",
			func() { must(t, os.Rename(remoteBin, remoteBin+".away")) },
			func() { must(t, os.Rename(remoteBin+".away", remoteBin)) }},
		{"refused key", 1, "Permission denied (publickey)",
			func() { must(t, os.Rename(h.AuthorizedKeys(2), h.AuthorizedKeys(2)+".away")) },
			func() { must(t, os.Rename(h.AuthorizedKeys(2)+".away", h.AuthorizedKeys(2))) }},
		{"unreachable host", 2, "ssh root@",
			func() { h.Unplug(3) },
			func() { h.Plug(3) }},
	}
	for _, tc := range cases {
		t.Run(strings.ReplaceAll(tc.name, " ", "_"), func(t *testing.T) {
			before := c.Status(t)
			s := before.Servers[tc.victim]
			v := testcluster.Victim{ID: tc.victim, PID: s.PID, Incarnation: s.Incarnation}
			tc.breakF()
			h.Kill9(tc.victim+1, s.PID)
			var lines []string
			testcluster.Eventually(t, 60*time.Second, tc.name+": two failed respawns", func() bool {
				lines = retryLines(c.Log(), tc.victim, tc.want)
				return len(lines) >= 2
			})
			checkBackoff(t, tc.name, lines)
			if st, err := c.TryStatus(context.Background()); err != nil {
				t.Errorf("%s: status: %v", tc.name, err)
			} else if st.Servers[tc.victim].State == "serving" {
				t.Errorf("%s: server %d reported serving while it cannot be spawned", tc.name, tc.victim)
			}
			checkAllShards(t, cl, n, "spawn-failure-"+strings.ReplaceAll(tc.name, " ", "-"))
			tc.fixF()
			after := c.WaitRecovered(t, remoteRecover, v)
			checkOnHost(t, h, after.Servers[tc.victim], tc.victim+1)
			t.Logf("%s: server %d back as %s", tc.name, tc.victim, roles(after, tc.victim))
		})
	}
	if c.ExitErr() != nil {
		t.Fatalf("coordinator exited: %v", c.ExitErr())
	}
	t.Logf("ran: missing binary, refused key and unreachable host over real sshd")
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestRemoteCopyAndReadopt: with copy_bin the coordinator copies bin/server
// to remote_bin on each host before starting it there; a coordinator killed
// with -9 and started again re-adopts the remote servers (same pids), and a
// later kill -9 of one of them is still seen and recovered over ssh.
func TestRemoteCopyAndReadopt(t *testing.T) {
	const n = 2
	h := nethost.Up(t, n)
	remoteBin := filepath.Join(t.TempDir(), "copied", "server")
	c := startRemote(t, h, n, "copy_bin yes\nremote_bin "+remoteBin+"\n", testcluster.Options{})
	local, err := os.ReadFile(filepath.Join(c.Bin, "server"))
	must(t, err)
	copied, err := os.ReadFile(remoteBin)
	if err != nil || string(copied) != string(local) {
		t.Fatalf("remote_bin %s is not a copy of bin/server (err %v, %d vs %d bytes)", remoteBin, err, len(copied), len(local))
	}
	before := c.WaitRecovered(t, 10*time.Second)
	for i, s := range before.Servers {
		checkOnHost(t, h, s, i+1)
		if exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", s.PID)); exe != remoteBin {
			t.Errorf("server %d runs %s, want the copy %s", i, exe, remoteBin)
		}
	}
	cl := c.Client()
	live := checkServes(t, cl, "readopt", 20)

	c.KillCoord(t)
	c.RestartCoord(t)
	after := c.WaitRecovered(t, 20*time.Second)
	for i, s := range after.Servers {
		if s.PID != before.Servers[i].PID {
			t.Errorf("server %d: pid %d -> %d across the coordinator restart, want it re-adopted", i, before.Servers[i].PID, s.PID)
		}
	}
	v := remoteVictim(t, c, h, 0)
	rec := c.WaitRecovered(t, remoteRecover, v)
	checkOnHost(t, h, rec.Servers[0], 1)
	cl2 := c.Client()
	checkStill(t, cl2, live, "after restart and kill")
	t.Logf("ran: copy_bin to %s, coordinator restart re-adopted remote pids, kill -9 recovered", remoteBin)
}

// TestRemoteDataDirOfAnotherCluster: a server spawned over ssh whose data
// directory belongs to another cluster refuses it, as a local one does,
// and the coordinator must not start it again and again: it exits 2
// naming the server. Over ssh the exit status of the background process
// is not seen; the server's last log line says it (server.RefusedLine).
// Before, the coordinator retried it for its whole start-up.
func TestRemoteDataDirOfAnotherCluster(t *testing.T) {
	h := nethost.Up(t, 1)
	bin := testcluster.Bin(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.txt")
	must(t, os.WriteFile(cfg, []byte(h.Config(1)), 0o644))
	data := filepath.Join(dir, "ftkv-data", "server_0")
	must(t, os.MkdirAll(data, 0o755))
	must(t, os.WriteFile(filepath.Join(data, "IDENTITY"), []byte("ftkv server 0 of 3\n"), 0o644))
	coordRefusesDataDir(t, bin, dir, cfg)
	logb, _ := os.ReadFile(filepath.Join(dir, "ftkv.log"))
	if bytes.Contains(logb, []byte("starting it again")) {
		t.Errorf("the coordinator started the refusing server again:\n%s", logb)
	}
	srvLog, _ := os.ReadFile(filepath.Join(dir, "server_0.log"))
	if !bytes.Contains(srvLog, []byte("belongs to a cluster of 3 servers, this one has 1")) {
		t.Errorf("the server's log on the host lacks its reason:\n%s", srvLog)
	}
	t.Logf("ran over real sshd")
}
