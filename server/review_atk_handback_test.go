package server

import (
	"testing"
	"time"

	"ftkv/wire"
)

// TestReviewLateHandBackAckIsDurable (attack, session atkH): with fsync
// always, a write acknowledged by the home server right after a late
// hand-back (a retry answered from its dedup record) must be on some disk.
// The freeze for the hand-back lifted before the view came; the acting
// primary b then sequenced W and sent it to the home server a, which
// applied it (its log record is lazy: written, not synced); b never got
// the acknowledgement, so its log never had W. The hand-back view makes a
// the primary with W in its base; b settles its tail against that base
// and logs W lazily too (handback.go); a answers the client's retry of W
// "OK" from its dedup record, and then the machine loses power (every
// byte not synced is gone). W must come back from one of the two logs.
func TestReviewLateHandBackAckIsDurable(t *testing.T) {
	p := startPowerCut(t)
	a, b := p.a, p.b
	tm := a.cfg.Timing
	// a's answers to b's link go through a proxy the test holds.
	px := startHoldProxy(t, a.peer)
	// Epoch 1: b leads shard 0 (a, its home server, is the secondary, as
	// after a's failover and re-seeding); a leads shard 1.
	v1 := wire.View{Epoch: 1, Servers: []wire.Member{member(a, px.addr()), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 1, Secondary: 0}, {Primary: 0, Secondary: 1}}}
	pushView(t, v1, a, b)
	keys := keysOf("atk-handback", 0, 2, 2)
	mustPut(t, dialConn(t, b.client, false), 1, keys[0], "warm")

	// The coordinator freezes shard 0 on b for the hand-back, and the
	// view is late: the freeze lifts.
	cc := dialConn(t, b.ctl, true)
	if ans, err := cc.do(&wire.Frame{Op: wire.OpFreeze, Seq: 0}, tm.FreezeAsk); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("freeze: %v %v %s", err, ans.Status, ans.Value)
	}
	time.Sleep(tm.FreezeHold + tm.FreezeHold/4)

	// Every sync from now on is slow: nothing written after this point is
	// on either disk until a sync started now has finished.
	p.slowSyncs(5 * time.Second)
	px.hold(true)
	w := &wire.Frame{Op: wire.OpPut, Epoch: 1, Key: []byte(keys[1]), Value: []byte("W"), Client: 77, Seq: 1, Floor: 1}
	cw := dialConn(t, b.client, false)
	// b answers it "retry" at the hand-back; before, a lease that lapsed
	// on a loaded machine has it refused (sent again, as a client does:
	// its client id and sequence number make it apply once).
	go func() { _, _ = cw.doRetry(w, 10*time.Second) }()
	waitApplied(t, a, 0, keys[1])

	// The hand-back view: a leads shard 0 again, b is its secondary.
	v2 := wire.View{Epoch: 2, Servers: v1.Servers,
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 0, Secondary: 1}}}
	pushView(t, v2, a, b)
	retry := *w
	retry.Epoch, retry.Flags = 2, wire.FlagRetry
	// (A client retries an UNAVAILABLE answer, as bin/client does. A
	// home server that waits for its log to sync may wait for two slow
	// syncs: one already under way, then its own.)
	if ans, err := dialConn(t, a.client, false).doRetry(&retry, 20*time.Second); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("retry of W at the home server after the hand-back: %v %v %s", err, ans.Status, ans.Value)
	}
	// The client now holds an acknowledgement of W. Power cut.
	a2, b2 := p.cut()
	px.hold(false)
	if warmA, warmB := recovered(a2, b2, 0, keys[0]); !warmB {
		t.Fatalf("control: the warm-up write (synced on b's log before the slow disk) not recovered (a: %v)", warmA)
	}
	if inA, inB := recovered(a2, b2, 0, keys[1]); !inA && !inB {
		t.Fatalf("W was acknowledged (by the home server's dedup answer after the hand-back) but is in neither log after the power cut")
	}
}
