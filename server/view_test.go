package server

import (
	"testing"

	"ftkv/wire"
)

// TestEqualEpochDifferentView (hole 5): a server refuses a view whose
// epoch equals the one it holds but whose content differs (a restarted
// coordinator that reused the epoch number for another view); the same
// view again (a re-push) is accepted.
func TestEqualEpochDifferentView(t *testing.T) {
	s := &Server{cfg: Config{ID: 0, Incarnation: 1}}
	a := wire.View{Epoch: 5, Servers: []wire.Member{{ID: 0, Incarnation: 1, State: wire.StateServing, Addr: "127.0.0.1:1"},
		{ID: 1, Incarnation: 1, State: wire.StateServing, Addr: "127.0.0.1:2"}},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}
	cur := &viewState{v: a}
	if _, err := s.checkView(cur, a); err != nil {
		t.Fatalf("the same view again: %v", err)
	}
	b := a
	b.Shards = []wire.Placement{{Primary: 0, Secondary: -1}, {Primary: 0, Secondary: -1}}
	b.Servers = append([]wire.Member(nil), a.Servers...)
	b.Servers[1].State = wire.StateDead
	if _, err := s.checkView(cur, b); err == nil {
		t.Fatal("a different view with the same epoch was accepted")
	}
	b.Epoch = 6
	if _, err := s.checkView(cur, b); err != nil {
		t.Fatalf("the next epoch: %v", err)
	}
}
