package main

import (
	"testing"

	"ftkv/wire"
)

// TestReadyServers: the ready line counts the servers the first view
// serves with, and names those down and the shards unavailable (a review:
// "3 servers ready" after a restart without one of them).
func TestReadyServers(t *testing.T) {
	serving := wire.Member{State: wire.StateServing}
	all := wire.View{Servers: []wire.Member{serving, serving, serving},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 2}, {Primary: 2, Secondary: 0}}}
	if got, want := readyServers(all, 3), "3 servers"; got != want {
		t.Errorf("whole cluster: %q, want %q", got, want)
	}
	one := wire.View{Servers: []wire.Member{serving}, Shards: []wire.Placement{{Primary: 0, Secondary: -1}}}
	if got, want := readyServers(one, 1), "1 server"; got != want {
		t.Errorf("one server: %q, want %q", got, want)
	}
	without := wire.View{Servers: []wire.Member{serving, {ID: 1, State: wire.StateDown}, serving},
		Shards: []wire.Placement{{Primary: 0, Secondary: -1}, {Primary: -1, Secondary: -1}, {Primary: 2, Secondary: 0}}}
	if got, want := readyServers(without, 3), "2 of 3 servers (server 1 down, respawned until it starts; shard 1 unavailable: see the log)"; got != want {
		t.Errorf("without server 1: %q, want %q", got, want)
	}
}
