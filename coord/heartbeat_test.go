package coord

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/timing"
	"ftkv/wire"
)

type fakeProc struct{ done chan struct{} }

func (p *fakeProc) PID() int              { return 0 }
func (p *fakeProc) Kill() error           { return nil }
func (p *fakeProc) Done() <-chan struct{} { return p.done }

// testCoordinator is three serving servers in their home roles at epoch 1,
// without processes or sockets.
func testCoordinator(t *testing.T) *Coordinator {
	tm := timing.Default()
	c := &Coordinator{opts: Options{Timing: tm, Dir: t.TempDir(), Cluster: &Cluster{}}, log: zerolog.Nop(), n: 3,
		kick: make(chan struct{}, 1), regCh: make(chan struct{}, 1), store: &memStore{}, leading: true}
	v := wire.View{Epoch: 1}
	now := time.Now()
	for i := 0; i < 3; i++ {
		v.Servers = append(v.Servers, wire.Member{ID: uint32(i), Incarnation: 1, State: wire.StateServing})
		v.Shards = append(v.Shards, wire.Placement{Primary: int32(i), Secondary: int32((i + 1) % 3)})
		c.nodes = append(c.nodes, &node{id: i, inc: 1, proc: &fakeProc{done: make(chan struct{})}, lastSeen: now,
			reported: true, confirmed: 1})
	}
	c.view = v
	c.viewEnc = wire.AppendView(nil, &v)
	return c
}

// TestHeartbeatAfterFailedDecision (hole 3): once the coordinator has
// decided that a silent member failed, no heartbeat of that member may
// renew its lease, not even one answered while the demoted view is being
// published (its secondary is about to serve its shard).
func TestHeartbeatAfterFailedDecision(t *testing.T) {
	c := testCoordinator(t)
	c.nodes[1].lastSeen = time.Now().Add(-2 * c.opts.Timing.FailureTimeout)
	renewed := make(chan bool, 1)
	c.testHookPublish = func() {
		// A heartbeat of the failed member arrives while the view is
		// being published.
		renewed <- c.heartbeat(wire.Heartbeat{ID: 1, Incarnation: 1, Epoch: 1}) == wire.StatusOK
	}
	c.reconcile()
	select {
	case r := <-renewed:
		if r {
			t.Fatal("a heartbeat of a member declared failed renewed its lease during the publication")
		}
	default:
		t.Fatal("the silent member was not failed over")
	}
	if c.view.Epoch != 2 || c.view.Servers[1].State == wire.StateServing {
		t.Fatalf("view after the failure: epoch %d, server 1 state %d", c.view.Epoch, c.view.Servers[1].State)
	}
	if st := c.heartbeat(wire.Heartbeat{ID: 1, Incarnation: 1, Epoch: 1}); st == wire.StatusOK {
		t.Fatal("a heartbeat of the failed member renewed its lease after the publication")
	}
	if st := c.heartbeat(wire.Heartbeat{ID: 0, Incarnation: 1, Epoch: 1}); st != wire.StatusOK {
		t.Fatalf("a live member's heartbeat answered %s", st)
	}
}

// TestViewDurableBeforeVisible (hole 5): a new view is written to the
// coordinators' group (its store) before anyone can see it (clients' view requests, status,
// re-pushes, heartbeat answers): a coordinator restarted after a server
// applied a view must never reuse its epoch for another.
func TestViewDurableBeforeVisible(t *testing.T) {
	c := testCoordinator(t)
	c.nodes[1].lastSeen = time.Now().Add(-2 * c.opts.Timing.FailureTimeout)
	seen := make(chan uint64, 4)
	c.testHookSave = func() { seen <- c.View().Epoch }
	c.reconcile()
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
