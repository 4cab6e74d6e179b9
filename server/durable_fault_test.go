package server

import (
	"errors"
	"fmt"
	"testing"
	"time"

	"ftkv/internal/wal"
	"ftkv/wire"
)

// diskPair starts two servers, server 0 primary of shard 0 and secondary of
// shard 1; the one named faulty logs to a StrictMemFS the test can fail,
// the other has no log.
func diskPair(t *testing.T, faulty uint32) (a, b *testServer, m *wal.StrictMemFS) {
	t.Helper()
	fc := startFakeCoord(t)
	m = wal.NewStrictMemFS()
	withFS := func(c *Config) { c.walFS = m }
	start := func(id uint32) *testServer {
		if id == faulty {
			s, _ := startDurableServer(t, fc, id, t.TempDir(), "always", false, withFS)
			return s
		}
		s, _ := startDurableServer(t, fc, id, "", "", false)
		return s
	}
	a, b = start(0), start(1)
	pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b)
	return a, b, m
}

// TestPrimaryDiskErrorRefusesEveryWrite: once its log fails, a primary
// answers every write UNAVAILABLE, promptly, however many come.
func TestPrimaryDiskErrorRefusesEveryWrite(t *testing.T) {
	a, _, m := diskPair(t, 0)
	keys := keysOf("disk", 0, 2, 10)
	cn := dialConn(t, a.client, false)
	// (Before the fault an UNAVAILABLE answer, a lease lapsing on a
	// loaded machine, is retried as a client does.)
	if ans, err := cn.write(&wire.Frame{Op: wire.OpPut, Key: []byte(keys[0]), Value: []byte("v")}, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("put before the fault: %v %v %s", err, ans.Status, ans.Value)
	}
	eio := errors.New("input/output error")
	m.Fail(eio, eio)
	for i := 1; i < len(keys); i++ {
		ans, err := cn.do(&wire.Frame{Op: wire.OpPut, Key: []byte(keys[i]), Value: []byte("v")}, 3*time.Second)
		if err != nil {
			t.Fatalf("put %d after the disk error: no answer: %v", i, err)
		}
		if ans.Status != wire.StatusUnavailable {
			t.Fatalf("put %d after the disk error answered %v %s, want UNAVAILABLE", i, ans.Status, ans.Value)
		}
	}
}

// TestSecondaryDiskErrorStopsAcknowledging: once its log fails, a
// secondary acknowledges neither writes nor pings, so its primary commits
// nothing more and its heartbeats report the link stalled (the
// coordinator then fails the secondary).
func TestSecondaryDiskErrorStopsAcknowledging(t *testing.T) {
	a, b, m := diskPair(t, 1)
	keys := keysOf("disk", 0, 2, 10)
	cn := dialConn(t, a.client, false)
	put := func(i int, d time.Duration) (wire.Frame, error) {
		return cn.do(&wire.Frame{Op: wire.OpPut, Key: []byte(keys[i]), Value: []byte(fmt.Sprint(i))}, d)
	}
	if ans, err := cn.write(&wire.Frame{Op: wire.OpPut, Key: []byte(keys[0]), Value: []byte("0")}, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("put before the fault: %v %v %s", err, ans.Status, ans.Value)
	}
	eio := errors.New("input/output error")
	m.Fail(eio, eio)
	// The first write after the fault may be acknowledged before the log
	// reports it (a secondary without -fsync-secondary acknowledges what it
	// applied); from the error on, nothing is.
	i := 1
	for ; b.dur.log.Err() == nil; i++ {
		if i == len(keys) {
			t.Fatal("the secondary's log never reported the disk error")
		}
		_, _ = put(i, time.Second)
	}
	time.Sleep(50 * time.Millisecond)
	if ans, err := put(i, 1500*time.Millisecond); err == nil && ans.Status == wire.StatusOK {
		t.Fatalf("a write was acknowledged through a secondary whose log failed")
	}
	stalled := false
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && !stalled; time.Sleep(20 * time.Millisecond) {
		for _, h := range a.linkReports(time.Now()) {
			stalled = stalled || (h.Shard == 0 && h.Secondary == 1)
		}
	}
	if !stalled {
		t.Fatal("the primary's heartbeats never reported its link to the failed secondary stalled")
	}
}
