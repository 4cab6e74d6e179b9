package coord

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// deposingStore commits the first state and then refuses: this
// coordinator no longer leads.
type deposingStore struct{ saves atomic.Int32 }

func (s *deposingStore) Save(clusterState) error {
	if s.saves.Add(1) == 1 {
		return nil
	}
	return fmt.Errorf("not committed: %w", raft.ErrNotLeader)
}

type killProc struct {
	fakeProc
	killed atomic.Bool
}

func (p *killProc) Kill() error { p.killed.Store(true); return nil }

type procSpawner struct{ p Process }

func (s procSpawner) Spawn(context.Context, SpawnSpec) (Process, error) { return s.p, nil }

// TestSpawnDeposedKillsTheProcess: a coordinator committed a server's new
// incarnation, and lost the lead before it could commit the process's
// pid (it was stopped, and continued after another coordinator had taken
// over). If that leader respawned the server itself (the committed state
// names a newer incarnation), the process it started is no incarnation
// the cluster counts: it is killed, not left to open the live server's
// data directory beside it (an attack saw such a process recover the
// live server's log). If not, the leader takes it over (decide.New): it
// is left running (a review: it was killed 7 times after the leader had
// re-seeded it and handed its shard back).
func TestSpawnDeposedKillsTheProcess(t *testing.T) {
	for _, tc := range []struct {
		committed uint64 // server 1's incarnation in the committed state
		killed    bool
	}{{3, true}, {2, false}} {
		c := testCoordinator(t)
		c.opts.Timing.RaftElection = 50 * time.Millisecond // timing: exception — how long the test waits to learn the committed state
		c.store = &deposingStore{}
		c.fsm = &fsm{}
		c.fsm.set(clusterState{Nodes: []savedNode{{ID: 0, Inc: 1}, {ID: 1, Inc: tc.committed}, {ID: 2, Inc: 1}}}, false)
		p := &killProc{fakeProc: fakeProc{done: make(chan struct{})}}
		c.opts.Spawner = procSpawner{p}
		c.nodes[1].spec.Host = "localhost"
		err := c.spawn(context.Background(), c.nodes[1], 2, "localhost")
		if err == nil || !errors.Is(err, raft.ErrNotLeader) {
			t.Fatalf("spawn by a deposed coordinator: %v, want an error naming the lost lead", err)
		}
		if p.killed.Load() != tc.killed {
			t.Errorf("committed incarnation %d: the process a deposed coordinator spawned killed %v, want %v", tc.committed, p.killed.Load(), tc.killed)
		}
	}
}
