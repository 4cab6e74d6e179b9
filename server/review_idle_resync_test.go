package server

// Review tests of the partial resync after an idle kill (b464d5a): the
// promoted primary committed nothing since its LineageGap jump, the
// resync is accepted up to the jumped index, and its end marker brings
// the secondary there.

import (
	"context"
	"fmt"
	"ftkv/timing"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/wire"
)

// idleScene: a (id 0) and b (id 1) with data dirs, keys written on both
// shards, b stopped abruptly, a promoted for shard 1 (view 2, b dead), NO
// write since; b2 started on b's directory (not yet in a view).
type idleScene struct {
	fc         *fakeCoord
	a, b2      *testServer
	stopA      context.CancelFunc
	stopB2     context.CancelFunc
	dirA, dirB string
	logA, logB *syncBuf
	model      map[string]string
}

func newIdleScene(t *testing.T) *idleScene {
	t.Helper()
	sc := newDeadB(t, 40)
	b2, stopB2 := startDurableServer(t, sc.fc, 1, sc.dirB, "always", testSyncSecondary, func(c *Config) {
		c.Incarnation = 2
		c.Logger = zerolog.New(sc.logB).Level(zerolog.InfoLevel)
	})
	sc.b2, sc.stopB2 = b2, stopB2
	return sc
}

// newDeadB: the idle scene up to b's death: a (id 0) and b (id 1) with
// data dirs, perShard keys written on each shard, b stopped abruptly and
// a leading both shards alone (view 2). No b2 yet.
func newDeadB(t *testing.T, perShard int) *idleScene {
	t.Helper()
	sc := &idleScene{fc: startFakeCoord(t), dirA: abandonedDir(t), dirB: abandonedDir(t), logA: &syncBuf{}, logB: &syncBuf{}, model: map[string]string{}}
	a, stopA := startDurableServer(t, sc.fc, 0, sc.dirA, "always", testSyncSecondary, func(c *Config) {
		c.Logger = zerolog.New(sc.logA).Level(zerolog.InfoLevel)
	})
	b, stopB := startDurableServer(t, sc.fc, 1, sc.dirB, "always", testSyncSecondary, func(c *Config) { c.Logger = zerolog.Nop() })
	sc.a, sc.stopA = a, stopA
	pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b)
	for sh, srv := range []*testServer{a, b} {
		cn := dialConn(t, srv.client, false)
		for _, k := range keysOf(fmt.Sprintf("before%d", sh), sh, 2, perShard) {
			putOK(t, cn, k, "v-"+k)
			sc.model[k] = "v-" + k
		}
	}
	stopB()
	closePrimaries(b)
	leadAlone(t, 2, a, b)
	return sc
}

// putOK puts k = val through cn and fails unless it is acknowledged; an
// UNAVAILABLE answer (a lease renewed late on a loaded machine) is
// retried with the same client and sequence number, as a client does, so
// a write the primary applied before it lost its lease applies once.
func putOK(t *testing.T, cn *conn, k, val string) {
	t.Helper()
	ans, err := cn.write(&wire.Frame{Op: wire.OpPut, Key: []byte(k), Value: []byte(val)}, 10*time.Second)
	if err != nil || ans.Status != wire.StatusOK {
		t.Fatalf("put %s: %v %v %s", k, err, ans.Status, ans.Value)
	}
}

