package coord

import (
	"testing"

	"ftkv/wire"
)

func TestInitialPlacement(t *testing.T) {
	home := []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 2}, {Primary: 2, Secondary: 0}}
	for _, tc := range []struct {
		name    string
		durable []map[int]uint64
		want    []wire.Placement
	}{
		{"no logs", []map[int]uint64{{}, {}, {}}, home},
		{"equal copies", []map[int]uint64{{0: 5, 2: 7}, {1: 6, 0: 5}, {2: 7, 1: 6}}, home},
		{"the primary's copy is ahead", []map[int]uint64{{0: 9, 2: 7}, {1: 6, 0: 5}, {2: 7, 1: 6}}, home},
		{"the secondary's copy is ahead", []map[int]uint64{{0: 5, 2: 7}, {1: 6, 0: 9}, {2: 7, 1: 6}},
			[]wire.Placement{{Primary: 1, Secondary: 0}, {Primary: 1, Secondary: 2}, {Primary: 2, Secondary: 0}}},
		{"the home copy is lost or re-seeding", []map[int]uint64{{0: 5, 2: 7}, {0: 5}, {2: 7, 1: 6}},
			[]wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 2, Secondary: 1}, {Primary: 2, Secondary: 0}}},
		{"an index of 0 still beats no copy", []map[int]uint64{{}, {0: 0}, {}},
			[]wire.Placement{{Primary: 1, Secondary: 0}, {Primary: 1, Secondary: 2}, {Primary: 2, Secondary: 0}}},
	} {
		got := initialPlacement(3, tc.durable, false)
		for s := range got {
			if got[s] != tc.want[s] {
				t.Errorf("%s: shard %d placed %+v, want %+v", tc.name, s, got[s], tc.want[s])
			}
		}
	}
	if got := initialPlacement(1, []map[int]uint64{{0: 3}}, true); got[0] != (wire.Placement{Primary: 0, Secondary: -1}) {
		t.Errorf("one server: %+v", got[0])
	}
	// A restart where no log holds a copy of shard 1 (both directories
	// lost): unavailable; a first start: home.
	lost := []map[int]uint64{{0: 5, 2: 7}, {0: 5}, {2: 7}}
	if got := initialPlacement(3, lost, true); got[1] != (wire.Placement{Primary: -1, Secondary: -1}) || got[0] != home[0] || got[2] != home[2] {
		t.Errorf("restart without a copy of shard 1: %+v", got)
	}
	if got := initialPlacement(3, lost, false); got[1] != home[1] {
		t.Errorf("first start: shard 1 placed %+v, want home", got[1])
	}
}
