package server

import (
	"errors"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/internal/wal"
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
	fc := startFakeCoord(t)
	ma, mb := wal.NewStrictMemFS(), wal.NewStrictMemFS()
	fsA := func(c *Config) { c.walFS = ma; c.Logger = zerolog.Nop() }
	fsB := func(c *Config) { c.walFS = mb; c.Logger = zerolog.Nop() }
	dirs := []string{abandonedDir(t), abandonedDir(t)}
	a, stopA := startDurableServer(t, fc, 0, dirs[0], "always", false, fsA)
	b, stopB := startDurableServer(t, fc, 1, dirs[1], "always", false, fsB)
	pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b)
	keys := keysOf("atk-promote", 0, 2, 2)
	cn := dialConn(t, a.client, false)
	if ans, err := cn.doRetry(&wire.Frame{Op: wire.OpPut, Epoch: 1, Key: []byte(keys[0]), Value: []byte("warm")}, 10*time.Second); err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("warm-up put: %v %v", err, ans.Status)
	}
	// Every sync from now on is slow: a's log does not sync W before a
	// "dies"; b's lazy record of W and its promotion mark are not synced
	// when b answers the retry.
	ma.SlowSyncs(3 * time.Second)
	mb.SlowSyncs(3 * time.Second)
	w := &wire.Frame{Op: wire.OpPut, Epoch: 1, Key: []byte(keys[1]), Value: []byte("W"), Client: 77, Seq: 1, Floor: 1}
	cw := dialConn(t, a.client, false)
	go func() { _, _ = cw.do(w, 10*time.Second) }() // a never answers it: it "dies" first
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, ok := b.tableFor(0).get([]byte(keys[1])); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the secondary never applied W")
		}
		time.Sleep(time.Millisecond)
	}
	// a dies (its log never synced W); b leads shard 0 alone.
	dead := errors.New("power cut")
	leadAlone(t, 2, b, a)
	cb := dialConn(t, b.client, false)
	retry := *w
	retry.Epoch = 2
	// (A client retries an UNAVAILABLE answer, as bin/client does.)
	var ans wire.Frame
	var err error
	for end := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		r := retry
		ans, err = cb.do(&r, 10*time.Second)
		if err != nil || ans.Status != wire.StatusUnavailable || time.Now().After(end) {
			break
		}
	}
	if err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("retry of W at the promoted primary: %v %v %s", err, ans.Status, ans.Value)
	}
	// The client now holds an acknowledgement of W. Power cut.
	ma.Crash()
	mb.Crash()
	ma.Fail(dead, dead)
	mb.Fail(dead, dead)
	stopA()
	stopB()
	ma.Fail(nil, nil)
	mb.Fail(nil, nil)
	ma.SlowSyncs(0)
	mb.SlowSyncs(0)
	a2, _ := startDurableServer(t, fc, 0, dirs[0], "always", false, func(c *Config) { fsA(c); c.Incarnation = 2 })
	b2, _ := startDurableServer(t, fc, 1, dirs[1], "always", false, func(c *Config) { fsB(c); c.Incarnation = 2 })
	_, warmA := a2.tableFor(0).get([]byte(keys[0]))
	_, warmB := b2.tableFor(0).get([]byte(keys[0]))
	if !warmA {
		t.Fatalf("control: the warm-up write (synced on a's log before the slow disk) not recovered (b: %v)", warmB)
	}
	_, inA := a2.tableFor(0).get([]byte(keys[1]))
	_, inB := b2.tableFor(0).get([]byte(keys[1]))
	if !inA && !inB {
		t.Fatalf("W was acknowledged (by the promoted primary's dedup answer) but is in neither log after the power cut")
	}
}
