package coord

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/coord/decide"
	"ftkv/timing"
	"ftkv/wire"
)

// noSpawner starts nothing (the tests of the decisions run no servers).
type noSpawner struct{}

func (noSpawner) Spawn(context.Context, SpawnSpec) (Process, error) {
	return nil, errors.New("no servers in this test")
}

type fakeProc struct{ done chan struct{} }

func (p *fakeProc) PID() int              { return 0 }
func (p *fakeProc) Kill() error           { return nil }
func (p *fakeProc) Done() <-chan struct{} { return p.done }

// testCoordinator is three serving servers in their home roles at epoch 1,
// without processes or sockets, leading (its loop is the test: see feed
// and nextEvent); it has no core yet (startTestCore).
func testCoordinator(t *testing.T) *Coordinator {
	tm := timing.Default()
	c := &Coordinator{opts: Options{Timing: tm, Dir: t.TempDir(), Cluster: &Cluster{}, Spawner: noSpawner{}, Remote: noSpawner{}}, log: zerolog.Nop(), n: 3,
		regCh: make(chan struct{}, 1), store: &memStore{}, leading: true}
	v := wire.View{Epoch: 1}
	for i := 0; i < 3; i++ {
		v.Servers = append(v.Servers, wire.Member{ID: uint32(i), Incarnation: 1, State: wire.StateServing})
		v.Shards = append(v.Shards, wire.Placement{Primary: int32(i), Secondary: int32((i + 1) % 3)})
		c.nodes = append(c.nodes, &node{id: i, inc: 1, proc: &fakeProc{done: make(chan struct{})}, procInc: 1, reported: true})
	}
	c.view = v
	c.viewEnc = wire.AppendView(nil, &v)
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	c.ld = leadership{ctx: ctx, events: make(chan decide.Event, 1024)}
	return c
}

// startTestCore gives c a core that takes the cluster over at now.
func startTestCore(t *testing.T, c *Coordinator, now time.Time) {
	t.Helper()
	core, err := decide.New(decide.FromTiming(c.opts.Timing), c.View(), nil, nil, nil, now)
	if err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.core = core
	c.mu.Unlock()
}

// nextEvent waits for the outcome of an action c started.
func nextEvent(t *testing.T, c *Coordinator) decide.Event {
	t.Helper()
	select {
	case ev := <-c.ld.events:
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event from the actions")
		return nil
	}
}

// silentMember1 leaves c with a core under which members 0 and 2
// heartbeat and member 1 has been silent for two failure timeouts, and
// runs a round of the loop: member 1 is failed over (the view is being
// published when it returns).
func silentMember1(t *testing.T, c *Coordinator) {
	ft := c.opts.Timing.FailureTimeout
	start := time.Now().Add(-2 * ft)
	startTestCore(t, c, start)
	for _, id := range []uint32{0, 2} {
		if st := c.heartbeat(wire.Heartbeat{ID: id, Incarnation: 1, Epoch: 1}); st != wire.StatusOK {
			t.Fatalf("member %d's heartbeat answered %s", id, st)
		}
	}
	// A round right after the previous one (no stall of the loop): the
	// core judges silence at the latest time it saw (the heartbeats').
	c.feed(c.ld, decide.Tick{Now: start.Add(ft / 4)})
}

// TestHole3HeartbeatAfterFailedDecision (hole 3): once the coordinator has
// decided that a silent member failed, no heartbeat of that member may
// renew its lease, not even one answered while the demoted view is being
// published (its secondary is about to serve its shard).
func TestHole3HeartbeatAfterFailedDecision(t *testing.T) {
	c := testCoordinator(t)
	renewed := make(chan bool, 1)
	c.testHookPublish = func() {
		// A heartbeat of the failed member arrives while the view is
		// being published.
		renewed <- c.heartbeat(wire.Heartbeat{ID: 1, Incarnation: 1, Epoch: 1}) == wire.StatusOK
	}
	silentMember1(t, c)
	ev := nextEvent(t, c)
	if _, ok := ev.(decide.Published); !ok {
		t.Fatalf("the failover was not published: %#v", ev)
	}
	select {
	case r := <-renewed:
		if r {
			t.Fatal("a heartbeat of a member declared failed renewed its lease during the publication")
		}
	default:
		t.Fatal("the silent member was not failed over")
	}
	c.feed(c.ld, ev)
	if v := c.View(); v.Epoch != 2 || v.Servers[1].State == wire.StateServing {
		t.Fatalf("view after the failure: epoch %d, server 1 state %d", v.Epoch, v.Servers[1].State)
	}
	if st := c.heartbeat(wire.Heartbeat{ID: 1, Incarnation: 1, Epoch: 1}); st == wire.StatusOK {
		t.Fatal("a heartbeat of the failed member renewed its lease after the publication")
	}
	if st := c.heartbeat(wire.Heartbeat{ID: 0, Incarnation: 1, Epoch: 1}); st != wire.StatusOK {
		t.Fatalf("a live member's heartbeat answered %s", st)
	}
}

