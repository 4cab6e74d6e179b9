package coord

import (
	"slices"
	"testing"

	"ftkv/coord/decide"
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
		got := initialPlacement(3, tc.durable, false, nil, nil, nil, nil)
		for s := range got {
			if got[s] != tc.want[s] {
				t.Errorf("%s: shard %d placed %+v, want %+v", tc.name, s, got[s], tc.want[s])
			}
		}
	}
	if got := initialPlacement(1, []map[int]uint64{{0: 3}}, true, nil, nil, nil, nil); got[0] != (wire.Placement{Primary: 0, Secondary: -1}) {
		t.Errorf("one server: %+v", got[0])
	}
	// A restart where no log holds a copy of shard 1 (both directories
	// lost): unavailable; a first start: home.
	lost := []map[int]uint64{{0: 5, 2: 7}, {0: 5}, {2: 7}}
	if got := initialPlacement(3, lost, true, nil, nil, nil, nil); got[1] != (wire.Placement{Primary: -1, Secondary: -1}) || got[0] != home[0] || got[2] != home[2] {
		t.Errorf("restart without a copy of shard 1: %+v", got)
	}
	if got := initialPlacement(3, lost, false, nil, nil, nil, nil); got[1] != home[1] {
		t.Errorf("first start: shard 1 placed %+v, want home", got[1])
	}
}

// TestInitialPlacementLeavesOut: a server left out of the first view (its
// log failed while the first one was applied) never leads nor follows a
// shard. Its copy of shard 1 had caught up with server 2's during that
// first view (a tie, which the home copy wins): shard 1 was placed on
// it, down and killed (a review). A shard whose only complete copy is
// the left-out server's is unavailable, never served from a copy behind.
func TestInitialPlacementLeavesOut(t *testing.T) {
	out := map[int]bool{1: true}
	tie := []map[int]uint64{{0: 100, 2: 50}, {0: 90, 1: 100}, {1: 100, 2: 50}}
	want := []wire.Placement{{Primary: 0, Secondary: -1}, {Primary: 2, Secondary: -1}, {Primary: 2, Secondary: 0}}
	if got := initialPlacement(3, tie, true, out, nil, nil, nil); !equalPlacements(got, want) {
		t.Errorf("a tie on shard 1: %+v, want %+v", got, want)
	}
	ahead := []map[int]uint64{{0: 100, 2: 50}, {0: 90, 1: 120}, {1: 100, 2: 50}}
	want[1] = wire.Placement{Primary: -1, Secondary: -1}
	if got := initialPlacement(3, ahead, true, out, nil, nil, nil); !equalPlacements(got, want) {
		t.Errorf("the left-out copy of shard 1 ahead: %+v, want %+v", got, want)
	}
}

func equalPlacements(a, b []wire.Placement) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func durableReport(m map[uint32]uint64) []wire.ShardIndex {
	var out []wire.ShardIndex
	for s, i := range m {
		out = append(out, wire.ShardIndex{Shard: s, Index: i})
	}
	return out
}

