package coord

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

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
// over and respawned that server itself). The process it started is no
// incarnation the cluster counts: it is killed at once, not left to open
// the live server's data directory beside it. (An attack saw such a
// process recover the live server's log.)
func TestSpawnDeposedKillsTheProcess(t *testing.T) {
	c := testCoordinator(t)
	c.store = &deposingStore{}
	p := &killProc{fakeProc: fakeProc{done: make(chan struct{})}}
	c.opts.Spawner = procSpawner{p}
	c.nodes[1].spec.Host = "localhost"
	err := c.spawn(context.Background(), c.nodes[1], 2, "localhost")
	if err == nil || !errors.Is(err, raft.ErrNotLeader) {
		t.Fatalf("spawn by a deposed coordinator: %v, want an error naming the lost lead", err)
	}
	if !p.killed.Load() {
		t.Fatal("the process a deposed coordinator spawned was left running")
	}
}