// TestHole5ViewDurableBeforeVisible (hole 5): a new view is written to the
// coordinators' group (its store) before anyone can see it (clients' view requests, status,
// re-pushes, heartbeat answers): a coordinator restarted after a server
// applied a view must never reuse its epoch for another.
func TestHole5ViewDurableBeforeVisible(t *testing.T) {
	c := testCoordinator(t)
	seen := make(chan uint64, 4)
	c.testHookSave = func() { seen <- c.View().Epoch }
	silentMember1(t, c)
	if ev, ok := nextEvent(t, c).(decide.Published); !ok || ev.Epoch != 2 {
		t.Fatalf("published %#v, want epoch 2", ev)
	}
	if c.View().Epoch != 2 {
		t.Fatalf("epoch %d after the failure, want 2", c.View().Epoch)
	}
	close(seen)
	for e := range seen {
		if e != 1 {
			t.Fatalf("epoch %d was visible before the state file held it", e)
		}
	}
	st, _ := c.store.(*memStore).last()
	v, err := wire.DecodeView(st.View)
	if err != nil || v.Epoch != 2 {
		t.Fatalf("committed state holds epoch %d (%v), want 2", v.Epoch, err)
	}
}

// TestStatusWithoutLeaderIsUnknown: a coordinator that does not lead and
// knows no leader (just started after every process was killed, or cut
// off from its group) cannot tell how the servers are: it showed the
// last committed view's "serving" with the dead pids, and a script
// polling `status --json` until every server serves passed at once (an
// attack). Servers and shards show "unknown" until a leader is known.
func TestStatusWithoutLeaderIsUnknown(t *testing.T) {
	c := testCoordinator(t)
	c.leading = false
	st := c.Status()
	for _, s := range st.Servers {
		if s.State != "unknown" {
			t.Errorf("server %d: state %q with no leader, want unknown", s.ID, s.State)
		}
	}
	for _, sh := range st.Shards {
		if sh.State != "unknown" {
			t.Errorf("shard %d: state %q with no leader, want unknown", sh.Shard, sh.State)
		}
	}
}

// TestHeartbeatsUnread: a server silent for over the failure timeout
// whose heartbeat link has bytes waiting unread (the coordinator's event
// loop held up, not the server) makes the tick judge no silence; with
// nothing waiting, or the server heard lately, it is judged as before.
// A real loopback socket stands for the link: the kernel counts its
// unread bytes.
func TestHeartbeatsUnread(t *testing.T) {
	c := testCoordinator(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	sender, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer sender.Close()
	link, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer link.Close()
	raw, err := link.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	_ = raw.Control(func(fd uintptr) { c.nodes[1].hbFd = int(fd) })

	now := time.Now()
	ft := c.opts.Timing.FailureTimeout
	for _, nd := range c.nodes {
		nd.lastSeen = now
	}
	if got := c.heartbeatsUnread(now); len(got) != 0 {
		t.Fatalf("unread %v with every server heard just now", got)
	}
	later := now.Add(ft + ft/5) // server 1 silent for over the failure timeout
	c.nodes[0].lastSeen, c.nodes[2].lastSeen = later, later
	if got := c.heartbeatsUnread(later); len(got) != 0 {
		t.Fatalf("unread %v with nothing waiting on server 1's link", got)
	}
	if _, err := sender.Write([]byte("a heartbeat")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for got := c.heartbeatsUnread(later); len(got) != 1 || got[0] != 1; got = c.heartbeatsUnread(later) {
		if time.Now().After(deadline) {
			t.Fatalf("bytes waiting on server 1's link for 5 s: unread %v, want [1]", got)
		}
		time.Sleep(time.Millisecond)
	}
	// Silent for over two failure timeouts: judged whatever waits (a
	// link no longer read must not keep a server from failing).
	if got := c.heartbeatsUnread(now.Add(2*ft + ft/5)); len(got) != 0 {
		t.Fatalf("unread %v for a server silent over two failure timeouts", got)
	}
	// Read: nothing waits any more.
	buf := make([]byte, 64)
	if _, err := link.Read(buf); err != nil {
		t.Fatal(err)
	}
	if got := c.heartbeatsUnread(later); len(got) != 0 {
		t.Fatalf("unread %v after the bytes were read", got)
	}
}
