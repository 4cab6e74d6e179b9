package coord

import (
	"bufio"
	"net"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftkv/coord/decide"
	"ftkv/internal/frameio"
	"ftkv/wire"
)

// fakeCtl is a server's control port that accepts every order and
// remembers the epochs of the views it was sent.
type fakeCtl struct {
	addr  string
	mu    sync.Mutex
	views []uint64
}

func startFakeCtl(t *testing.T) *fakeCtl { return startFakeCtlHook(t, nil) }

// startFakeCtlHook is startFakeCtl calling before (if not nil) with each
// order before it answers it.
func startFakeCtlHook(t *testing.T, before func(fr wire.Frame)) *fakeCtl {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	f := &fakeCtl{addr: l.Addr().String()}
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
					if fr.Op == wire.OpSetView {
						f.mu.Lock()
						f.views = append(f.views, fr.Epoch)
						f.mu.Unlock()
					}
					if before != nil {
						before(fr)
					}
					if _, err := nc.Write(wire.Append(nil, &wire.Frame{Op: fr.Op, ID: fr.ID, Status: wire.StatusOK})); err != nil {
						return
					}
				}
			}()
		}
	}()
	return f
}

func (f *fakeCtl) got(epoch uint64) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, e := range f.views {
		if e == epoch {
			return true
		}
	}
	return false
}

// committed is the state a leader committed: view v, incarnation 1 of
// every server, with the given pids.
func committed(v wire.View, pids ...int) clusterState {
	st := clusterState{Secret: "s", View: wire.AppendView(nil, &v)}
	for i := range v.Servers {
		sn := savedNode{ID: i, Inc: 1}
		if i < len(pids) {
			sn.PID = pids[i]
		}
		st.Nodes = append(st.Nodes, sn)
	}
	return st
}

// TestHole4ReadoptionPushesTheCommittedView (hole 4): a leader that died
// after committing a view but before pushing it left servers at the
// previous epoch. The coordinator that takes over used to mark every
// server as having applied the committed view, so it never pushed it
// (two shards answered WRONG_SERVER for good while status said serving).
// Now what a server applied is what its heartbeats (or a push) say, and
// the view is pushed to every server behind. (The takeover also pushes
// it at once; this core is started without, so the re-push of the
// lagging members is what is tested.)
func TestHole4ReadoptionPushesTheCommittedView(t *testing.T) {
	c := testCoordinator(t)
	v := c.View()
	var fakes []*fakeCtl
	for i := range v.Servers {
		f := startFakeCtl(t)
		fakes = append(fakes, f)
		v.Servers[i].CtlAddr = f.addr
	}
	// The view the dead leader committed and never pushed: server 1
	// failed, server 2 leads its shard.
	nv := cloneView(v)
	nv.Epoch = 2
	nv.Servers[1].State = wire.StateDown
	nv.Shards[1] = wire.Placement{Primary: 2, Secondary: -1}
	nv.Shards[0].Secondary = -1
	c.adopt(c.ld, committed(nv), nv)
	start := time.Now()
	if err := c.startCore(c.ld, false, false); err != nil {
		t.Fatal(err)
	}
	for i := range nv.Servers {
		// Every server still runs epoch 1.
		c.heartbeat(wire.Heartbeat{ID: uint32(i), Incarnation: 1, Epoch: 1, CtlAddr: fakes[i].addr})
	}
	for _, i := range []int{0, 2} {
		if got := c.core.Node(i).Confirmed; got >= 2 {
			t.Fatalf("server %d counted as having applied epoch 2 (confirmed %d) though it reports epoch 1", i, got)
		}
	}
	// The loop, on a clock that runs fast: the servers keep reporting
	// epoch 1 until they get the view.
	deadline := time.Now().Add(5 * time.Second)
	now := start
	for !(fakes[0].got(2) && fakes[2].got(2)) {
		if time.Now().After(deadline) {
			t.Fatalf("the committed view (epoch 2) was not pushed to the live servers: server 0 got %v, server 2 got %v",
				fakes[0].views, fakes[2].views)
		}
		now = now.Add(c.opts.Timing.FailureTimeout / 4)
		for _, i := range []uint32{0, 2} {
			c.feed(c.ld, decide.Heartbeat{Now: now, HB: wire.Heartbeat{ID: i, Incarnation: 1, Epoch: 1, CtlAddr: fakes[i].addr}})
		}
		c.feed(c.ld, decide.Tick{Now: now})
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHole6StaleCommittedPID (hole 6): a coordinator taking over whose
// committed state names a pid that is no longer its server (the server
// died, the pid went to another program, as after a reboot) must not
// watch or kill that process: the server counts as exited.
func TestHole6StaleCommittedPID(t *testing.T) {
	other := exec.Command("sleep", "60")
	if err := other.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { other.Process.Kill(); other.Wait() }()
	c := testCoordinator(t)
	v := c.View()
	c.adopt(c.ld, committed(v, other.Process.Pid), v)
	p := c.nodes[0].proc
	select {
	case <-p.Done():
	case <-time.After(2 * time.Second):
		t.Fatalf("pid %d (sleep) is watched as server 0", other.Process.Pid)
	}
	if ev, ok := nextEvent(t, c).(decide.ProcessExited); !ok || ev.ID != 0 || ev.Inc != 1 {
		t.Fatalf("the exit of server 0 was not reported: %#v", ev)
	}
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	c.kill(decide.Kill{ID: 0, Inc: 1})
	time.Sleep(100 * time.Millisecond)
	if err := other.Process.Signal(syscall.Signal(0)); err != nil || zombie(other.Process.Pid) {
		t.Fatalf("the unrelated process %d was killed", other.Process.Pid)
	}
}
