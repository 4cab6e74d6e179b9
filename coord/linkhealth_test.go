package coord

import (
	"testing"
	"time"

	"ftkv/wire"
)

// ringView is 3 servers, server i primary of shard i and secondary of i-1.
func ringView() wire.View {
	v := wire.View{Epoch: 5}
	for i := 0; i < 3; i++ {
		v.Servers = append(v.Servers, wire.Member{ID: uint32(i), Incarnation: 1, State: wire.StateServing})
		v.Shards = append(v.Shards, wire.Placement{Primary: int32(i), Secondary: int32((i + 1) % 3)})
	}
	return v
}

func TestUnreachableSecondary(t *testing.T) {
	const to = 500 * time.Millisecond
	stall := func(shard, sec uint32, inc uint64, d time.Duration) wire.LinkHealth {
		return wire.LinkHealth{Shard: shard, Secondary: sec, Incarnation: inc, Stalled: d}
	}
	for _, tc := range []struct {
		name    string
		view    func(v *wire.View)
		failed  map[int]bool
		reports []linkReport
		want    int // -1: none
	}{
		{"stalled past the timeout", nil, nil, []linkReport{{0, []wire.LinkHealth{stall(0, 1, 1, to+1)}}}, 1},
		{"not yet past the timeout", nil, nil, []linkReport{{0, []wire.LinkHealth{stall(0, 1, 1, to)}}}, -1},
		{"reporter does not lead the shard", nil, nil, []linkReport{{2, []wire.LinkHealth{stall(0, 1, 1, 2*to)}}}, -1},
		{"report about a former incarnation", nil, nil, []linkReport{{0, []wire.LinkHealth{stall(0, 1, 0, 2*to)}}}, -1},
		{"secondary already dropped", func(v *wire.View) { v.Shards[0].Secondary = -1 }, nil,
			[]linkReport{{0, []wire.LinkHealth{stall(0, 1, 1, 2*to)}}}, -1},
		{"re-seeding secondary", func(v *wire.View) {
			v.Servers[1].State = wire.StateReseeding
			v.Shards[1] = wire.Placement{Primary: 2, Secondary: -1}
		}, nil,
			[]linkReport{{0, []wire.LinkHealth{stall(0, 1, 1, 2*to)}}}, 1},
		{"other failures this round", nil, map[int]bool{2: true}, []linkReport{{0, []wire.LinkHealth{stall(0, 1, 1, 2*to)}}}, -1},
		{"secondary holds the last copy of its own shard", func(v *wire.View) { v.Servers[2].State = wire.StateReseeding }, nil,
			[]linkReport{{0, []wire.LinkHealth{stall(0, 1, 1, 2*to)}}}, -1},
		{"reporter not serving", func(v *wire.View) { v.Servers[0].State = wire.StateDown }, nil,
			[]linkReport{{0, []wire.LinkHealth{stall(0, 1, 1, 2*to)}}}, -1},
		{"longest stall first", nil, nil, []linkReport{
			{0, []wire.LinkHealth{stall(0, 1, 1, 2*to)}},
			{1, []wire.LinkHealth{stall(1, 2, 1, 3*to)}},
		}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v := ringView()
			if tc.view != nil {
				tc.view(&v)
			}
			failed := tc.failed
			if failed == nil {
				failed = map[int]bool{}
			}
			j, _, _, ok := unreachableSecondary(v, failed, tc.reports, to)
			got := -1
			if ok {
				got = j
			}
			if got != tc.want {
				t.Fatalf("victim %d, want %d", got, tc.want)
			}
		})
	}
}
