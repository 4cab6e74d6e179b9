package testcluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/wire"
)

// This file holds the fault injection and status polling helpers of the
// failover tests. Every signal goes to a pid read from this cluster's own
// status report and only after checking that the process is a child of this
// cluster's coordinator, so a test can never hit an unrelated process (a
// recycled pid, another test's server).

// Victim is a server process a test killed or stopped: which server and
// which incarnation, so that recovery can be told apart from "not noticed
// yet" (until the coordinator notices, the status still shows the old pid
// as serving).
type Victim struct {
	ID          int
	PID         int
	Incarnation uint64
}

// TryStatus asks the coordinator for its status through a client kept for
// the purpose. It is safe from any goroutine and never fails the test.
// For a group, when the coordinator that answered is not the leader (a
// follower's report lacks the heartbeat figures, and one cut off from the
// others knows neither the leader nor the latest view), it asks every
// coordinator alone and returns the report of the one that leads with the
// highest term, if any does.
func (c *Cluster) TryStatus(ctx context.Context) (*client.ClusterStatus, error) {
	st, err := c.clientStatus(ctx)
	if c.group == nil || (err == nil && st.Leader >= 0 && st.Answered == st.Leader) {
		return st, err
	}
	if lst := c.leaderReport(); lst != nil {
		return lst, nil
	}
	return st, err
}

// leaderReport asks every coordinator of the group alone and returns the
// report of one that says it leads, the highest term's; nil if none does.
func (c *Cluster) leaderReport() *client.ClusterStatus {
	var best *client.ClusterStatus
	for k, m := range c.members {
		f, err := askStatus(m.client)
		if err != nil || f.Status != wire.StatusOK {
			continue
		}
		var st client.ClusterStatus
		if json.Unmarshal(f.Value, &st) != nil || st.Leader != k || st.Answered != k {
			continue
		}
		if best == nil || st.Term > best.Term {
			best = &st
		}
	}
	return best
}

// clientStatus is the status as the Go client gets it.
func (c *Cluster) clientStatus(ctx context.Context) (*client.ClusterStatus, error) {
	c.statusMu.Lock()
	cl := c.statusCl
	if cl == nil {
		var err error
		cl, err = client.Dial(ctx, c.Addr, c.clientOpts...)
		if err != nil {
			c.statusMu.Unlock()
			return nil, err
		}
		c.statusCl = cl
	}
	c.statusMu.Unlock()
	return cl.Status(ctx)
}