// waitWhole waits until s's copies of both shards are complete.
func waitWhole(t *testing.T, s *testServer, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for sh := 0; sh < 2; sh++ {
		for {
			s.secMu.Lock()
			st := s.sec[sh]
			s.secMu.Unlock()
			busy := true
			if st != nil {
				st.mu.Lock()
				busy = st.seeding || st.resync
				st.mu.Unlock()
			}
			if !busy && !s.dur.isPartial(sh) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("server %d: shard %d's copy not whole after %v", s.cfg.ID, sh, d)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// checkTables fails for every key of model that s's tables do not hold.
func checkTables(t *testing.T, what string, s *Server, model map[string]string) {
	t.Helper()
	bad := 0
	for k, want := range model {
		got, ok := s.tableFor(shardOf(k, 2)).get([]byte(k))
		if !ok || string(got) != want {
			if bad < 5 {
				t.Errorf("%s: key %s = %q (%v), want %q", what, k, got, ok, want)
			}
			bad++
		}
	}
	if bad > 0 {
		t.Errorf("%s: %d keys wrong of %d", what, bad, len(model))
	}
}

func (sc *idleScene) reseedView(t *testing.T, epoch uint64) {
	m := member(sc.b2, sc.b2.peer)
	m.State = wire.StateReseeding
	pushView(t, wire.View{Epoch: epoch, Servers: []wire.Member{member(sc.a, sc.a.peer), m},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 0, Secondary: 1}}}, sc.a, sc.b2)
	waitWhole(t, sc.b2, 20*time.Second)
}

// wantResyncs fails unless a logged both shards' resyncs done, and none
// refused. a logs one done once b2's acknowledgement of its end reaches
// it: after b2 took its copy for whole (what reseedView waits for), and
// on a loaded machine after the test looked (CI-like run: "1 partial
// resyncs done", shard 0's resync sent and not yet acknowledged). So
// the log is read again until both are there, for a while.
func (sc *idleScene) wantResyncs(t *testing.T) {
	t.Helper()
	var la string
	var d, r int
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		la = sc.logA.String()
		d, r = strings.Count(la, `"message":"partial resync done"`), strings.Count(la, "partial resync impossible")
		if d >= 2 || r > 0 || time.Now().After(deadline) {
			break
		}
	}
	if d != 2 || r != 0 {
		t.Errorf("%d partial resyncs done, %d refused; want 2 and 0:\n%s", d, r, grepLines(la, "resync", "seeding"))
	}
}

func noGap(t *testing.T, logs ...*syncBuf) {
	t.Helper()
	for _, l := range logs {
		if s := l.String(); strings.Contains(s, "gap in the replication log") {
			t.Errorf("gap in the replication log:\n%s", grepLines(s, "gap", "resync", "seeding"))
		}
	}
}

// TestReviewIdleResyncWithWriteInFlight: a write is sequenced on the
// promoted primary (waiting for the link) when the link's HELLO offers the
// recovered copy: the resync is taken up to the jumped index, the write
// follows it; it must be acknowledged, held by both, and no gap follows.
func TestReviewIdleResyncWithWriteInFlight(t *testing.T) {
	sc := newIdleScene(t)
	a := sc.a
	k1 := keysOf("inflight", 1, 2, 1)[0]
	res := make(chan error, 1)
	fired := false
	hook := func(shard int) {
		if shard != 1 || fired {
			return
		}
		fired = true
		go func() {
			cn := dialConn(t, a.client, false)
			// The write waits for the link on the coordinator's lease
			// alone: should it lapse (a loaded machine), the write is
			// answered UNAVAILABLE, and its retry (the same client and
			// sequence number) waits for it, as a client's does.
			ans, err := cn.write(&wire.Frame{Op: wire.OpPut, Key: []byte(k1), Value: []byte("x")}, 15*time.Second)
			if err == nil && ans.Status != wire.StatusOK {
				err = fmt.Errorf("%v %s", ans.Status, ans.Value)
			}
			res <- err
		}()
		a.mu.Lock()
		p := a.prims[1]
		a.mu.Unlock()
		for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
			p.mu.Lock()
			seq, com, start := p.nextIndex, p.committed, p.startedAt
			p.mu.Unlock()
			if seq > com {
				t.Logf("write in flight: sequenced %d, committed %d, started at %d", seq, com, start)
				return
			}
		}
		t.Errorf("the write was not sequenced within 3 s")
	}
	linkDialed.Store(&hook)
	t.Cleanup(func() { linkDialed.Store(nil) })
	sc.reseedView(t, 3)
	linkDialed.Store(nil)
	if err := <-res; err != nil {
		t.Fatalf("the write in flight: %v", err)
	}
	sc.model[k1] = "x"
	sc.wantResyncs(t)
	// A write after the resync.
	k2 := keysOf("after", 1, 2, 1)[0]
	putOK(t, dialConn(t, a.client, false), k2, "y")
	sc.model[k2] = "y"
	time.Sleep(200 * time.Millisecond)
	checkTables(t, "b2 after the resync", sc.b2.Server, sc.model)
	checkTables(t, "a", a.Server, sc.model)
	noGap(t, sc.logA, sc.logB)
	a.mu.Lock()
	p := a.prims[1]
	a.mu.Unlock()
	p.mu.Lock()
	com := p.committed
	p.mu.Unlock()
	sc.b2.secMu.Lock()
	st := sc.b2.sec[1]
	sc.b2.secMu.Unlock()
	st.mu.Lock()
	last := st.last
	st.mu.Unlock()
	if last != com {
		t.Errorf("b2's copy of shard 1 at %d, a committed %d", last, com)
	}
}

