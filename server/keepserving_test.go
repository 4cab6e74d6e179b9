package server

import (
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/wire"
)

// TestPrimaryServesWhileNewSecondaryConnects: a primary that keeps its
// shard while the view gives it a new secondary goes on answering reads
// while the link to that secondary is being connected (here: held up),
// and the writes made meanwhile are acknowledged once it is up and hold
// on the secondary. (It answered WRONG_SERVER for as long as the link took,
// up to the link timeout, and a review saw 2 s write stalls with it.)
func TestPrimaryServesWhileNewSecondaryConnects(t *testing.T) {
	a, b := startAlone(t, "", nil)
	keys := keysOf("keep", 0, 2, 2)
	cn := dialConn(t, a.client, false)
	if ans, err := cn.do(&wire.Frame{Op: wire.OpPut, Key: []byte(keys[0]), Value: []byte("v0")}, 5*time.Second); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("put: %v %v", err, ans.Status)
	}
	proxy := startHoldProxy(t, b.peer)
	proxy.hold(true)
	mb := member(b, proxy.addr())
	mb.State = wire.StateReseeding
	v2 := wire.View{Epoch: 2, Servers: []wire.Member{member(a, a.peer), mb},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 0, Secondary: 1}}}
	applied := make(chan struct{})
	go func() { defer close(applied); pushView(t, v2, b, a) }()
	time.Sleep(200 * time.Millisecond) // a is connecting its links, held up
	ans, err := cn.do(&wire.Frame{Op: wire.OpGet, Epoch: 2, Key: []byte(keys[0])}, 2*time.Second)
	if err != nil || ans.Status != wire.StatusOK || string(ans.Value) != "v0" {
		t.Fatalf("read while the new secondary's link connects: %v %v %q, want OK v0", err, ans.Status, ans.Value)
	}
	put := make(chan wire.Frame, 1)
	go func() {
		w := dialConn(t, a.client, false)
		ans, _ := w.do(&wire.Frame{Op: wire.OpPut, Epoch: 2, Key: []byte(keys[1]), Value: []byte("v1")}, 10*time.Second)
		put <- ans
	}()
	time.Sleep(100 * time.Millisecond)
	select {
	case ans := <-put:
		t.Fatalf("a write was answered %v before its secondary's link was up", ans.Status)
	default:
	}
	proxy.hold(false)
	<-applied
	if ans := <-put; ans.Status != wire.StatusOK {
		t.Fatalf("the write made while the link connected: %v %s", ans.Status, ans.Value)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, k := range keys {
		for {
			if _, ok := b.tableFor(0).get([]byte(k)); ok {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("the new secondary has no %s", k)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// startAlone starts server 0 (data directory dir, "" for none; mod
// applied to its Config) leading both shards alone, and server 1 as a
// respawned incarnation (2) not yet in the view, its first one dead.
func startAlone(t *testing.T, dir string, mod func(*Config)) (a, b *testServer) {
	t.Helper()
	fc := startFakeCoord(t)
	fsync := ""
	if dir != "" {
		fsync = "always"
	}
	a, _ = startDurableServer(t, fc, 0, dir, fsync, false, func(c *Config) {
		c.Logger = zerolog.Nop() // (link goroutines may log after the test)
		if mod != nil {
			mod(c)
		}
	})
	b, _ = startDurableServer(t, fc, 1, "", "", false, func(c *Config) { c.Incarnation = 2; c.Logger = zerolog.Nop() })
	deadB := member(b, b.peer)
	deadB.State, deadB.Incarnation = wire.StateDead, 1
	pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), deadB},
		Shards: []wire.Placement{{Primary: 0, Secondary: -1}, {Primary: 0, Secondary: -1}}}, a)
	return a, b
}