// TestFirstViewNeverLedByLeftOut: the same through the coordinator's
// first views: server 1 leads no shard in the first, catches up on shard
// 1 during it, and its log fails; the next first view leaves it out of
// every shard (a review found it made the primary of shard 1).
func TestFirstViewNeverLedByLeftOut(t *testing.T) {
	c := testCoordinator(t)
	c.restarting = true
	c.view = wire.View{}
	for i, nd := range c.nodes {
		nd.hb = wire.Heartbeat{ID: uint32(i), Incarnation: nd.inc}
	}
	c.nodes[0].hb.Durable = durableReport(map[uint32]uint64{0: 100, 2: 50})
	c.nodes[1].hb.Durable = durableReport(map[uint32]uint64{0: 90, 1: 80})
	c.nodes[2].hb.Durable = durableReport(map[uint32]uint64{1: 100, 2: 50})
	v1, err := c.commitInitialView(map[int]bool{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c.nodes[1].hb.Durable = durableReport(map[uint32]uint64{0: 90, 1: 100})
	c.nodes[1].hb.Storage.Failed = true
	left := c.failedLogs(v1)
	if len(left) != 1 || left[0] != 1 {
		t.Fatalf("left out %v, want [1] (first view %+v)", left, v1.Shards)
	}
	v2, err := c.commitInitialView(map[int]bool{1: true}, nil)
	if err != nil {
		t.Fatal(err)
	}
	for s, p := range v2.Shards {
		if p.Primary == 1 || p.Secondary == 1 {
			t.Errorf("shard %d placed %+v: on server 1, left out (state %v)", s, p, v2.Servers[1].State)
		}
	}
}

// TestInitialPlacementStaleCopy: a copy outside the record of current
// copies (its server was out while the other copy acknowledged writes
// alone) never leads at a restart, even when it is the only one a log
// reports, or the further one: its shard is unavailable, never served
// stale (a review: 515 of 1,500 acknowledged keys not found).
func TestInitialPlacementStaleCopy(t *testing.T) {
	cur := decide.Current{decide.Both, 1, decide.Both} // shard 1: only server 1's copy
	lostCurrent := []map[int]uint64{{0: 100, 2: 50}, {0: 100}, {1: 80, 2: 50}}
	want := []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: -1, Secondary: -1}, {Primary: 2, Secondary: 0}}
	if got := initialPlacement(3, lostCurrent, true, nil, cur, nil, nil); !equalPlacements(got, want) {
		t.Errorf("shard 1's current copy lost: %+v, want %+v", got, want)
	}
	staleAhead := []map[int]uint64{{0: 100, 2: 50}, {0: 100, 1: 70}, {1: 90, 2: 50}}
	want[1] = wire.Placement{Primary: 1, Secondary: 2}
	if got := initialPlacement(3, staleAhead, true, nil, cur, nil, nil); !equalPlacements(got, want) {
		t.Errorf("shard 1's stale copy further on (fsync no): %+v, want %+v", got, want)
	}
	if got := initialPlacement(3, lostCurrent, true, nil, nil, nil, nil); got[1] != (wire.Placement{Primary: 2, Secondary: 1}) {
		t.Errorf("without a record every copy counts: shard 1 placed %+v", got[1])
	}
}

// TestInitialPlacementWithoutAServer: server 1 did not start at a
// restart (gone: its log unread). Shard 0 is led by server 0 alone; shard
// 1 by server 2's copy only if that copy's log holds every acknowledged
// write (alone: after an orderly stop, or with fsync_secondary), else it
// waits for server 1, the shard's primary at the kill, whose log does.
func TestInitialPlacementWithoutAServer(t *testing.T) {
	durable := []map[int]uint64{{0: 100, 2: 50}, {}, {1: 80, 2: 50}}
	gone := map[int]bool{1: true}
	home := decide.Current{1, 1, 1} // each shard's primary at the kill: its home server
	want := []wire.Placement{{Primary: 0, Secondary: -1}, {Primary: -1, Secondary: -1}, {Primary: 2, Secondary: 0}}
	if got := initialPlacement(3, durable, true, gone, nil, gone, home); !equalPlacements(got, want) {
		t.Errorf("after a kill: %+v, want %+v", got, want)
	}
	if h := waitsFor(3, 1, nil, gone); h != 1 {
		t.Errorf("shard 1 waits for server %d, want 1", h)
	}
	want[1] = wire.Placement{Primary: 2, Secondary: -1}
	if got := initialPlacement(3, durable, true, gone, nil, gone, nil); !equalPlacements(got, want) {
		t.Errorf("after an orderly stop: %+v, want %+v", got, want)
	}
	moved := decide.Current{1, 2, 1} // shard 1 was led by server 2 (failed over) at the kill
	if got := initialPlacement(3, durable, true, gone, nil, gone, moved); !equalPlacements(got, want) {
		t.Errorf("shard 1 led by server 2 at the kill: %+v, want %+v", got, want)
	}
}

// TestAloneWithoutAServer: which copies may lead alone beside a server
// that did not start, from the last committed view and the record.
func TestAloneWithoutAServer(t *testing.T) {
	c := testCoordinator(t)
	gone := map[int]bool{1: true}
	c.lastView = wire.View{Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 2}, {Primary: -1, Secondary: -1}}}
	c.current = decide.Current{decide.Both, decide.Both, 1} // shard 2: server 2's copy alone (it led alone)
	if got, want := c.aloneLocked(gone), (decide.Current{1, 1, 1}); !slices.Equal(got, want) {
		t.Errorf("after a kill: %v, want %v (each primary's; shard 2's sole current copy)", got, want)
	}
	c.lastStopped = true
	if got, want := c.aloneLocked(gone), (decide.Current{decide.Both, decide.Both, 1}); !slices.Equal(got, want) {
		t.Errorf("after an orderly stop: %v, want %v", got, want)
	}
	c.current[2] = decide.Both // two current copies of a shard not served at the stop: none leads alone
	if got := c.aloneLocked(gone); got[2] != 0 {
		t.Errorf("shard 2 unserved at the stop with both copies current: %v, want none", got[2])
	}
	if got := c.aloneLocked(nil); got != nil {
		t.Errorf("nobody missing: %v, want nil", got)
	}
}