// TestReviewRestartAllAfterIdleResync: an idle resync, then every
// process dies at once: both copies of each shard must be recovered with
// the same content, and the one with the higher index (the one a restart
// chooses) must hold every write.
func TestReviewRestartAllAfterIdleResync(t *testing.T) {
	for _, writeAfter := range []bool{false, true} {
		t.Run(fmt.Sprintf("write_after=%v", writeAfter), func(t *testing.T) {
			sc := newIdleScene(t)
			sc.reseedView(t, 3)
			sc.wantResyncs(t)
			if writeAfter {
				k := keysOf("after", 1, 2, 1)[0]
				putOK(t, dialConn(t, sc.a.client, false), k, "y")
				sc.model[k] = "y"
			}
			time.Sleep(300 * time.Millisecond)
			for _, srv := range []*testServer{sc.a, sc.b2} {
				srv.dur.snapMu.Lock()
				defer srv.dur.snapMu.Unlock()
			}
			idx := map[int][]wire.ShardIndex{}
			for id, dir := range []string{sc.dirA, sc.dirB} {
				s, err := New(Config{ID: uint32(id), Incarnation: 3, CoordAddr: "127.0.0.1:1", Secret: testSecret,
					DataDir: dir, Fsync: "always", Logger: zerolog.Nop()})
				if err != nil {
					t.Fatal(err)
				}
				checkTables(t, fmt.Sprintf("server %d recovered", id), s, sc.model)
				idx[id] = s.dur.indexes()
				t.Logf("server %d: indexes %+v, high water %v, recovered %v", id, idx[id], s.highWater, s.recovered)
				_ = s.dur.log.Close()
			}
		})
	}
}

// TestReviewKillPromotedAfterIdleResync: right after the idle resync, a
// (which leads both shards) dies; b2 is promoted for both and must serve
// every write; a2 then respawns on a's directory and is caught up from
// b2 (resync or full), holding every write, with no gap.
func TestReviewKillPromotedAfterIdleResync(t *testing.T) {
	sc := newIdleScene(t)
	sc.reseedView(t, 3)
	sc.wantResyncs(t)
	a := sc.a
	sc.stopA()
	closePrimaries(a)
	b2 := sc.b2
	leadAlone(t, 4, b2, a)
	checkTables(t, "b2 promoted", b2.Server, sc.model)
	cn := dialConn(t, b2.client, false)
	for sh := 0; sh < 2; sh++ {
		for _, k := range keysOf(fmt.Sprintf("afterkill%d", sh), sh, 2, 5) {
			putOK(t, cn, k, "z-"+k)
			sc.model[k] = "z-" + k
		}
	}
	a2, _ := startDurableServer(t, sc.fc, 0, sc.dirA, "always", testSyncSecondary, func(c *Config) {
		c.Incarnation = 2
		c.Logger = zerolog.New(sc.logA).Level(zerolog.InfoLevel)
	})
	m := member(a2, a2.peer)
	m.State = wire.StateReseeding
	pushView(t, wire.View{Epoch: 5, Servers: []wire.Member{m, member(b2, b2.peer)},
		Shards: []wire.Placement{{Primary: 1, Secondary: 0}, {Primary: 1, Secondary: 0}}}, a2, b2)
	waitWhole(t, a2, 20*time.Second)
	k := keysOf("afterrespawn", 0, 2, 1)[0]
	putOK(t, cn, k, "w")
	sc.model[k] = "w"
	time.Sleep(200 * time.Millisecond)
	checkTables(t, "a2", a2.Server, sc.model)
	noGap(t, sc.logA, sc.logB)
	t.Logf("b2's resync decisions:\n%s", grepLines(sc.logB.String(), "resync", "re-seeding"))
}

// getVal reads k from srv's client port; UNAVAILABLE is retried, as a
// client does (a promoted primary serves once its mark is synced, and a
// lone primary's lease may lapse on a loaded machine).
func getVal(t *testing.T, srv *testServer, k string) (string, wire.Status) {
	t.Helper()
	ans, err := dialConn(t, srv.client, false).doRetry(&wire.Frame{Op: wire.OpGet, Key: []byte(k)}, 10*time.Second)
	if err != nil {
		t.Fatalf("get %s: %v", k, err)
	}
	return string(ans.Value), ans.Status
}

func stopServer(cancel context.CancelFunc, s *testServer) {
	cancel()
	closePrimaries(s)
}