// Status returns the coordinator's status report, retrying for up to 5s;
// it fails the test when the coordinator cannot answer.
func (c *Cluster) Status(t testing.TB) *client.ClusterStatus {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := c.TryStatus(ctx)
		cancel()
		if err == nil {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// StatusJSON renders st as indented JSON for a failure message.
func StatusJSON(st *client.ClusterStatus) string {
	if st == nil {
		return "(no status)"
	}
	b, _ := json.MarshalIndent(st, "", "  ")
	return string(b)
}

// Fatalf fails the test with the message followed by the logs' last
// events and the current status as JSON (the coordinator's stderr and the
// log's tail follow from Start's cleanup).
func (c *Cluster) Fatalf(t testing.TB, format string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	st, err := c.TryStatus(ctx)
	js := StatusJSON(st)
	if err != nil {
		js = fmt.Sprintf("(status: %v)", err)
	}
	t.Fatalf("%s\nthe logs' last events:\n%s\nstatus now:\n%s", fmt.Sprintf(format, args...), c.Events(eventsShown), js)
}

// eventsShown is how many of the logs' last events a failure prints.
const eventsShown = 80

func server(t testing.TB, st *client.ClusterStatus, id int) client.ServerStatus {
	t.Helper()
	for _, s := range st.Servers {
		if s.ID == id {
			return s
		}
	}
	t.Fatalf("no server %d in the status:\n%s", id, StatusJSON(st))
	return client.ServerStatus{}
}

// ServerPID is the pid of server id's current incarnation.
func (c *Cluster) ServerPID(t testing.TB, id int) int {
	t.Helper()
	return server(t, c.Status(t), id).PID
}

// parentPID reads a process's parent from /proc (Linux).
func parentPID(pid int) (int, error) {
	f, err := statFields("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(f[1])
}

// statFields reads a /proc stat file: the fields after "(comm)", the
// first being the state.
func statFields(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// "pid (comm) state ppid …": comm may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return nil, fmt.Errorf("%s: unexpected %q", path, s)
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 2 {
		return nil, fmt.Errorf("%s: unexpected %q", path, s)
	}
	return f, nil
}

// waitStopped waits until every thread of pid is stopped (state T) or
// gone, for up to d: SIGSTOP returns before the group stop has reached a
// thread busy on another CPU or in an uninterruptible sleep (an fsync), and
// such a thread may still answer a request sent after the signal.
func waitStopped(pid int, d time.Duration) error {
	for end := time.Now().Add(d); ; time.Sleep(time.Millisecond) {
		tasks, err := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
		if err != nil {
			return nil // gone
		}
		running := ""
		for _, task := range tasks {
			f, err := statFields(fmt.Sprintf("/proc/%d/task/%s/stat", pid, task.Name()))
			if err == nil && f[0] != "T" && f[0] != "t" && f[0] != "Z" && f[0] != "X" {
				running = task.Name() + " in state " + f[0]
				break
			}
		}
		if running == "" {
			return nil
		}
		if time.Now().After(end) {
			return fmt.Errorf("pid %d: thread %s %v after SIGSTOP", pid, running, d)
		}
	}
}

// Owns reports whether pid is a live (or not yet reaped) server of this
// cluster: a child of one of its coordinator processes (current or
// earlier), a server it noted before killing a coordinator, or a process
// of its server binary running in its directory (a group's servers outlive
// the coordinator that spawned them).
func (c *Cluster) Owns(pid int) bool {
	if pid <= 0 {
		return false
	}
	pp, err := parentPID(pid)
	if err != nil {
		return false
	}
	c.procMu.Lock()
	ours := slices.Contains(c.pids, pp) || slices.Contains(c.known, pid)
	c.procMu.Unlock()
	return ours || c.isServerHere(pid)
}

// isServerHere reports whether pid runs this cluster's server binary with
// this cluster's directory as its working directory.
func (c *Cluster) isServerHere(pid int) bool {
	cwd, err := os.Readlink(fmt.Sprintf("/proc/%d/cwd", pid))
	if err != nil {
		return false
	}
	// (Under it too: coordinators of a group in directories of their own,
	// CoordWorkDirs, run their servers there.)
	if dir, err := filepath.EvalSymlinks(c.Dir); err != nil || (cwd != dir && !strings.HasPrefix(cwd, dir+"/")) {
		return false
	}
	cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return err == nil && strings.HasPrefix(string(cmd), filepath.Join(c.Bin, "server")+"\x00")
}

// PIDGone reports whether no process has pid any more (reaped).
func PIDGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH)
}

// signalServers sends sig to the current incarnation of each server in ids,
// all from one status report so that they are hit as close together as
// possible.
func (c *Cluster) signalServers(t testing.TB, sig syscall.Signal, ids ...int) []Victim {
	t.Helper()
	var vs []Victim
	// A status read as an incarnation dies or is spawned may name a pid
	// already gone (or not yet the server binary): read it again for a
	// while before calling it foreign.
	for deadline := time.Now().Add(3 * time.Second); ; {
		st := c.Status(t)
		vs = vs[:0]
		foreign := ""
		for _, id := range ids {
			s := server(t, st, id)
			if !c.Owns(s.PID) && foreign == "" {
				foreign = fmt.Sprintf("server %d: pid %d from the status is not a server of this cluster", id, s.PID)
			}
			vs = append(vs, Victim{ID: id, PID: s.PID, Incarnation: s.Incarnation})
		}
		if foreign == "" {
			break
		}
		if time.Now().After(deadline) {
			c.Fatalf(t, "%s", foreign)
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, v := range vs {
		if err := syscall.Kill(v.PID, sig); err != nil {
			t.Fatalf("%s server %d (pid %d): %v", sig, v.ID, v.PID, err)
		}
	}
	return vs
}

// KillServer sends SIGKILL to server id's current incarnation.
func (c *Cluster) KillServer(t testing.TB, id int) Victim {
	t.Helper()
	return c.signalServers(t, syscall.SIGKILL, id)[0]
}

// KillServers sends SIGKILL to several servers at once.
func (c *Cluster) KillServers(t testing.TB, ids ...int) []Victim {
	t.Helper()
	return c.signalServers(t, syscall.SIGKILL, ids...)
}

// KillServersDeadFirst sends SIGKILL to several servers while the
// coordinator is frozen (SIGSTOP), and continues it once every one of them
// is a zombie: the coordinator learns of their deaths all at once, each
// already dead when it commits its first failover view. (Killed one after
// the other while it ran, the first exit it saw could be failed over while
// another victim was still being torn down, and so taken as alive when
// that view was committed: which one, the machine's load decided.)
func (c *Cluster) KillServersDeadFirst(t testing.TB, ids ...int) []Victim {
	t.Helper()
	vs := c.signalServers(t, 0, ids...) // (the victims, from the status: signal 0 only checks them)
	coord := c.CoordPID()
	if err := syscall.Kill(coord, syscall.SIGSTOP); err != nil {
		t.Fatalf("SIGSTOP the coordinator (pid %d): %v", coord, err)
	}
	cont := func() { _ = syscall.Kill(coord, syscall.SIGCONT) }
	t.Cleanup(cont)
	defer cont()
	if err := waitStopped(coord, 2*time.Second); err != nil {
		t.Logf("coordinator: %v", err)
	}
	for _, v := range vs {
		if err := syscall.Kill(v.PID, syscall.SIGKILL); err != nil {
			t.Fatalf("SIGKILL server %d (pid %d): %v", v.ID, v.PID, err)
		}
	}
	for _, v := range vs {
		for end := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
			f, err := statFields(fmt.Sprintf("/proc/%d/stat", v.PID))
			if err != nil || f[0] == "Z" || f[0] == "X" {
				break
			}
			if time.Now().After(end) {
				t.Fatalf("server %d (pid %d) still in state %s 10 s after SIGKILL", v.ID, v.PID, f[0])
			}
		}
	}
	return vs
}

// StopServer freezes server id's current incarnation with SIGSTOP. The
// process is continued when the test ends (if it still exists) so that a
// failing test cannot leave a frozen server behind.
func (c *Cluster) StopServer(t testing.TB, id int) Victim {
	t.Helper()
	v := c.signalServers(t, syscall.SIGSTOP, id)[0]
	if err := waitStopped(v.PID, 2*time.Second); err != nil {
		t.Logf("server %d: %v", id, err)
	}
	t.Cleanup(func() {
		if c.Owns(v.PID) {
			_ = syscall.Kill(v.PID, syscall.SIGCONT)
		}
	})
	return v
}

// ContServer resumes a process frozen by StopServer. It takes the Victim
// rather than the id because by now the coordinator may have replaced the
// server; a process that is already gone is not an error.
func (c *Cluster) ContServer(t testing.TB, v Victim) {
	t.Helper()
	if !c.Owns(v.PID) {
		t.Logf("server %d pid %d is already gone at SIGCONT", v.ID, v.PID)
		return
	}
	if err := syscall.Kill(v.PID, syscall.SIGCONT); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("SIGCONT server %d (pid %d): %v", v.ID, v.PID, err)
	}
}

// Recovered says why st is not a fully recovered cluster (nil when it is):
// every server serving its home roles (server i primary of shard i and
// secondary of shard i-1) with a live incarnation, and each victim replaced
// by a newer incarnation with a different pid.
func Recovered(st *client.ClusterStatus, victims ...Victim) error {
	n := len(st.Servers)
	if n == 0 {
		return errors.New("no servers in the status")
	}
	for i, s := range st.Servers {
		switch {
		case s.ID != i:
			return fmt.Errorf("servers[%d] has id %d", i, s.ID)
		case s.State != "serving":
			return fmt.Errorf("server %d is %q", i, s.State)
		case s.PID <= 0 || s.Incarnation == 0:
			return fmt.Errorf("server %d has pid %d incarnation %d", i, s.PID, s.Incarnation)
		case !slices.Equal(s.PrimaryOf, []int{i}):
			return fmt.Errorf("server %d is primary of %v, want [%d]", i, s.PrimaryOf, i)
		case !slices.Equal(s.SecondaryOf, []int{(i - 1 + n) % n}):
			return fmt.Errorf("server %d is secondary of %v, want [%d]", i, s.SecondaryOf, (i-1+n)%n)
		}
	}
	for _, v := range victims {
		if v.ID < 0 || v.ID >= n {
			return fmt.Errorf("victim %d out of range", v.ID)
		}
		s := st.Servers[v.ID]
		if s.PID == v.PID || s.Incarnation <= v.Incarnation {
			return fmt.Errorf("server %d not replaced yet: pid %d incarnation %d (victim pid %d incarnation %d)",
				v.ID, s.PID, s.Incarnation, v.PID, v.Incarnation)
		}
	}
	return nil
}

// WaitRecovered polls the status until Recovered holds for the victims and
// returns that status; after timeout it fails the test with the reason and
// the last status.
func (c *Cluster) WaitRecovered(t testing.TB, timeout time.Duration, victims ...Victim) *client.ClusterStatus {
	t.Helper()
	return c.WaitFor(t, timeout, "full recovery", func(st *client.ClusterStatus) error {
		return Recovered(st, victims...)
	})
}

// WaitState polls until server id reports state and returns that status.
func (c *Cluster) WaitState(t testing.TB, id int, state string, timeout time.Duration) *client.ClusterStatus {
	t.Helper()
	return c.WaitFor(t, timeout, fmt.Sprintf("server %d %s", id, state), func(st *client.ClusterStatus) error {
		if id < 0 || id >= len(st.Servers) {
			return fmt.Errorf("no server %d", id)
		}
		if s := st.Servers[id].State; s != state {
			return fmt.Errorf("server %d is %q", id, s)
		}
		return nil
	})
}

// WaitFor polls the status every 20ms until cond returns nil and returns
// that status; after timeout it fails the test with cond's last answer and
// the last status seen.
func (c *Cluster) WaitFor(t testing.TB, timeout time.Duration, what string, cond func(*client.ClusterStatus) error) *client.ClusterStatus {
	t.Helper()
	st, err := c.Poll(timeout, 20*time.Millisecond, cond)
	if err != nil {
		t.Fatalf("no %s: %v\nthe logs' last events:\n%s\nlast status:\n%s", what, err, c.Events(eventsShown), StatusJSON(st))
	}
	return st
}

// Poll asks for the status every interval (0: back to back) until cond
// returns nil, and returns that status. After timeout, or when the
// coordinator exits, it returns the last status seen (nil if none) with an
// error saying why cond did not hold. It never fails the test, so it is
// usable off the test goroutine and where not recovering is an outcome.
func (c *Cluster) Poll(timeout, interval time.Duration, cond func(*client.ClusterStatus) error) (*client.ClusterStatus, error) {
	deadline := time.Now().Add(timeout)
	var last *client.ClusterStatus
	var why error
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err := c.TryStatus(ctx)
		cancel()
		if err != nil {
			why = fmt.Errorf("status: %w", err)
		} else {
			last = st
			if why = cond(st); why == nil {
				return st, nil
			}
		}
		if time.Now().After(deadline) {
			return last, fmt.Errorf("after %s: %w", timeout, why)
		}
		var exited <-chan struct{} // a group goes on while a coordinator is down
		if c.main != nil {
			exited = c.main.exited
		}
		select {
		case <-exited:
			return last, fmt.Errorf("coordinator exited (%v): %w", c.main.exitErr, why)
		case <-time.After(interval):
		}
	}
}
