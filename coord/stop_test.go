package coord

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftkv/internal/frameio"
	"ftkv/timing"
	"ftkv/wire"
)

// startFakeServer runs a process whose command line is server id's,
// incarnation inc (as the coordinator recognises one: watchPID), and
// that does nothing.
func startFakeServer(t *testing.T, id int, inc uint64) *exec.Cmd {
	t.Helper()
	cmd := exec.Command("sh", "-c", "while :; do sleep 1; done", "server", "-id", fmt.Sprint(id), "-inc", fmt.Sprint(inc))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { _ = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-exited
	})
	deadline := time.Now().Add(5 * time.Second)
	for !isServer(cmd.Process.Pid, id, inc) {
		if time.Now().After(deadline) {
			t.Fatalf("pid %d does not look like server %d incarnation %d", cmd.Process.Pid, id, inc)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cmd
}

// alive reports whether pid runs and is not a zombie.
func alive(pid int) bool {
	return syscall.Kill(pid, 0) == nil && !zombie(pid)
}

// TestStopClusterDuringTakeover: `bin/client shutdown` reached a leader
// that had just been elected and had not yet re-adopted the running
// servers (its takeover waits on a Raft barrier first). The stop saw no
// server process, stopped none, committed that the cluster stopped and
// every coordinator exited: the servers ran on with nobody watching
// them. Now a stop waits for the takeover's adoption and then stops
// what it adopted, each with its order to dump and exit.
func TestStopClusterDuringTakeover(t *testing.T) {
	c := testCoordinator(t)
	c.opts.Timing.ServerExit = 500 * time.Millisecond
	c.stopped = make(chan struct{})
	v := c.View()
	var pids []int
	var fakes []*fakeCtl
	shutdowns := make(chan int, 3)
	for i := range v.Servers {
		p := startFakeServer(t, i, 1)
		pids = append(pids, p.Process.Pid)
		i := i
		fakes = append(fakes, startFakeCtlHook(t, func(fr wire.Frame) {
			if fr.Op == wire.OpShutdown {
				shutdowns <- i
				_ = p.Process.Kill() // it dumps and exits
			}
		}))
		v.Servers[i].CtlAddr = fakes[i].addr
	}
	// As watchLeadership leaves a coordinator that was just elected: it
	// knows no server process yet.
	c.mu.Lock()
	c.adopting = true
	for _, nd := range c.nodes {
		nd.proc = nil
	}
	c.mu.Unlock()
	stopped := make(chan error, 1)
	go func() { stopped <- c.StopCluster(context.Background()) }()
	time.Sleep(200 * time.Millisecond) // the stop has begun
	c.adopt(c.ld, committed(v, pids...), v)
	select {
	case err := <-stopped:
		if err != nil {
			t.Errorf("StopCluster: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("StopCluster did not return")
	}
	for i, pid := range pids {
		if alive(pid) {
			t.Errorf("server %d (pid %d) still runs after the cluster was stopped", i, pid)
		}
	}
	if got := len(shutdowns); got != len(pids) {
		t.Errorf("%d of %d servers were ordered to dump and exit", got, len(pids))
	}
	if st, _ := c.store.(*memStore).last(); !st.Stopped {
		t.Errorf("the stop was not committed")
	}
}

// TestNoStateSavedAfterTheStop: the orderly stop's commit (Stopped) is
// the last state a coordinator saves. A decision still being carried out
// (a view published, a respawn's incarnation) used to commit after it,
// without Stopped, and the next start re-adopted servers that were gone.
func TestNoStateSavedAfterTheStop(t *testing.T) {
	c := testCoordinator(t)
	for _, nd := range c.nodes {
		close(nd.proc.(*fakeProc).done) // the servers exited
	}
	if err := c.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	st, n := c.store.(*memStore).last()
	if !st.Stopped {
		t.Fatalf("Shutdown did not commit the stop (%d states saved)", n)
	}
	err := c.saveState() // a late decision
	if st, _ := c.store.(*memStore).last(); !st.Stopped {
		t.Fatalf("a state saved after the stop replaced it (saveState: %v)", err)
	}
	if err == nil {
		t.Errorf("saveState after the stop reported success")
	}
}

// TestStopClusterWhenTheTakeoverNeverAdopts: a takeover that never
// adopts the servers (its barrier failed, say) left the stop knowing no
// server: it stopped none, waited its whole bound, and committed that the
// cluster stopped in order, so the next start would have spawned a fresh
// cluster beside the running one. Now such a stop fails after a bound of
// its own, and commits no orderly stop: the next leader re-adopts.
func TestStopClusterWhenTheTakeoverNeverAdopts(t *testing.T) {
	c := testCoordinator(t)
	c.stopped = make(chan struct{})
	c.opts.Timing.RaftApply = 200 * time.Millisecond
	c.mu.Lock()
	c.adopting = true
	for _, nd := range c.nodes {
		nd.proc = nil
	}
	c.mu.Unlock()
	start := time.Now()
	err := c.StopCluster(context.Background())
	took := time.Since(start)
	if err == nil {
		t.Errorf("StopCluster stopped no server and reported success")
	}
	if st, n := c.store.(*memStore).last(); n == 0 || st.Stopped {
		t.Errorf("committed an orderly stop (%d states saved, stopped %v) though no server was stopped", n, st.Stopped)
	}
	if took > 2*time.Second {
		t.Errorf("StopCluster took %s", took)
	}
	t.Logf("StopCluster: %v after %s", err, took.Round(time.Millisecond))
}

type pidFakeProc struct {
	fakeProc
	pid int
}

func (p *pidFakeProc) PID() int { return p.pid }

// slowSpawner's Spawn takes until release is closed, or gives up when
// its context ends (as ssh does when its process is killed: on a real
// host the server may be running by then).
type slowSpawner struct {
	started chan struct{}
	release chan struct{}
}

func (s slowSpawner) Spawn(ctx context.Context, _ SpawnSpec) (Process, error) {
	close(s.started)
	select {
	case <-s.release:
		return &pidFakeProc{fakeProc{done: make(chan struct{})}, 4242}, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// TestSteppingDownWaitsForASpawn: a member of a group stopped with
// ctrl+d while it respawns a server steps down and leaves the servers to
// the next leader. It cancelled the spawn at once: over ssh the server
// may have started on its host already, with its pid never committed, so
// no leader could watch or kill it. Now it lets the spawn finish (its pid
// committed) before it ends its leadership.
func TestSteppingDownWaitsForASpawn(t *testing.T) {
	c := testCoordinator(t)
	sp := slowSpawner{started: make(chan struct{}), release: make(chan struct{})}
	c.opts.Spawner = sp
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	c.mu.Lock()
	c.ld.ctx, c.leadCancel = ctx, cancel
	c.mu.Unlock()
	spawned := make(chan error, 1)
	go func() { spawned <- c.spawn(ctx, c.nodes[1], 2, "localhost") }()
	<-sp.started
	stepped := make(chan struct{})
	go func() { c.stopLeading(); close(stepped) }()
	time.Sleep(100 * time.Millisecond)
	close(sp.release) // the host answers with the pid
	select {
	case err := <-spawned:
		if err != nil {
			t.Fatalf("the spawn under way was cut by the step-down: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the spawn did not return")
	}
	<-stepped
	st, _ := c.store.(*memStore).last()
	if len(st.Nodes) < 2 || st.Nodes[1].Inc != 2 || st.Nodes[1].PID != 4242 {
		t.Fatalf("incarnation 2 of server 1 not committed with its pid 4242: %+v", st.Nodes)
	}
	if ctx.Err() == nil {
		t.Errorf("the leadership did not end")
	}
}

// TestStopWithAServerJustKilled: a server killed (kill -9) just before
// ctrl+d, its exit not yet seen: its control port refuses the order to
// dump, and the coordinator exited 1 although every live server was
// stopped in order. A server whose process turns out to be gone is
// stopped (it has nothing to dump; its copies are the other servers'
// and its log's), and the stop is clean.
func TestStopWithAServerJustKilled(t *testing.T) {
	c := testCoordinator(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := l.Addr().String()
	l.Close() // nothing listens there now: its process is gone
	c.mu.Lock()
	for _, nd := range c.nodes {
		close(nd.proc.(*fakeProc).done) // the others exited already
	}
	victim := &fakeProc{done: make(chan struct{})}
	c.nodes[1].proc = victim
	c.nodes[1].hb.CtlAddr = refused
	c.mu.Unlock()
	go func() {
		time.Sleep(50 * time.Millisecond) // the exit is seen a moment later
		close(victim.done)
	}()
	if err := c.stopServers(context.Background()); err != nil {
		t.Fatalf("stop with a server just killed: %v", err)
	}
}

// TestStopReportsAFailedDump: a server that answers the stop with an
// error (its dump failed) and exits has not stopped in order: the stop
// fails, though the process is gone (unlike a server gone before the
// stop reached it).
func TestStopReportsAFailedDump(t *testing.T) {
	c := testCoordinator(t)
	victim := &fakeProc{done: make(chan struct{})}
	addr := fakeStopped(t, victim, func() (wire.Status, string) {
		return wire.StatusError, "dump failed: no space left on device"
	})
	c.mu.Lock()
	for _, nd := range c.nodes {
		close(nd.proc.(*fakeProc).done)
	}
	c.nodes[1].proc = victim
	c.nodes[1].hb.CtlAddr = addr
	c.mu.Unlock()
	err := c.stopServers(context.Background())
	if err == nil || !strings.Contains(err.Error(), "dump failed") {
		t.Fatalf("stop with a failed dump: %v, want the dump's error", err)
	}
}

// fakeStopped is a server's control port: every order but SHUTDOWN is
// answered OK at once; SHUTDOWN with what dump returns (when it returns),
// and then victim exits.
func fakeStopped(t *testing.T, victim *fakeProc, dump func() (wire.Status, string)) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			nc, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				for {
					fr, err := frameio.ReadFrame(br)
					if err != nil {
						return
					}
					st, text := wire.StatusOK, ""
					if fr.Op == wire.OpShutdown {
						st, text = dump()
					}
					_, _ = nc.Write(wire.Append(nil, &wire.Frame{Op: fr.Op, ID: fr.ID, Status: st, Value: []byte(text)}))
					if fr.Op == wire.OpShutdown {
						close(victim.done) // it exits after answering
						return
					}
				}
			}()
		}
	}()
	return l.Addr().String()
}

// TestStopWaitsForADumpThatHeartbeats: a server that takes longer than
// ShutdownWait to dump (a large table: 2.5M keys at -t 100ms, a review)
// but heartbeats on is waited for, up to DumpWait: the silence watch
// catches a stopped or hung one. Before, its order was cut at
// ShutdownWait, the dump left half written and the stop failed.
func TestStopWaitsForADumpThatHeartbeats(t *testing.T) {
	c := testCoordinator(t)
	// ShutdownWait 500 ms, the dump 1.5 s; a silence of 500 ms (not the
	// derived 2 x 50 ms) is a stopped or hung server. The test's
	// heartbeats (every 5 ms) must never be that late: at -t 20ms the
	// silence was 40 ms, and a loaded machine (make test's -race run on
	// 2 CPUs) that holds up this process that long had the heartbeating
	// victim killed as silent. A whole dump of 3 x that silence still
	// needs the heartbeats to be waited for.
	c.opts.Timing = timing.New(50 * time.Millisecond)
	c.opts.Timing.StopSilence = c.opts.Timing.ShutdownWait
	if err := c.opts.Timing.Validate(); err != nil {
		t.Fatal(err)
	}
	victim := &fakeProc{done: make(chan struct{})}
	nd := c.nodes[1]
	stop := make(chan struct{})
	go func() { // its heartbeats
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			c.mu.Lock()
			nd.lastSeen = time.Now()
			c.mu.Unlock()
		}
	}()
	defer close(stop)
	addr := fakeStopped(t, victim, func() (wire.Status, string) {
		time.Sleep(3 * c.opts.Timing.ShutdownWait) // dumping
		return wire.StatusOK, ""
	})
	c.mu.Lock()
	for _, nd := range c.nodes {
		close(nd.proc.(*fakeProc).done)
	}
	nd.proc = victim
	nd.hb.CtlAddr = addr
	c.mu.Unlock()
	if err := c.stopServers(context.Background()); err != nil {
		t.Fatalf("stop with a server dumping for 3 x ShutdownWait, heartbeating: %v", err)
	}
}

// TestWaitGroupDoneAfterDeadline: a group with nothing in it is done
// even when the wait's deadline has passed (a shutdown that outlasted its
// limit on a frozen server warned that a spawn was still under way when
// none was: a black-box test).
func TestWaitGroupDoneAfterDeadline(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var wg sync.WaitGroup
	for i := range 100 {
		if !waitGroup(ctx, &wg) {
			t.Fatalf("try %d: an empty group is not done once the deadline passed", i)
		}
	}
	wg.Add(1)
	defer wg.Done()
	if waitGroup(ctx, &wg) {
		t.Fatal("a group with a member is done")
	}
}
