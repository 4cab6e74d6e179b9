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
	// a leads alone on its coordinator's lease: an UNAVAILABLE answer (the
	// lease lapsing on a loaded machine) is retried, as a client does.
	if ans, err := cn.write(&wire.Frame{Op: wire.OpPut, Key: []byte(keys[0]), Value: []byte("v0")}, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("put: %v %v %s", err, ans.Status, ans.Value)
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
	// (The link stays held up until the test lets it go below: retrying
	// UNAVAILABLE cannot wait for it.)
	ans, err := cn.doRetry(&wire.Frame{Op: wire.OpGet, Epoch: 2, Key: []byte(keys[0])}, 2*time.Second)
	if err != nil || ans.Status != wire.StatusOK || string(ans.Value) != "v0" {
		t.Fatalf("read while the new secondary's link connects: %v %v %q, want OK v0", err, ans.Status, ans.Value)
	}
	put := make(chan wire.Frame, 1)
	go func() {
		w := dialConn(t, a.client, false)
		// The write waits for the link on the coordinator's lease alone:
		// should it lapse meanwhile (a loaded machine), the write is
		// answered UNAVAILABLE and its retry (the same client and
		// sequence number) waits for it, as a client's does.
		ans, _ := w.write(&wire.Frame{Op: wire.OpPut, Epoch: 2, Key: []byte(keys[1]), Value: []byte("v1")}, 10*time.Second)
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

// TestRejoinSameIncarnationReseeded: a secondary incarnation seeded once,
// dropped from its shard (it fell silent), then made its re-seeding
// secondary again by the same primary gets a whole new re-seeding: its
// copy was reset when the new link came up, and the first seeding's
// success must not stand for this one. (A review found such a copy left
// empty and counted as seeded, and a later failover serving it.)
func TestRejoinSameIncarnationReseeded(t *testing.T) {
	a, b := startAlone(t, "", nil)
	keys := keysOf("rejoin", 0, 2, 30)
	cn := dialConn(t, a.client, false)
	put := func(ks []string) {
		t.Helper()
		for _, k := range ks {
			// (a leads alone on its coordinator's lease: UNAVAILABLE is
			// retried, as a client does.)
			if ans, err := cn.write(&wire.Frame{Op: wire.OpPut, Key: []byte(k), Value: []byte("v-" + k)}, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
				t.Fatalf("put %s: %v %v %s", k, err, ans.Status, ans.Value)
			}
		}
	}
	seeded := func(want []string) {
		t.Helper()
		a.mu.Lock()
		p := a.prims[0]
		a.mu.Unlock()
		if err := p.seedResult(b.cfg.Incarnation, 5*time.Second); err != nil {
			t.Fatalf("re-seeding: %v", err)
		}
		for _, k := range want {
			if v, ok := b.tableFor(0).get([]byte(k)); !ok || string(v) != "v-"+k {
				t.Fatalf("after the re-seeding the secondary's copy of %s is %q %v (%d keys in it)", k, v, ok, b.tableFor(0).len())
			}
		}
	}
	put(keys[:20])
	ma, mb := member(a, a.peer), member(b, b.peer)
	mb.State = wire.StateReseeding
	shards := func(sec int32) []wire.Placement {
		return []wire.Placement{{Primary: 0, Secondary: sec}, {Primary: 0, Secondary: -1}}
	}
	pushView(t, wire.View{Epoch: 2, Servers: []wire.Member{ma, mb}, Shards: shards(1)}, a, b)
	seeded(keys[:20])
	mb.State = wire.StateServing
	pushView(t, wire.View{Epoch: 3, Servers: []wire.Member{ma, mb}, Shards: shards(1)}, a, b)
	// b falls silent and is dropped; writes go on alone; b joins again.
	pushView(t, wire.View{Epoch: 4, Servers: []wire.Member{ma, mb}, Shards: shards(-1)}, a, b)
	put(keys[20:])
	mb.State = wire.StateReseeding
	pushView(t, wire.View{Epoch: 5, Servers: []wire.Member{ma, mb}, Shards: shards(1)}, a, b)
	seeded(keys)
}

// TestNewerViewCutsShortAConnect: a view names a secondary whose link
// cannot come up (its HELLO is never answered: a cut), and the next view
// drops that secondary again. The primary applies views one at a time;
// the newer view must not wait until the older one's connect gives up
// (LinkConnect, 10 × the failure timeout), during which the shard's
// writes wait for the link. (A review measured a 5 s stall of the shard
// at every join tried over a cut link.)
func TestNewerViewCutsShortAConnect(t *testing.T) {
	a, b := startAlone(t, "", nil)
	keys := keysOf("newer", 0, 2, 1)
	proxy := startHoldProxy(t, b.peer)
	proxy.hold(true)
	mb := member(b, proxy.addr())
	mb.State = wire.StateReseeding
	v2 := wire.View{Epoch: 2, Servers: []wire.Member{member(a, a.peer), mb},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 0, Secondary: -1}}}
	go func() {
		c := dialConn(t, a.ctl, true)
		_, _ = c.do(&wire.Frame{Op: wire.OpSetView, Epoch: 2, Value: wire.AppendView(nil, &v2)}, 30*time.Second)
	}()
	time.Sleep(300 * time.Millisecond) // a is connecting shard 0's link, held up
	mb.State = wire.StateServing
	v3 := wire.View{Epoch: 3, Servers: []wire.Member{member(a, a.peer), mb},
		Shards: []wire.Placement{{Primary: 0, Secondary: -1}, {Primary: 0, Secondary: -1}}}
	start := time.Now()
	pushView(t, v3, a)
	cn := dialConn(t, a.client, false)
	ans, err := cn.write(&wire.Frame{Op: wire.OpPut, Epoch: 3, Key: []byte(keys[0]), Value: []byte("v")}, 20*time.Second)
	took := time.Since(start)
	if err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("write after the newer view: %v %v %s", err, ans.Status, ans.Value)
	}
	// It may wait for the attempt in progress (up to Handshake), not
	// for the older view's whole connect.
	limit := (a.cfg.Timing.Handshake + a.cfg.Timing.LinkConnect) / 2
	t.Logf("the newer view applied and a write committed %v after it was sent (the older view's connect would give up after %v)", took.Round(time.Millisecond), a.cfg.Timing.LinkConnect)
	if took > limit {
		t.Fatalf("the newer view took %v to apply and commit a write, want under %v (about one connect attempt), not the older view's whole connect (%v)", took.Round(time.Millisecond), limit, a.cfg.Timing.LinkConnect)
	}
}
