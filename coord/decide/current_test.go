package decide

import (
	"slices"
	"testing"

	"ftkv/wire"
)

// A view names the current copies: the primary's always, the
// secondary's only while its server serves (a re-seeding one is not
// whole); a shard without a primary keeps what it had.
func TestCurrentNext(t *testing.T) {
	v := wire.View{
		Servers: []wire.Member{{State: wire.StateServing}, {State: wire.StateReseeding}, {State: wire.StateServing}},
		Shards: []wire.Placement{
			{Primary: 0, Secondary: 1},  // server 1 re-seeding its copy
			{Primary: 2, Secondary: -1}, // failed over, no secondary yet
			{Primary: -1, Secondary: -1},
		},
	}
	got := Current{Both, Both, 2}.Next(v)
	if want := (Current{1, 2, 2}); !slices.Equal(got, want) {
		t.Errorf("next record %v, want %v", got, want)
	}
	if got := Current(nil).Next(v); !slices.Equal(got, Current{1, 2, Both}) {
		t.Errorf("from no record: %v", got)
	}
	v.Servers[1].State = wire.StateServing
	v.Shards[1] = wire.Placement{Primary: 2, Secondary: 1} // a hand-back pending
	if got := (Current{1, 2, 2}).Next(v); !slices.Equal(got, Current{Both, Both, 2}) {
		t.Errorf("whole again: %v", got)
	}
	for _, tc := range []struct {
		cur       Current
		s, holder int
		want      bool
	}{
		{nil, 1, 2, true}, {Current{Both, 1, Both}, 1, 2, false}, {Current{Both, 1, Both}, 1, 1, true},
		{Current{Both, Both, 2}, 2, 0, true}, {Current{Both, Both, 2}, 2, 2, false}, {Current{Both, Both, Both}, 0, 2, false},
	} {
		if got := tc.cur.Has(3, tc.s, tc.holder); got != tc.want {
			t.Errorf("%v.Has(shard %d, server %d) = %v", tc.cur, tc.s, tc.holder, got)
		}
	}
}