// TestReviewIdleResyncOverADroppedTail: a led shard 1 after b's death and
// has a write E of it logged but not yet durable (slow fsync; b2, its
// secondary, applied it) when the hand-back view comes: E is the tail kept
// for b2. b2 dies before its link to a is up; a is promoted again and
// drops the tail: its table does not hold E, but its log does (the fsync
// ends after the close). Nothing is written. b3 respawns from b2's log,
// which holds E, and offers E's index: a's log reaches exactly the index
// a took over at (LineageGap below its jump), so the idle resync is
// accepted and b3 keeps E while a does not. After the hand-back b3
// serves E; once b3 dies, a serves the key without it.
func TestReviewIdleResyncOverADroppedTail(t *testing.T) {
	for _, other := range []bool{false, true} {
		t.Run(fmt.Sprintf("write_after_promotion=%v", other), func(t *testing.T) { droppedTail(t, other) })
	}
}

// droppedTail is TestReviewIdleResyncOverADroppedTail; with other, a
// commits a write of another key of shard 1 once promoted again (not
// idle: the resync path that came before b464d5a).
func droppedTail(t *testing.T, other bool) {
	var delay atomic.Int64
	sc := &idleScene{fc: startFakeCoord(t), dirA: abandonedDir(t), dirB: abandonedDir(t), logA: &syncBuf{}, logB: &syncBuf{}, model: map[string]string{}}
	a, _ := startDurableServer(t, sc.fc, 0, sc.dirA, "always", testSyncSecondary, func(c *Config) {
		c.Logger = zerolog.New(sc.logA).Level(zerolog.InfoLevel)
		c.walFS = slowFS{sync: &delay}
		c.Timing = timing.New(time.Second)
	})
	startB := func(inc uint64) (*testServer, context.CancelFunc) {
		return startDurableServer(t, sc.fc, 1, sc.dirB, "always", testSyncSecondary, func(c *Config) {
			c.Incarnation = inc
			c.Logger = zerolog.New(sc.logB).Level(zerolog.InfoLevel)
			c.Timing = timing.New(time.Second)
		})
	}
	b, stopB := startB(1)
	pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b)
	for sh, srv := range []*testServer{a, b} {
		cn := dialConn(t, srv.client, false)
		for _, k := range keysOf(fmt.Sprintf("before%d", sh), sh, 2, 10) {
			putOK(t, cn, k, "v-"+k)
		}
	}
	dead := func(s *testServer) wire.Member {
		m := member(s, s.peer)
		m.State = wire.StateDead
		return m
	}
	reseeding := func(s *testServer) wire.Member {
		m := member(s, s.peer)
		m.State = wire.StateReseeding
		return m
	}
	// b dies; a leads both; b2 is resynced (idle).
	stopServer(stopB, b)
	pushView(t, wire.View{Epoch: 2, Servers: []wire.Member{member(a, a.peer), dead(b)},
		Shards: []wire.Placement{{Primary: 0, Secondary: -1}, {Primary: 0, Secondary: -1}}}, a)
	b2, stopB2 := startB(2)
	pushView(t, wire.View{Epoch: 3, Servers: []wire.Member{member(a, a.peer), reseeding(b2)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 0, Secondary: 1}}}, a, b2)
	waitWhole(t, b2, 20*time.Second)
	// E: applied by b2, logged by a with a slow fsync.
	kE := keysOf("tail", 1, 2, 1)[0]
	delay.Store(int64(700 * time.Millisecond))
	resE := make(chan string, 1)
	go func() {
		cn := dialConn(t, a.client, false)
		ans, err := cn.do(&wire.Frame{Op: wire.OpPut, Key: []byte(kE), Value: []byte("E")}, 10*time.Second)
		resE <- fmt.Sprint(err, ans.Status, string(ans.Value))
	}()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(time.Millisecond) {
		if _, ok := b2.tableFor(1).get([]byte(kE)); ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("b2 never applied E")
		}
	}
	time.Sleep(50 * time.Millisecond) // a's log has E on its way to the disk
	// The hand-back view reaches a only; b2 dies before it links.
	pushView(t, wire.View{Epoch: 4, Servers: []wire.Member{member(a, a.peer), member(b2, b2.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a)
	t.Logf("E's put on a answered: %s", <-resE)
	delay.Store(0)
	time.Sleep(1500 * time.Millisecond) // b2's lazy log writes E
	stopServer(stopB2, b2)
	pushView(t, wire.View{Epoch: 5, Servers: []wire.Member{member(a, a.peer), dead(b2)},
		Shards: []wire.Placement{{Primary: 0, Secondary: -1}, {Primary: 0, Secondary: -1}}}, a)
	vA, stA := getVal(t, a, kE)
	t.Logf("a (promoted again) serves E's key: %q %v", vA, stA)
	if other {
		putOK(t, dialConn(t, a.client, false), keysOf("other", 1, 2, 1)[0], "o")
	}
	// b3 respawns from b2's log, idle.
	b3, stopB3 := startB(3)
	pushView(t, wire.View{Epoch: 6, Servers: []wire.Member{member(a, a.peer), reseeding(b3)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 0, Secondary: 1}}}, a, b3)
	waitWhole(t, b3, 20*time.Second)
	t.Logf("a's resync decisions:\n%s", grepLines(sc.logA.String(), "partial resync", "tail", "taking over"))
	vB, okB := b3.tableFor(1).get([]byte(kE))
	_, okA := a.tableFor(1).get([]byte(kE))
	if okA != okB {
		t.Errorf("after the resync b3's copy of shard 1 holds E's key: %v (%q), a's: %v: the copies differ", okB, vB, okA)
	}
	// Hand-back to b3, a read there, then b3 dies and a serves again.
	pushView(t, wire.View{Epoch: 7, Servers: []wire.Member{member(a, a.peer), member(b3, b3.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b3)
	v1, s1 := getVal(t, b3, kE)
	stopServer(stopB3, b3)
	pushView(t, wire.View{Epoch: 8, Servers: []wire.Member{member(a, a.peer), dead(b3)},
		Shards: []wire.Placement{{Primary: 0, Secondary: -1}, {Primary: 0, Secondary: -1}}}, a)
	v2, s2 := getVal(t, a, kE)
	if v1 != v2 || s1 != s2 {
		t.Errorf("E's key read %q (%v) at b3 after the hand-back, then %q (%v) at a once b3 died, no write between", v1, s1, v2, s2)
	}
}

// indexOf is the index of shard in a server's reported copies (0: none).
func indexOf(idx []wire.ShardIndex, shard int) uint64 {
	for _, d := range idx {
		if int(d.Shard) == shard {
			return d.Index
		}
	}
	return 0
}

// promotedMark returns a's primary of shard 1, promoted, and the index it
// took the shard over at, once a reports its copy there (its mark is
// written).
func promotedMark(t *testing.T, a *testServer) (*primary, uint64) {
	t.Helper()
	a.mu.Lock()
	p := a.prims[1]
	a.mu.Unlock()
	p.mu.Lock()
	jumped := p.startedAt
	p.mu.Unlock()
	for deadline := time.Now().Add(5 * time.Second); indexOf(a.dur.indexes(), 1) != jumped; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("server %d reports shard 1 at %d after its promotion, want %d", a.cfg.ID, indexOf(a.dur.indexes(), 1), jumped)
		}
	}
	return p, jumped
}

// TestPromotionMarkRecovered: a primary promoted while nothing is written
// stands at its jumped index, which no write carries. It reports that
// index while it runs; its log reaches it from its last write (a partial
// resync offered that write brings the copy there); killed and started
// again, it recovers its copy there. (Before: its log knew only the last
// write, so a restart took the copy for one behind the copy the resync
// had brought to the jumped index, and re-seeded one of two equal copies
// in full, and every idle kill after the first was re-seeded in full:
// TestPartialResyncIdleKillsInTurn.)
func TestPromotionMarkRecovered(t *testing.T) {
	sc := newIdleScene(t)
	a := sc.a
	p, jumped := promotedMark(t, a)
	_, upTo, n, err := p.readResync(jumped - LineageGap)
	if err != nil || upTo != jumped || n != 0 {
		t.Errorf("the log read from the last write before the promotion reaches %d with %d writes (%v), want %d and none", upTo, n, err, jumped)
	}
	sc.stopA()
	closePrimaries(a)
	a2, _ := startDurableServer(t, sc.fc, 0, sc.dirA, "always", testSyncSecondary, func(c *Config) {
		c.Incarnation = 2
		c.Logger = zerolog.Nop()
	})
	if got := indexOf(a2.dur.indexes(), 1); got != jumped {
		t.Errorf("server 0 recovered its copy of shard 1 at %d, want its promotion's %d", got, jumped)
	}
	checkTables(t, "server 0 restarted", a2.Server, sc.model)
}
