package server

import (
	"testing"
	"time"

	"ftkv/wire"
)

// TestReviewPromotedAckIsDurable (attack, session atkA): with fsync
// always, a write acknowledged by a freshly promoted primary (a retry
// answered from its dedup record) must be on some disk. The write W was
// applied and acknowledged by the secondary b (its log record is lazy:
// written, not synced), the primary a died before its own log synced it,
// b is promoted and answers the client's retry of W "OK" at once from its
// dedup record, and then the machine loses power (every byte not synced is
// gone). W must come back from one of the two logs.
func TestReviewPromotedAckIsDurable(t *testing.T) {
	p := startPowerCut(t)
	a, b := p.a, p.b
	pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b)
	keys := keysOf("atk-promote", 0, 2, 2)
	mustPut(t, dialConn(t, a.client, false), 1, keys[0], "warm")
	// Every sync from now on is slow: a's log does not sync W before a
	// "dies"; b's lazy record of W and its promotion mark are not synced
	// when b answers the retry.
	p.slowSyncs(3 * time.Second)
	w := &wire.Frame{Op: wire.OpPut, Epoch: 1, Key: []byte(keys[1]), Value: []byte("W"), Client: 77, Seq: 1, Floor: 1}
	cw := dialConn(t, a.client, false)
	go func() { _, _ = cw.do(w, 10*time.Second) }() // a never answers it: it "dies" first
	waitApplied(t, b, 0, keys[1])
	// a dies (its log never synced W); b leads shard 0 alone.
	leadAlone(t, 2, b, a)
	retry := *w
	retry.Epoch = 2
	// (A client retries an UNAVAILABLE answer, as bin/client does.)
	if ans, err := dialConn(t, b.client, false).doRetry(&retry, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("retry of W at the promoted primary: %v %v %s", err, ans.Status, ans.Value)
	}
	// The client now holds an acknowledgement of W. Power cut.
	a2, b2 := p.cut()
	if warmA, warmB := recovered(a2, b2, 0, keys[0]); !warmA {
		t.Fatalf("control: the warm-up write (synced on a's log before the slow disk) not recovered (b: %v)", warmB)
	}
	if inA, inB := recovered(a2, b2, 0, keys[1]); !inA && !inB {
		t.Fatalf("W was acknowledged (by the promoted primary's dedup answer) but is in neither log after the power cut")
	}
}
