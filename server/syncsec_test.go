package server

import (
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/wire"
)

// pairOfTwo starts two servers, a leading shard 0 with b as its secondary
// and b leading shard 1 with a as its secondary, with the log's fsync
// policy and secondary syncing given (fsync "": no log).
func pairOfTwo(t *testing.T, fsync string, syncSec bool, mods ...func(*Config)) (a, b *testServer) {
	t.Helper()
	return pairOfTwoOn(t, startFakeCoord(t), fsync, syncSec, mods...)
}

// pairOfTwoOn is pairOfTwo under the coordinator fc.
func pairOfTwoOn(t *testing.T, fc *fakeCoord, fsync string, syncSec bool, mods ...func(*Config)) (a, b *testServer) {
	t.Helper()
	dir := func() string {
		if fsync == "" {
			return ""
		}
		return t.TempDir()
	}
	a, _ = startDurableServer(t, fc, 0, dir(), fsync, syncSec, mods...)
	b, _ = startDurableServer(t, fc, 1, dir(), fsync, syncSec, mods...)
	pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b)
	return a, b
}

// TestSyncedSecondaryAcksOnlyWhatItSynced: with fsync_secondary, a write
// is acknowledged only once the secondary's log synced it (800 ms here).
// It was acknowledged at once: the secondary's acknowledgement meant for
// after the sync also went at once (a shadowed variable), and its answers
// to pings carried the index it had applied, which the primary committed
// up to (about one ping period later).
func TestSyncedSecondaryAcksOnlyWhatItSynced(t *testing.T) {
	var delay atomic.Int64
	a, b := pairOfTwo(t, "always", true, func(c *Config) {
		if c.ID == 1 {
			c.walFS = slowFS{sync: &delay}
		}
	})
	_ = b
	cn := dialConn(t, a.client, false)
	k := keysOf("synced", 0, 2, 1)[0]
	delay.Store(int64(800 * time.Millisecond))
	start := time.Now()
	ans, err := cn.doRetry(&wire.Frame{Op: wire.OpPut, Client: 1, Seq: 1, Key: []byte(k), Value: []byte("v")}, 10*time.Second)
	took := time.Since(start)
	delay.Store(0)
	if err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("put: %v %v %s", err, ans.Status, ans.Value)
	}
	t.Logf("a write acknowledged in %s with the secondary's fsync taking 800 ms", took.Round(time.Millisecond))
	if took < 750*time.Millisecond {
		t.Errorf("acknowledged after %s, before the secondary's fsync of 800 ms could end", took.Round(time.Millisecond))
	}
}

// TestSyncedSecondaryReconnectAcksOnlyWhatItSynced: as above, and the
// link breaks 200 ms into the secondary's 1.5 s fsync. The new link's
// HELLO answer acknowledged the index the secondary had applied, and the
// primary committed the write at once (a review). Now it acknowledges
// what was synced, and the log's callback acknowledges the rest on the
// new link once synced: the write is acknowledged after the fsync, and
// not left waiting.
func TestSyncedSecondaryReconnectAcksOnlyWhatItSynced(t *testing.T) {
	var delay atomic.Int64
	a, _ := pairOfTwo(t, "always", true, func(c *Config) {
		if c.ID == 1 {
			c.walFS = slowFS{sync: &delay}
		}
	})
	cn := dialConn(t, a.client, false)
	k := keysOf("hello", 0, 2, 1)[0]
	delay.Store(int64(1500 * time.Millisecond))
	defer delay.Store(0)
	start := time.Now()
	go func() {
		time.Sleep(200 * time.Millisecond)
		_, l := primaryLink(a, 0)
		l.fail(errors.New("test: link cut"))
	}()
	// A retry of the same client and sequence number waits for the
	// write in flight: the lease may lapse while the link is down and a
	// loaded machine delays the coordinator's heartbeat answers (CI).
	ans, err := cn.doRetry(&wire.Frame{Op: wire.OpPut, Client: 1, Seq: 1, Key: []byte(k), Value: []byte("v")}, 10*time.Second)
	took := time.Since(start)
	if err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("put: %v %v %s", err, ans.Status, ans.Value)
	}
	t.Logf("acknowledged after %s; the secondary's fsync takes 1.5 s, its link was cut after 200 ms", took.Round(time.Millisecond))
	if took < 1400*time.Millisecond {
		t.Errorf("acknowledged after %s, before the secondary's 1.5 s fsync could end", took.Round(time.Millisecond))
	}
}
