package server

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/timing"
	"ftkv/wire"
)

// TestResetCopyForgetsItsWritesOutcomes: a secondary applies a write its
// primary never commits (its answer is held), and every process stops.
// At the restart the secondary's copy is ahead of the primary's log, so
// it is re-seeded in full: the write is gone from its table, and its
// recorded outcome must go with it. Then the primary dies, the secondary
// is promoted, and the client retries the write there: it must be
// applied, not answered OK from the outcome of a write that no copy holds.
// (An end-to-end run lost 1 to 3 acknowledged keys this way: each one a
// put in flight when every process was killed, retried after the
// restart, answered OK by the re-seeded server once it led the shard.)
// Variants: the secondary's outcome is in a snapshot taken before the
// stop, not only in its log; the re-seeded secondary restarts before it
// is promoted (its log replays the reset).
func TestResetCopyForgetsItsWritesOutcomes(t *testing.T) {
	for _, c := range []struct {
		name                 string
		snapshot, old, again bool
	}{{"log", false, false, false}, {"snapshot", true, false, false}, {"snapshot-before-origins", true, true, false},
		{"restart", false, false, true}, {"snapshot-restart", true, false, true}} {
		t.Run(c.name, func(t *testing.T) { testResetCopyForgets(t, c.snapshot, c.old, c.again) })
	}
}

