package testcluster

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/frameio"
	"ftkv/wire"
)

// This file runs a group of coordinators (Options.Coordinators = 3 or 5):
// the config's `coordinator` lines, one process per coordinator, and the
// faults a test injects into the control plane.

// CoordInfo describes coordinator k of a group.
type CoordInfo struct {
	K           int
	PID         int  // of its current (or last) process
	Running     bool // its process has not exited
	RaftAddr    string
	ClientAddr  string
	ServersAddr string
	DataDir     string // its Raft data directory (-d)
	Log         string // its log file (-l)
}

// groupMember is coordinator k's fixed addresses.
type groupMember struct {
	raft, client, servers string
}

// startGroup is Start for a group of coordinators.
func startGroup(t testing.TB, o Options, bin string, race bool) *Cluster {
	t.Helper()
	k := o.Coordinators
	if k != 3 && k != 5 {
		t.Fatalf("testcluster: Options.Coordinators = %d, want 0, 1, 3 or 5", k)
	}
	if len(o.Wrap) > 0 || o.AddrHost != "" {
		t.Fatal("testcluster: Wrap and AddrHost work with one coordinator only (a group has CoordHosts and CoordWraps)")
	}
	if (o.CoordHosts != nil && len(o.CoordHosts) != k) || (o.CoordWraps != nil && len(o.CoordWraps) != k) {
		t.Fatalf("testcluster: %d CoordHosts and %d CoordWraps for %d coordinators", len(o.CoordHosts), len(o.CoordWraps), k)
	}
	dir := t.TempDir()
	cfg := o.Config
	if cfg == "" {
		n := o.N
		if n == 0 {
			n = 3
		}
		cfg = fmt.Sprintf("%d\n", n)
		for i := 0; i < n; i++ {
			cfg += "localhost 0 0 0\n"
		}
	}
	ports := freePorts(t, 3*k)
	members := make([]groupMember, k)
	cfg = strings.TrimRight(cfg, "\n") + "\n"
	for i := range members {
		host := "127.0.0.1"
		if o.CoordHosts != nil {
			host = o.CoordHosts[i]
		}
		members[i] = groupMember{
			raft:    net.JoinHostPort(host, strconv.Itoa(ports[3*i])),
			client:  net.JoinHostPort(host, strconv.Itoa(ports[3*i+1])),
			servers: net.JoinHostPort(host, strconv.Itoa(ports[3*i+2])),
		}
		cfg += fmt.Sprintf("coordinator %s %d %d\n", members[i].raft, ports[3*i+1], ports[3*i+2])
	}
	clientOpts := o.ClientOptions
	if Secure() {
		m := secure(t)
		cfg = m.secureConfig(cfg)
		clientOpts = m.clientOptions(o.ClientOptions)
	}
	cfgPath := filepath.Join(dir, "cluster.txt")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	to := o.Timeout
	if to == "" {
		to = DefaultTimeout.String()
	}
	c := &Cluster{t: t, Dir: dir, Bin: bin, ConfigPath: cfgPath, race: race, stderr: &lockedBuf{},
		group: make([]*proc, k), members: members, clientOpts: clientOpts}
	c.args = append([]string{"-C", cfgPath, "-t", to}, o.Args...)
	addrs := make([]string, k)
	for i, m := range members {
		addrs[i] = m.client
	}
	c.Addr = strings.Join(addrs, ",")
	// All at once: none can serve before a majority has elected a leader.
	for i := range members {
		var wrap []string
		if o.CoordWraps != nil {
			wrap = o.CoordWraps[i]
		}
		p := c.spawn(t, wrap, c.groupArgs(i), &lockedBuf{})
		if o.CoordWorkDirs {
			p.cmd.Dir = filepath.Join(dir, fmt.Sprintf("wd-%d", i))
			if err := os.Mkdir(p.cmd.Dir, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		c.group[i] = p
		c.startProc(t, p)
	}
	t.Cleanup(func() {
		_ = c.shutdownGroup(5 * time.Second)
		c.checkRaces(t)
		if t.Failed() {
			t.Logf("coordinators' stderr:\n%s", c.Stderr())
			for i := range c.group {
				raw, _ := os.ReadFile(c.groupLog(i))
				t.Logf("coordinator %d log (tail):\n%s", i, tail(string(raw), 40))
			}
		}
		c.keepLog(t)
	})
	for i := range members {
		c.waitCoordAnswers(t, i, 30*time.Second)
	}
	// Ready when a leader has spawned the servers and published a view.
	_, err := c.Poll(30*time.Second, 50*time.Millisecond, func(st *client.ClusterStatus) error {
		if st.Leader < 0 || st.Answered != st.Leader {
			return fmt.Errorf("no leader's report (leader %d, answered by %d)", st.Leader, st.Answered)
		}
		if len(st.Servers) == 0 || st.Epoch == 0 {
			return fmt.Errorf("no view yet (epoch %d, %d servers)", st.Epoch, len(st.Servers))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("coordinator group not ready: %v\n%s", err, c.Stderr())
	}
	return c
}

// groupArgs is coordinator k's command line.
func (c *Cluster) groupArgs(k int) []string {
	return append(append([]string(nil), c.args...), "-id", strconv.Itoa(k), "-d", c.coordDataDir(k), "-l", c.groupLog(k))
}

func (c *Cluster) coordDataDir(k int) string {
	return filepath.Join(c.Dir, fmt.Sprintf("ftkv-coord-%d", k))
}

func (c *Cluster) groupLog(k int) string {
	return filepath.Join(c.Dir, fmt.Sprintf("ftkv-coord-%d.log", k))
}

// waitCoordAnswers waits until coordinator k answers a STATUS request on
// its client port (with its report, or NOT_LEADER; or UNAUTHENTICATED
// when the test's own config asks for TLS the harness does not speak) or
// exits.
func (c *Cluster) waitCoordAnswers(t testing.TB, k int, d time.Duration) {
	t.Helper()
	p := c.group[k]
	deadline := time.Now().Add(d)
	for {
		f, err := askStatus(c.members[k].client)
		if err == nil && f.Status != wire.StatusOK && f.Status != wire.StatusNotLeader && f.Status != wire.StatusUnauthenticated {
			err = fmt.Errorf("answered %s", f.Status)
		}
		if err == nil {
			return
		}
		select {
		case <-p.exited:
			t.Fatalf("coordinator %d exited during start: %v\nstderr:\n%s", k, p.exitErr, p.out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("coordinator %d does not answer on %s after %s: %v\nstderr:\n%s", k, c.members[k].client, d, err, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// askStatus sends one STATUS request to addr and returns the answer.
func askStatus(addr string) (wire.Frame, error) {
	if Secure() {
		return askStatusSecure(addr)
	}
	nc, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return wire.Frame{}, err
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := nc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpStatus, ID: 1})); err != nil {
		return wire.Frame{}, err
	}
	return frameio.ReadFrame(bufio.NewReader(nc))
}

// CoordStatus asks coordinator k alone for its report (a follower's
// lacks the servers' heartbeat figures). It never fails the test.
func (c *Cluster) CoordStatus(k int) (*client.ClusterStatus, error) {
	c.groupProc(c.t, k)
	f, err := askStatus(c.members[k].client)
	if err != nil {
		return nil, fmt.Errorf("coordinator %d: %w", k, err)
	}
	if f.Status != wire.StatusOK {
		return nil, fmt.Errorf("coordinator %d answered %s %q", k, f.Status, f.Value)
	}
	var st client.ClusterStatus
	if err := json.Unmarshal(f.Value, &st); err != nil {
		return nil, fmt.Errorf("coordinator %d: bad status: %w", k, err)
	}
	return &st, nil
}

// ClientAddrs is the comma-separated list of the coordinators' client
// addresses (what Client and TryStatus dial; for one coordinator its
// address).
func (c *Cluster) ClientAddrs() string { return c.Addr }

// Coordinators is the number of coordinators (1 for a single one).
func (c *Cluster) Coordinators() int {
	if c.group == nil {
		return 1
	}
	return len(c.group)
}

func (c *Cluster) groupProc(t testing.TB, k int) *proc {
	t.Helper()
	if c.group == nil {
		t.Fatal("testcluster: a group helper used on a single coordinator (set Options.Coordinators)")
	}
	if k < 0 || k >= len(c.group) {
		t.Fatalf("testcluster: no coordinator %d in a group of %d", k, len(c.group))
	}
	return c.group[k]
}

// Coord describes coordinator k of a group.
func (c *Cluster) Coord(k int) CoordInfo {
	p := c.groupProc(c.t, k)
	running := true
	select {
	case <-p.exited:
		running = false
	default:
	}
	m := c.members[k]
	return CoordInfo{K: k, PID: p.cmd.Process.Pid, Running: running, RaftAddr: m.raft, ClientAddr: m.client,
		ServersAddr: m.servers, DataDir: c.coordDataDir(k), Log: c.groupLog(k)}
}

// KillCoordK kills coordinator k with SIGKILL and waits until it is gone.
// The servers it spawned keep running; their pids are remembered as the
// cluster's own.
func (c *Cluster) KillCoordK(t testing.TB, k int) {
	t.Helper()
	p := c.groupProc(t, k)
	c.rememberServers()
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.exited
}

// StopCoordK freezes coordinator k with SIGSTOP (continued when the test
// ends if the test does not); it returns once every thread has stopped.
func (c *Cluster) StopCoordK(t testing.TB, k int) {
	t.Helper()
	p := c.groupProc(t, k)
	if err := p.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP coordinator %d: %v", k, err)
	}
	if err := waitStopped(p.cmd.Process.Pid, 2*time.Second); err != nil {
		t.Logf("coordinator %d: %v", k, err)
	}
	t.Cleanup(func() { _ = p.cmd.Process.Signal(syscall.SIGCONT) })
}

// ContCoordK resumes coordinator k after StopCoordK.
func (c *Cluster) ContCoordK(t testing.TB, k int) {
	t.Helper()
	p := c.groupProc(t, k)
	if err := p.cmd.Process.Signal(syscall.SIGCONT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("SIGCONT coordinator %d: %v", k, err)
	}
}

// StopCoordGracefullyK closes coordinator k's stdin (ctrl+d: it stops
// alone) and waits up to d for it to exit; it returns the exit error.
func (c *Cluster) StopCoordGracefullyK(t testing.TB, k int, d time.Duration) error {
	t.Helper()
	return c.groupProc(t, k).stop(d)
}

// RestartCoordK starts coordinator k again (it must have exited) with
// the same command line, ports and Raft directory, and waits until it
// answers on its client port.
func (c *Cluster) RestartCoordK(t testing.TB, k int) {
	t.Helper()
	old := c.groupProc(t, k)
	select {
	case <-old.exited:
	default:
		t.Fatalf("RestartCoordK: coordinator %d (pid %d) is still running", k, old.cmd.Process.Pid)
	}
	p := c.spawn(t, old.wrap, old.args, old.out)
	p.cmd.Dir = old.cmd.Dir
	c.group[k] = p
	c.startProc(t, p)
	c.waitCoordAnswers(t, k, 30*time.Second)
}

// LeaderIndex waits (up to 15s) for a coordinator that reports itself as
// the leader and returns its index; it fails the test if none does.
func (c *Cluster) LeaderIndex(t testing.TB) int {
	t.Helper()
	st := c.WaitLeader(t, 15*time.Second, func(int) bool { return true })
	return st.Leader
}

// WaitLeader polls the status until a running coordinator that accept
// takes reports itself as the leader, and returns that report; after
// timeout it fails the test.
func (c *Cluster) WaitLeader(t testing.TB, timeout time.Duration, accept func(k int) bool) *client.ClusterStatus {
	t.Helper()
	return c.WaitFor(t, timeout, "leader", func(st *client.ClusterStatus) error {
		if st.Leader < 0 || st.Answered != st.Leader {
			return fmt.Errorf("no leader's report (leader %d, answered by %d, term %d)", st.Leader, st.Answered, st.Term)
		}
		if st.Leader >= len(c.group) || !c.Coord(st.Leader).Running {
			return fmt.Errorf("leader %d is not running", st.Leader)
		}
		if !accept(st.Leader) {
			return fmt.Errorf("leader %d not accepted", st.Leader)
		}
		return nil
	})
}

// shutdownGroup stops every coordinator (ctrl+d, each within d) and then
// kills the cluster's servers, which outlive a group's coordinators.
func (c *Cluster) shutdownGroup(d time.Duration) error {
	c.rememberServers()
	c.closeStatusClient()
	var errs []error
	for k, p := range c.group {
		_ = p.cmd.Process.Signal(syscall.SIGCONT) // a stopped one cannot read its stdin
		if err := p.stop(d); err != nil {
			errs = append(errs, fmt.Errorf("coordinator %d: %w", k, err))
		}
	}
	for _, pid := range c.serverPIDs() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	return errors.Join(errs...)
}

// serverPIDs lists the live processes of this cluster's servers: those
// remembered and any other running the server binary in its directory.
func (c *Cluster) serverPIDs() []int {
	c.procMu.Lock()
	pids := slices.Clone(c.known)
	c.procMu.Unlock()
	out := pids[:0]
	for _, pid := range pids {
		if c.isServerHere(pid) {
			out = append(out, pid)
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err == nil && !slices.Contains(out, pid) && c.isServerHere(pid) {
			out = append(out, pid)
		}
	}
	return out
}
