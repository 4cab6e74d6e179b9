package server

import (
	"testing"

	"github.com/rs/zerolog"

	"ftkv/wire"
)

// TestReviewSnapshotWriteBeforeRotation: a write is logged (and
// acknowledged) after a snapshot read the logged indexes but before it
// rotated the log. Its record is in a segment the snapshot covers and
// removes, and its entry is in the snapshot's table; no write follows.
// Recovered, the copy holds every write: it must be reported complete at
// that write's index, not taken for a snapshot ahead of its log (a
// partial copy: re-seeded, never chosen, and the only copy of a shard
// led alone then makes it unavailable).
func TestReviewSnapshotWriteBeforeRotation(t *testing.T) {
	fc := startFakeCoord(t)
	dirA, dirB := abandonedDir(t), abandonedDir(t)
	a, _ := startDurableServer(t, fc, 0, dirA, "always", false)
	b, _ := startDurableServer(t, fc, 1, dirB, "always", false)
	pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b)
	cn := dialConn(t, a.client, false)
	ks := keysOf("snaprot", 0, 2, 2)
	putOK(t, cn, ks[0], "v0")
	snapshotBeforeRotate = func() { putOK(t, cn, ks[1], "v1") }
	_, err := a.snapshot()
	snapshotBeforeRotate = nil
	if err != nil {
		t.Fatal(err)
	}
	want := a.dur.loggedCopy()[0]
	a.dur.snapMu.Lock()
	defer a.dur.snapMu.Unlock()
	s, err := New(Config{ID: 0, Incarnation: 9, CoordAddr: "127.0.0.1:1", Secret: testSecret,
		DataDir: dirA, Fsync: "always", Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.dur.log.Close()
	if got := indexOf(s.dur.indexes(), 0); got != want {
		t.Errorf("shard 0 recovered at %d (0: partial), want %d (the last write, which it holds)", got, want)
	}
	for i, k := range ks {
		if v, ok := s.tableFor(0).get([]byte(k)); !ok || string(v) != []string{"v0", "v1"}[i] {
			t.Errorf("recovered %s = %q %v", k, v, ok)
		}
	}
}
