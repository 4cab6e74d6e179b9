package server

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"ftkv/timing"
	"ftkv/wire"
)

// TestHole1HandBackAfterFreezeLift (hole 1 of the control-plane review): a
// freeze for a hand-back lifts itself after FreezeHold; when the hand-back
// view comes later, writes the old primary sequenced after the lift are in
// flight: the home server has applied them (its copy, then its base as
// the new primary, holds them) but the old primary has not committed them
// and its new secondary copy starts above the home server's base. Their
// clients, told to retry, are answered OK by the home server from the
// outcomes it holds: acknowledged writes in one copy only. Every write
// acknowledged must be in both copies once the hand-back is done.
//
// Server B (id 1) leads shard 0 with A (id 0, its home) as secondary, as
// after a failover of A and its re-seeding. The answers of A's peer port go
// through a proxy that the test holds, so writes B sends after the lift
// are applied by A and stay in flight on B when the hand-back view comes.
func TestHole1HandBackAfterFreezeLift(t *testing.T) {
	tm := timing.New(300 * time.Millisecond)
	fc := startFakeCoord(t)
	a := startTestServer(t, fc, 0, tm)
	b := startTestServer(t, fc, 1, tm)
	px := startHoldProxy(t, a.peer)

	// Epoch 1: B leads shard 0 (A secondary, through the proxy); A leads
	// shard 1 (B secondary).
	v1 := wire.View{Epoch: 1, Servers: []wire.Member{member(a, px.addr()), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 1, Secondary: 0}, {Primary: 0, Secondary: 1}}}
	pushView(t, v1, a, b)

	const early, late = 20, 40
	keys := keysOf("hole1", 0, 2, early+late)
	cb := dialConn(t, b.client, false)
	put := func(c *conn, key string, client uint64, flags uint8) (wire.Frame, error) {
		return c.do(&wire.Frame{Op: wire.OpPut, Flags: flags, Client: client, Seq: 1, Floor: 1,
			Key: []byte(key), Value: []byte("v-" + key)}, 10*time.Second)
	}
	for i, k := range keys[:early] {
		// (UNAVAILABLE, a lease lapsing on a loaded machine, is retried
		// with the same client and sequence number, as a client does.)
		if ans, err := cb.doRetry(&wire.Frame{Op: wire.OpPut, Client: uint64(1000 + i), Seq: 1, Floor: 1,
			Key: []byte(k), Value: []byte("v-" + k)}, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
			t.Fatalf("put %s at B: %v %v %s", k, err, ans.Status, ans.Value)
		}
	}

	// The coordinator freezes shard 0 on B for the hand-back.
	cc := dialConn(t, b.ctl, true)
	ans, err := cc.do(&wire.Frame{Op: wire.OpFreeze, Seq: 0}, tm.FreezeAsk)
	if err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("freeze: %v %v %s", err, ans.Status, ans.Value)
	}
	frozenAt := ans.Seq
	// ... and the hand-back view is late: the freeze lifts.
	time.Sleep(tm.FreezeHold + tm.FreezeHold/4)

	// Writes after the lift: A applies them, its answers are held.
	px.hold(true)
	var wg sync.WaitGroup
	acked := make([]bool, late)
	clients := make([]*conn, late)
	for i := range clients {
		clients[i] = dialConn(t, b.client, false)
	}
	for i, k := range keys[early:] {
		wg.Go(func() {
			client := uint64(2000 + i)
			// A retry goes to the shard's primary in the newest view, with
			// the same client id and sequence number (as the Go client does).
			c, flags := clients[i], uint8(0)
			for attempt := 0; attempt < 200; attempt++ {
				ans, err := put(c, k, client, flags)
				if err == nil && ans.Status == wire.StatusOK {
					acked[i] = true
					return
				}
				flags = wire.FlagRetry
				time.Sleep(tm.RetryMin)
				if a.view.Load().v.Epoch >= 2 {
					c = dialConn(t, a.client, false)
				}
			}
		})
	}
	deadline := time.Now().Add(10 * time.Second)
	for a.lastApplied(0) < frozenAt+late {
		if time.Now().After(deadline) {
			t.Fatalf("A applied shard 0 up to %d, want %d (freeze at %d): the freeze did not lift?", a.lastApplied(0), frozenAt+late, frozenAt)
		}
		time.Sleep(5 * time.Millisecond)
	}

	// The hand-back view: A leads shard 0 again, B is its secondary.
	v2 := wire.View{Epoch: 2, Servers: v1.Servers,
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 0, Secondary: 1}}}
	pushView(t, v2, a, b)
	wg.Wait()
	px.hold(false)

	var missing []string
	n := 0
	for i, k := range keys {
		if i >= early && !acked[i-early] {
			continue
		}
		n++
		want := "v-" + k
		va, oka := a.tableFor(0).get([]byte(k))
		vb, okb := b.tableFor(0).get([]byte(k))
		if !oka || string(va) != want || !okb || string(vb) != want {
			missing = append(missing, fmt.Sprintf("%s (home primary: %v, old primary's secondary copy: %v)", k, oka, okb))
		}
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged writes are not in both copies after the hand-back: %v", len(missing), n, missing)
	}
	if n < early+late/2 {
		t.Fatalf("only %d of %d writes acknowledged", n, early+late)
	}
	t.Logf("%d acknowledged writes in both copies (freeze at index %d, %d written after its lift)", n, frozenAt, late)
}