// testResetCopyForgets runs the scenario; with old, the secondary's
// snapshot is rewritten as one written before records had origins (an
// upgrade in place).
func testResetCopyForgets(t *testing.T, snapshot, old, again bool) {
	fc := startFakeCoord(t)
	dirs := []string{abandonedDir(t), abandonedDir(t)}
	// A failure timeout of 1 s: a lease of 240 ms lapsed under make
	// test's load, the write was answered "lost its lease" and its retry
	// took another index than the ones this test counts.
	tm := timing.New(time.Second)
	nop := func(c *Config) { c.Logger = zerolog.Nop(); c.Timing = tm } // (link goroutines may log after the test)
	a, stopA := startDurableServer(t, fc, 0, dirs[0], "always", false, nop)
	b, stopB := startDurableServer(t, fc, 1, dirs[1], "always", false, nop)
	px := startHoldProxy(t, b.peer) // b's answers to its primary a
	pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, px.addr())},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b)
	keys := keysOf("reset-dedup", 0, 2, 6)
	put := func(srv *testServer, k string, f *wire.Frame) wire.Frame {
		t.Helper()
		return putValue(t, srv, k, f)
	}
	for _, k := range keys[:5] {
		if ans := put(a, k, &wire.Frame{}); ans.Status != wire.StatusOK {
			t.Fatalf("put %s: %v %s", k, ans.Status, ans.Value)
		}
	}
	// The write in flight: b applies (and logs) it, a never hears back.
	px.hold(true)
	const client, seq = 77, 1
	late := keys[5]
	go func() {
		cn := dialConn(t, a.client, false)
		_, _ = cn.do(&wire.Frame{Op: wire.OpPut, Client: client, Seq: seq, Floor: seq, Key: []byte(late), Value: []byte("v-" + late)}, 30*time.Second)
	}()
	deadline := time.Now().Add(10 * time.Second)
	for b.dur.loggedCopy()[0] < 6 {
		if time.Now().After(deadline) {
			t.Fatalf("b logged shard 0 up to %d, want 6", b.dur.loggedCopy()[0])
		}
		time.Sleep(5 * time.Millisecond)
	}
	if snapshot {
		if _, err := b.snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	stopA()
	stopB()
	if old {
		withoutOrigins(t, dirs[1])
	}
	if got := a.dur.loggedCopy()[0]; got != 5 {
		t.Fatalf("a logged shard 0 up to %d, want 5 (the last write never committed)", got)
	}

	inc2 := func(c *Config) { c.Incarnation = 2; c.Logger = zerolog.Nop(); c.Timing = tm }
	a2, _ := startDurableServer(t, fc, 0, dirs[0], "always", false, inc2)
	b2, stopB2 := startDurableServer(t, fc, 1, dirs[1], "always", false, inc2)
	if _, ok := b2.tableFor(0).get([]byte(late)); !ok {
		t.Fatalf("b recovered shard 0 without the write it applied: the test proves nothing")
	}
	if snapshot && !old {
		// Again, its high water now 6: a restart after the re-seeding
		// must not take that from it.
		if _, err := b2.snapshot(); err != nil {
			t.Fatal(err)
		}
	}
	// The restart: a's copy (index 5) leads shard 0; b's (index 6) is
	// re-seeded in full from it.
	pushView(t, wire.View{Epoch: 2, Servers: []wire.Member{member(a2, a2.peer), member(b2, b2.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a2, b2)
	waitSeeded(t, b2, 0, 10*time.Second)
	if _, ok := b2.tableFor(0).get([]byte(late)); ok {
		t.Fatalf("b's re-seeded copy still holds the write its primary never committed")
	}
	// Nor its index: a hand-back now would make b the primary above
	// index 6, and a's writes in flight up to there would be taken as
	// b's (handback.go), though b never applied them.
	if got := b2.lastApplied(0); got != 5 {
		t.Fatalf("b's re-seeded copy is at index %d, want its primary's 5", got)
	}
	if again {
		// Once its log holds the re-seeding's end (appended after the
		// copy is seeded; before that a restart recovers the copy as it
		// was, and re-seeds it again).
		for deadline := time.Now().Add(10 * time.Second); b2.dur.isPartial(0); {
			if time.Now().After(deadline) {
				t.Fatal("b's log never held the end of its re-seeding")
			}
			time.Sleep(5 * time.Millisecond)
		}
		stopB2()
		b2, _ = startDurableServer(t, fc, 1, dirs[1], "always", false, func(c *Config) { c.Incarnation = 3; c.Logger = zerolog.Nop(); c.Timing = tm })
		if got := b2.lastApplied(0); got != 5 {
			t.Fatalf("b's re-seeded copy recovered at index %d, want its primary's 5", got)
		}
	}
	// a dies; b leads shard 0 and the client retries its write there.
	deadA := member(a2, a2.peer)
	deadA.State = wire.StateDead
	pushView(t, wire.View{Epoch: 3, Servers: []wire.Member{deadA, member(b2, b2.peer)},
		Shards: []wire.Placement{{Primary: 1, Secondary: -1}, {Primary: 1, Secondary: -1}}}, b2)
	ans := put(b2, late, &wire.Frame{Flags: wire.FlagRetry, Client: client, Seq: seq, Floor: seq})
	if ans.Status != wire.StatusOK {
		t.Fatalf("retried put at the new primary: %v %s", ans.Status, ans.Value)
	}
	var got wire.Frame
	for deadline := time.Now().Add(10 * time.Second); ; {
		var err error
		got, err = dialConn(t, b2.client, false).do(&wire.Frame{Op: wire.OpGet, Key: []byte(late)}, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if got.Status != wire.StatusUnavailable || time.Now().After(deadline) {
			break // (UNAVAILABLE is a retry, as a client makes it)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if got.Status != wire.StatusOK || string(got.Value) != "v-"+late {
		t.Fatalf("the retried put was answered OK, then get %s = %v %q: an acknowledged write is lost", late, got.Status, got.Value)
	}
}

// withoutOrigins rewrites the latest snapshot in dir as one written before
// session records had origins: every 'D' section's shard field 0.
func withoutOrigins(t *testing.T, dir string) {
	t.Helper()
	segs, err := snapshots(dir)
	if err != nil || len(segs) == 0 {
		t.Fatalf("no snapshot in %s: %v", dir, err)
	}
	path := filepath.Join(dir, fmt.Sprintf("%s%016x", snapPrefix, segs[len(segs)-1]))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for p := 20; p+9 <= len(b)-4 && b[p] != 'Z'; p += 9 + int(binary.BigEndian.Uint32(b[p+5:])) {
		if b[p] == 'D' {
			binary.BigEndian.PutUint32(b[p+1:], 0)
			n++
		}
	}
	if n == 0 {
		t.Fatal("the snapshot holds no session records: the test proves nothing")
	}
	binary.BigEndian.PutUint32(b[len(b)-4:], crc32.Checksum(b[:len(b)-4], castagnoli))
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// putValue puts k = "v-"+k at srv with f's client, sequence and flags
// (retrying while the shard is UNAVAILABLE) and returns the answer.
func putValue(t *testing.T, srv *testServer, k string, f *wire.Frame) wire.Frame {
	t.Helper()
	cn := dialConn(t, srv.client, false)
	f.Op, f.Key, f.Value = wire.OpPut, []byte(k), []byte("v-"+k)
	var ans wire.Frame
	var err error
	if f.Client == 0 {
		// A client of its own: a retry of a write the primary applied
		// before its lease lapsed must not apply it again (another
		// index than the ones the tests count).
		ans, err = cn.write(f, 10*time.Second)
	} else {
		ans, err = cn.doRetry(f, 10*time.Second)
	}
	if err != nil {
		t.Fatalf("put %s: %v", k, err)
	}
	return ans
}