// TestAloneAfterAStopThatMissedAServer: an orderly stop that found a
// server already gone (killed just before it: "had exited before the stop
// reached it") synced no log of that server's: its copies that were a
// secondary's (written lazily) may miss acknowledged writes and must not
// lead alone at the next start, as after a kill (an attack: server 1
// killed and the coordinator stopped at once, then started without server
// 0; server 1's copy of shard 0 led, 3 acknowledged writes lost in 2 of
// 10 runs). Its primary's copies (synced before each acknowledgement)
// still count.
func TestAloneAfterAStopThatMissedAServer(t *testing.T) {
	c := testCoordinator(t)
	c.lastView = wire.View{Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 2}, {Primary: 2, Secondary: 0}}}
	c.current = decide.AllCurrent(3)
	c.lastStopped, c.lastUnstopped = true, []int{1}
	got := c.aloneLocked(map[int]bool{0: true})
	want := decide.Current{decide.Bit(3, 0, 0), decide.Both, decide.Both}
	if !slices.Equal(got, want) {
		t.Errorf("server 1 missed by the stop, server 0 gone: %v, want %v (not server 1's secondary copy of shard 0)", got, want)
	}
	c.lastUnstopped = nil
	if got := c.aloneLocked(map[int]bool{0: true}); !slices.Equal(got, decide.AllCurrent(3)) {
		t.Errorf("every server stopped in order: %v, want every current copy", got)
	}
}

// TestNarrowCurrentAcrossTwoStarts: a start without server 1 leaves
// shard 1 unavailable (server 2's copy was a secondary's at the kill) and
// keeps in the record only server 1's copy; a second start, without
// server 2, finds shard 1 without a primary in its last view and lets
// that sole current copy lead (before, both stayed current and neither
// could lead alone).
func TestNarrowCurrentAcrossTwoStarts(t *testing.T) {
	c := testCoordinator(t)
	c.lastView = wire.View{Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 2}, {Primary: 2, Secondary: 0}}}
	c.current = decide.AllCurrent(3)
	gone := map[int]bool{1: true}
	alone := c.aloneLocked(gone)
	first := []wire.Placement{{Primary: 0, Secondary: -1}, {Primary: -1, Secondary: -1}, {Primary: 2, Secondary: 0}}
	cur := narrowCurrent(c.current, first, awaited(3, alone, gone))
	if !cur.Has(3, 1, 1) || cur.Has(3, 1, 2) {
		t.Fatalf("record after the first start: shard 1 %b, want server 1's copy only", cur[1])
	}
	if !slices.Equal(cur[:1], c.current[:1]) || cur[2] != c.current[2] {
		t.Errorf("shards served by the first start changed in the record: %v", cur)
	}
	if h := waitsFor(3, 1, cur, map[int]bool{1: true}); h != 1 {
		t.Errorf("shard 1 waits for server %d, want 1", h)
	}
	c.lastView = wire.View{Shards: first}
	c.current = cur.Next(c.lastView)
	if got := c.aloneLocked(map[int]bool{2: true}); got[1] != decide.Bit(3, 1, 1) {
		t.Errorf("second start without server 2: shard 1 may lead alone from %b, want server 1's copy", got[1])
	}
	if got := narrowCurrent(c.current, first, nil); !slices.Equal(got, c.current) {
		t.Errorf("nobody missing: the record changed to %v", got)
	}
}

// TestNarrowOnlyToAMissingServer: a start after a kill without server 2,
// where server 1 (shard 1's primary at the kill) started without a copy
// of it (its directory lost): shard 1 is unavailable, and its record is
// not narrowed to server 1's copy, which is gone for good; server 2's
// copy stays current and leads when it returns (a review: narrowed, the
// shard never came back).
func TestNarrowOnlyToAMissingServer(t *testing.T) {
	c := testCoordinator(t)
	c.lastView = wire.View{Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 2}, {Primary: 2, Secondary: 0}}}
	c.current = decide.AllCurrent(3)
	gone := map[int]bool{2: true}
	shards := []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: -1, Secondary: -1}, {Primary: -1, Secondary: -1}}
	cur := narrowCurrent(c.current, shards, awaited(3, c.aloneLocked(gone), gone))
	if !cur.Has(3, 1, 2) {
		t.Errorf("shard 1: record %b drops server 2's copy, the only one left", cur[1])
	}
	if cur[2] != decide.Bit(3, 2, 2) {
		t.Errorf("shard 2: record %b, want server 2's copy only (its primary at the kill, which did not start)", cur[2])
	}
}
