package server

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/timing"
	"ftkv/wire"
)

// TestSetCoordFromAnOlderTermRefused: an order to heartbeat elsewhere
// (SETCOORD) carries the sending leader's Raft term, and a server refuses
// one from a term older than the newest it knows of (from an earlier
// order or a view). Without it, a server that resumed from a freeze and
// found orders from a deposed, frozen leader and from the current one
// applied them in arrival order: the deposed one's last, it heartbeated to
// a leader that no longer led (a review's F-b).
func TestSetCoordFromAnOlderTermRefused(t *testing.T) {
	const term = 5
	oldLeader, newLeader := startFakeCoord(t), startFakeCoord(t)
	start := func(id uint32) *testServer {
		ts, _ := runTestServer(t, oldLeader, Config{ID: id, Incarnation: 1, CoordAddr: oldLeader.ln.Addr().String(),
			Secret: testSecret, DumpDir: t.TempDir(), Timing: timing.New(200 * time.Millisecond), Loops: 1,
			Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
		return ts
	}
	a, b := start(0), start(1)
	pushView(t, wire.View{Epoch: term<<32 | 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b)
	ctl := dialConn(t, a.ctl, true)
	order := func(term uint64, to *fakeCoord) wire.Status {
		t.Helper()
		ans, err := ctl.do(&wire.Frame{Op: wire.OpSetCoord, Epoch: term << 32, Value: []byte(to.ln.Addr().String())}, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		return ans.Status
	}
	// stays waits until fc has three of a's heartbeats sent after the
	// call (10 s at most) and reports whether other (if any) had none
	// meanwhile.
	// (It slept five heartbeat periods, 200 ms, and wanted one within
	// the last two, 80 ms: a heartbeat loop or fake coordinator left
	// unscheduled that long on a loaded machine failed it.)
	stays := func(fc, other *fakeCoord) bool {
		t.Helper()
		mark := time.Now()
		since := func(f *fakeCoord) (n int) {
			if f == nil {
				return 0
			}
			for _, at := range f.arrivals(a.cfg.ID) {
				if !at.Before(mark) {
					n++
				}
			}
			return n
		}
		for since(fc) < 3 {
			if time.Since(mark) > 10*time.Second {
				t.Logf("%d heartbeats in 10 s", since(fc))
				return false
			}
			time.Sleep(10 * time.Millisecond)
		}
		return since(other) == 0
	}

	if st := order(term-1, newLeader); st == wire.StatusOK {
		t.Errorf("an order from term %d accepted after a view of term %d", term-1, term)
	}
	if !stays(oldLeader, newLeader) {
		t.Fatalf("a's heartbeats moved on an order from term %d after a view of term %d", term-1, term)
	}
	if st := order(term+1, newLeader); st != wire.StatusOK {
		t.Fatalf("an order from a newer term (%d) answered %s", term+1, st)
	}
	// (Three heartbeats at the new leader: any sent to the old one
	// before the move have arrived long since.)
	if !stays(newLeader, nil) {
		t.Fatal("a's heartbeats did not move on an order from a newer term")
	}
	// The deposed leader's order arrives last.
	if st := order(term, oldLeader); st == wire.StatusOK {
		t.Errorf("an order from term %d accepted after one from term %d", term, term+1)
	}
	if !stays(newLeader, oldLeader) {
		t.Fatalf("a's heartbeats left the leader of term %d on an order from term %d", term+1, term)
	}
	// The same leader may send its order again (readoptLate).
	if st := order(term+1, newLeader); st != wire.StatusOK {
		t.Fatalf("the same term's order sent again answered %s", st)
	}
}
