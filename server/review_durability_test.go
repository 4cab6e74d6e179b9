package server

// Review tests of partial resync (issue 13) against a replication link
// that misbehaves while the respawned secondary's recovered copy is being
// caught up: a lost answer to the link's HELLO, and a link broken in the
// middle of the writes sent from the primary's log.

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/wire"
)

// linkMode says what reviewProxy does with one replication connection.
type linkMode struct {
	dropReplies  bool          // never forward the secondary's answers (a lost HELLO reply)
	cutAfter     int           // >0: forward that many bytes after the HELLO, then close both sides
	delayReplies time.Duration // hold the secondary's answer to the HELLO (and what came with it) that long
	refuse       bool          // close the connection instead of forwarding the answer (the link stays down)
}

// reviewProxy stands between a primary and its secondary's peer port;
// mode decides, from the shard the HELLO names and how many connections
// of that shard came before, what happens to each connection.
type reviewProxy struct {
	ln     net.Listener
	target string
	mode   func(shard uint64, nth int) linkMode
	mu     sync.Mutex
	seen   map[uint64]int
	conns  []net.Conn
}

func startReviewProxy(t *testing.T, target string, mode func(shard uint64, nth int) linkMode) *reviewProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &reviewProxy{ln: ln, target: target, mode: mode, seen: map[uint64]int{}}
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		for _, c := range p.conns {
			c.Close()
		}
		p.mu.Unlock()
	})
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			go p.serve(down)
		}
	}()
	return p
}

func (p *reviewProxy) addr() string { return p.ln.Addr().String() }

// wantRelinked fails the test unless shard's link was accepted more than
// once: the fault on its first link happened and a reconnect followed.
func (p *reviewProxy) wantRelinked(t *testing.T, shard uint64) {
	t.Helper()
	p.mu.Lock()
	n := p.seen[shard]
	p.mu.Unlock()
	if n < 2 {
		t.Errorf("shard %d's link was accepted %d times: the cut never happened", shard, n)
	}
}

func (p *reviewProxy) serve(down net.Conn) {
	up, err := net.Dial("tcp", p.target)
	if err != nil {
		down.Close()
		return
	}
	p.mu.Lock()
	p.conns = append(p.conns, down, up)
	p.mu.Unlock()
	closeBoth := func() { down.Close(); up.Close() }
	defer closeBoth()
	// The first frame is the HELLO: it names the shard.
	head, hello, err := firstFrame(down)
	if err != nil {
		return
	}
	if _, err := up.Write(head); err != nil {
		return
	}
	// Only a link the secondary accepts counts: a HELLO refused because
	// its view lags (the primary dials again) must not use up the fault
	// meant for the link.
	answer, reply, err := firstFrame(up)
	if err != nil {
		return
	}
	var m linkMode
	if reply.Status == wire.StatusOK {
		p.mu.Lock()
		nth := p.seen[hello.Seq]
		p.seen[hello.Seq]++
		p.mu.Unlock()
		m = p.mode(hello.Seq, nth)
	}
	if m.refuse {
		return
	}
	go func() { // secondary -> primary
		defer closeBoth()
		if m.dropReplies {
			_, _ = io.Copy(io.Discard, up)
			return
		}
		time.Sleep(m.delayReplies)
		if _, err := down.Write(answer); err != nil {
			return
		}
		_, _ = io.Copy(down, up)
	}()
	// primary -> secondary
	if m.cutAfter > 0 {
		_, _ = io.CopyN(up, down, int64(m.cutAfter))
		return
	}
	_, _ = io.Copy(up, down)
}

// firstFrame reads c until it holds a whole frame; it returns what it
// read (the frame and any bytes after it) and the frame.
func firstFrame(c net.Conn) ([]byte, wire.Frame, error) {
	var head []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := c.Read(buf)
		head = append(head, buf[:n]...)
		if f, m, derr := wire.Decode(head, len(head)); derr == nil && m > 0 {
			return head, f, nil
		}
		if err != nil {
			return nil, wire.Frame{}, err
		}
	}
}

// syncBuf is a log sink safe to read while servers write to it.
type syncBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuf) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// resyncScene is two servers with data dirs: a (id 0) and b (id 1), b
// killed and started again on its directory while a led both shards
// alone, wrote more and deleted some. b2 is the new incarnation, not yet
// in a view.
type resyncScene struct {
	a, b2   *testServer
	logB    *syncBuf
	logA    *syncBuf    // a's log (for the failure messages)
	before  [2][]string // written before b died (the first 10 of each deleted while it was down)
	during  [2][]string // written while b was down
	payload string
}

func newResyncScene(t *testing.T, duringPerShard, valueSize int) *resyncScene {
	return newScene(t, duringPerShard, valueSize, false)
}

// newScene is newResyncScene; with fresh, b2 starts on an empty data
// directory (a respawn on another host), so it is re-seeded in full.
func newScene(t *testing.T, duringPerShard, valueSize int, fresh bool) *resyncScene {
	t.Helper()
	fc := startFakeCoord(t)
	dirA, dirB := t.TempDir(), t.TempDir()
	sc := &resyncScene{logB: &syncBuf{}, logA: &syncBuf{}, payload: strings.Repeat("p", valueSize)}
	quiet := func(c *Config) { c.Logger = zerolog.Nop() }
	a, _ := startDurableServer(t, fc, 0, dirA, "always", testSyncSecondary, func(c *Config) {
		c.Logger = zerolog.New(sc.logA).Level(zerolog.InfoLevel)
	})
	b, stopB := startDurableServer(t, fc, 1, dirB, "always", testSyncSecondary, quiet)
	pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), member(b, b.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 1, Secondary: 0}}}, a, b)
	put := func(srv *testServer, cn *conn, k, val string, op wire.Op) {
		t.Helper()
		// UNAVAILABLE (a lease renewed late on a loaded machine) is
		// retried with the same client and sequence number, as a client
		// does: a write applied before the lease lapsed applies once.
		// (Within 30 s: the server package running beside the e2e suite
		// under -race saw 10 s without an answer, and 10 s of lapses.)
		ans, err := cn.write(&wire.Frame{Op: op, Key: []byte(k), Value: []byte(val)}, 30*time.Second)
		if err != nil || ans.Status != wire.StatusOK {
			t.Fatalf("%v %s on server %d: %v %v %s", op, k, srv.cfg.ID, err, ans.Status, ans.Value)
		}
	}
	for sh, srv := range []*testServer{a, b} {
		cn := dialConn(t, srv.client, false)
		sc.before[sh] = keysOf(fmt.Sprintf("before%d", sh), sh, 2, 40)
		for _, k := range sc.before[sh] {
			put(srv, cn, k, "v-"+k, wire.OpPut)
		}
	}
	stopB()
	closePrimaries(b)
	leadAlone(t, 2, a, b)
	cn := dialConn(t, a.client, false)
	for sh := range sc.before {
		for _, k := range sc.before[sh][:10] {
			put(a, cn, k, "", wire.OpDelete)
		}
		sc.during[sh] = keysOf(fmt.Sprintf("during%d", sh), sh, 2, duringPerShard)
		for _, k := range sc.during[sh] {
			put(a, cn, k, k+sc.payload, wire.OpPut)
		}
	}
	if fresh {
		dirB = t.TempDir()
	}
	b2, _ := startDurableServer(t, fc, 1, dirB, "always", testSyncSecondary, func(c *Config) {
		c.Incarnation = 2
		c.Logger = zerolog.New(sc.logB).Level(zerolog.InfoLevel)
	})
	sc.a, sc.b2 = a, b2
	return sc
}

// pushReseedView pushes the view that makes b2 the re-seeding secondary
// of both shards, its peer address being proxy's.
func (sc *resyncScene) pushReseedView(t *testing.T, proxy string) {
	t.Helper()
	m := member(sc.b2, proxy)
	m.State = wire.StateReseeding
	pushView(t, wire.View{Epoch: 3, Servers: []wire.Member{member(sc.a, sc.a.peer), m},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 0, Secondary: 1}}}, sc.a, sc.b2)
}

// reseed pushes the view that makes b2 the re-seeding secondary of both
// shards, its peer address being proxy's, and waits until both copies
// are whole as far as b2 knows (re-seeding or resync finished).
func (sc *resyncScene) reseed(t *testing.T, proxy string) {
	t.Helper()
	sc.pushReseedView(t, proxy)
	deadline := time.Now().Add(20 * time.Second)
	for sh := 0; sh < 2; sh++ {
		for {
			sc.b2.secMu.Lock()
			st := sc.b2.sec[sh]
			sc.b2.secMu.Unlock()
			busy := true
			if st != nil {
				st.mu.Lock()
				busy = st.seeding || st.resync
				st.mu.Unlock()
			}
			if !busy && !sc.b2.dur.isPartial(sh) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("shard %d: b2's copy not whole after 20 s; b2's log:\n%s\na's log:\n%s", sh, sc.logB.String(),
					grepLines(sc.logA.String(), "resync", "seeding", "link", "secondary"))
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
}

// check fails the test for every key of b2's copies that is not what a
// holds: deleted keys present, keys written while b was down missing.
func (sc *resyncScene) check(t *testing.T) {
	t.Helper()
	var bad []string
	for sh := 0; sh < 2; sh++ {
		tb := sc.b2.tableFor(sh)
		for i, k := range sc.before[sh] {
			v, ok := tb.get([]byte(k))
			switch {
			case i < 10 && ok:
				bad = append(bad, fmt.Sprintf("shard %d: key %s, deleted while b was down, is back in b2's copy (%q)", sh, k, v))
			case i >= 10 && (!ok || string(v) != "v-"+k):
				bad = append(bad, fmt.Sprintf("shard %d: key %s = %q, %v", sh, k, v, ok))
			}
		}
		missing := 0
		for _, k := range sc.during[sh] {
			if v, ok := tb.get([]byte(k)); !ok || string(v) != k+sc.payload {
				missing++
			}
		}
		if missing > 0 {
			bad = append(bad, fmt.Sprintf("shard %d: %d of the %d keys written while b was down are missing from b2's copy", sh, missing, len(sc.during[sh])))
		}
	}
	if len(bad) > 0 {
		if len(bad) > 12 {
			bad = append(bad[:12], fmt.Sprintf("... (%d in all)", len(bad)))
		}
		t.Errorf("b2's copies, marked whole, differ from the primary's:\n%s\nb2's log:\n%s\na's log:\n%s", strings.Join(bad, "\n"),
			grepLines(sc.logB.String(), "resync", "seeding", "link accepted"), grepLines(sc.logA.String(), "resync", "seeding", "link", "secondary"))
	}
}

func grepLines(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

// TestReviewLostHelloReplyDuringResyncOffer: b2 offers its recovered
// copy for a partial resync (FlagResync) in its answer to the link's
// HELLO, but that answer is lost (a slow or cut connection: the primary's
// read times out and it dials again). The second HELLO, of the same
// primary incarnation, finds the link state kept and is answered without
// FlagResync and without a reset: the primary then re-seeds in full over
// the recovered copy, which was never emptied, so keys deleted while b
// was down come back in b2's copy (the copy a later failover promotes).
func TestReviewLostHelloReplyDuringResyncOffer(t *testing.T) {
	sc := newResyncScene(t, 20, 16)
	proxy := startReviewProxy(t, sc.b2.peer, func(shard uint64, nth int) linkMode {
		return linkMode{dropReplies: nth == 0}
	})
	sc.reseed(t, proxy.addr())
	sc.check(t)
	proxy.wantRelinked(t, 0)
	proxy.wantRelinked(t, 1)
}

// TestReviewLinkCutMidResync: the writes after b2's recovered copy are
// sent from a's log; the link to b2 breaks after the first 64 KiB of them
// (b2 applied a prefix), and a reconnects it at once while its other
// shard's link is still being connected. The reconnected link resends
// only the writes still in flight; the resync's end marker then tells b2
// its copy is whole although the rest of the writes from the log never
// reached it.
func TestReviewLinkCutMidResync(t *testing.T) {
	sc := newResyncScene(t, 2000, 1024)
	proxy := startReviewProxy(t, sc.b2.peer, func(shard uint64, nth int) linkMode {
		switch {
		case nth > 0:
			return linkMode{}
		case shard == 0:
			return linkMode{cutAfter: 64 << 10}
		default:
			return linkMode{delayReplies: 700 * time.Millisecond}
		}
	})
	sc.reseed(t, proxy.addr())
	sc.check(t)
	proxy.wantRelinked(t, 0)
}

// TestReviewResyncSceneHolds is the two tests above without a fault: the
// partial resync of both copies leaves b2 holding exactly what a holds.
func TestReviewResyncSceneHolds(t *testing.T) {
	sc := newResyncScene(t, 2000, 1024)
	proxy := startReviewProxy(t, sc.b2.peer, func(uint64, int) linkMode { return linkMode{} })
	sc.reseed(t, proxy.addr())
	sc.check(t)
	if n := strings.Count(sc.logB.String(), "offering the copy recovered"); n != 2 {
		t.Errorf("%d partial resyncs offered, want 2", n)
	}
}

// TestResyncPastItsBoundReseedsInFull: the writes b missed pass the
// partial resync's bound (lowered here to 256 KiB against 2 MiB missed per
// shard): a reads no more of its log than the bound and re-seeds b in
// full instead of holding all of them in memory at once, and b's copy is
// whole in the end.
func TestResyncPastItsBoundReseedsInFull(t *testing.T) {
	old := resyncMaxBytes
	resyncMaxBytes = 256 << 10
	t.Cleanup(func() { resyncMaxBytes = old })
	sc := newResyncScene(t, 2000, 1024)
	proxy := startReviewProxy(t, sc.b2.peer, func(uint64, int) linkMode { return linkMode{} })
	sc.reseed(t, proxy.addr())
	sc.check(t)
	if n := strings.Count(sc.logA.String(), "partial resync impossible"); n != 2 {
		t.Errorf("a refused %d partial resyncs, want 2 (both shards past the bound); a's log:\n%s", n,
			grepLines(sc.logA.String(), "resync", "seeding"))
	}
	if n := strings.Count(sc.logB.String(), "partial resync refused"); n != 2 {
		t.Errorf("b2 dropped %d recovered copies for a full re-seeding, want 2", n)
	}
}

// TestLinkCutBeforeResyncEnds: as above, but nothing delays the other
// shard, so the job that ends shard 0's resync starts on the link that
// is then cut (or finds none yet). The job must go on over the
// reconnected link — the copy is whole in the end — instead of failing
// for good while the secondary stays re-seeding (CI failure of stop 22:
// the timing above was not forced, and under load the job saw the cut).
func TestLinkCutBeforeResyncEnds(t *testing.T) {
	sc := newResyncScene(t, 2000, 1024)
	sc.reseedCutOnce(t)
}

// TestLinkCutDuringFullSeed: the same cut while b2, on an empty data
// directory, is re-seeded in full. The re-seeding goes on over the
// reconnected link (the snapshot's entries carry versions, so sending
// them again is harmless) and the copy is whole in the end.
func TestLinkCutDuringFullSeed(t *testing.T) {
	sc := newScene(t, 2000, 1024, true)
	sc.reseedCutOnce(t)
	if !strings.Contains(sc.logB.String(), "re-seeding complete") {
		t.Error("b2 logged no finished re-seeding")
	}
}

// TestResyncGoesOnOverASlowReconnect: shard 0's link is cut mid-resync
// and its reconnect takes longer than one HELLO exchange (a loaded
// machine: dial, HELLO, reading the log, enrolling — CI failure of stop
// 25, where b2 saw the second link accepted and then nothing). The job
// must wait for a reconnect still under way instead of failing after a
// fixed Handshake while the secondary stays re-seeding for good.
func TestResyncGoesOnOverASlowReconnect(t *testing.T) {
	sc := newResyncScene(t, 2000, 1024)
	var dials atomic.Int32
	slow := 2 * sc.a.cfg.Timing.Handshake
	hook := func(shard int) {
		if shard == 0 && dials.Add(1) == 2 {
			time.Sleep(slow)
		}
	}
	linkDialed.Store(&hook)
	t.Cleanup(func() { linkDialed.Store(nil) })
	sc.reseedCutOnce(t)
	if n := dials.Load(); n < 2 {
		t.Errorf("shard 0's link was dialled %d times, want a reconnect; a:\n%s", n, sc.logA.String())
	}
}

// TestResyncFailsWhenTheLinkStaysDown: shard 0's link is cut mid-resync
// and every reconnect fails. The re-seeding job, which waits for a
// reconnect under way, fails once an attempt gives up — long before its
// own limit — so that the coordinator, asking for its outcome, replaces
// the secondary instead of waiting minutes for it.
func TestResyncFailsWhenTheLinkStaysDown(t *testing.T) {
	sc := newResyncScene(t, 2000, 1024)
	proxy := startReviewProxy(t, sc.b2.peer, cutShard0(func(int) bool { return true }))
	sc.pushReseedView(t, proxy.addr())
	sc.a.mu.Lock()
	p := sc.a.prims[0]
	sc.a.mu.Unlock()
	tm := sc.a.cfg.Timing
	start := time.Now()
	err := p.seedResult(sc.b2.cfg.Incarnation, tm.SeedLimit)
	took := time.Since(start)
	if err == nil {
		t.Fatal("shard 0's re-seeding succeeded over a link that never came back")
	}
	// One connect attempt gives up after Handshake (plus its last try);
	// SeedLimit is far beyond.
	if limit := 6 * tm.Handshake; took > limit {
		t.Errorf("the re-seeding failed after %s, want within %s (its limit is %s): %v", took, limit, tm.SeedLimit, err)
	}
	t.Logf("shard 0's re-seeding failed after %s: %v", took, err)
}

// TestResyncSurvivesAnOverlappingConnectThatGivesUp: while the reconnect
// of shard 0's cut link is under way (slow, yet within one HELLO's
// time), another attempt to connect the same secondary gives up (a view's
// connect overtaken by a newer view). The reconnect then succeeds: the
// job must go on over it, not fail for the other attempt (review of the
// fix above).
func TestResyncSurvivesAnOverlappingConnectThatGivesUp(t *testing.T) {
	sc := newResyncScene(t, 2000, 1024)
	var dials atomic.Int32
	inSleep := make(chan struct{}, 1)
	hook := func(shard int) {
		if shard == 0 && dials.Add(1) == 2 {
			inSleep <- struct{}{}
			time.Sleep(sc.a.cfg.Timing.Handshake / 2)
		}
	}
	linkDialed.Store(&hook)
	t.Cleanup(func() { linkDialed.Store(nil) })
	// (the third link accepted is the overlapping attempt's)
	proxy := startReviewProxy(t, sc.b2.peer, cutShard0(func(nth int) bool { return nth == 2 }))
	sc.pushReseedView(t, proxy.addr())
	sc.a.mu.Lock()
	p := sc.a.prims[0]
	sc.a.mu.Unlock()
	other := make(chan error, 1)
	go func() {
		<-inSleep
		time.Sleep(sc.a.cfg.Timing.Handshake / 12)
		p.mu.Lock()
		sec, epoch := p.sec, p.epoch
		p.mu.Unlock()
		other <- p.connect(sec, epoch, time.Millisecond, func() bool { return true })
	}()
	if err := p.seedResult(sc.b2.cfg.Incarnation, 20*time.Second); err != nil {
		t.Errorf("the re-seeding failed although the reconnect succeeded: %v", err)
	}
	select {
	case err := <-other:
		if err == nil {
			t.Error("the overlapping connect succeeded: the test did not provoke what it means to")
		}
	case <-time.After(10 * time.Second):
		t.Error("the overlapping connect never ran")
	}
	sc.reseed(t, proxy.addr())
	sc.check(t)
}

// cutShard0 is a proxy mode: shard 0's first link accepted is cut 64 KiB
// after its HELLO, and its later links refused where refuse says so.
func cutShard0(refuse func(nth int) bool) func(uint64, int) linkMode {
	return func(shard uint64, nth int) linkMode {
		switch {
		case shard != 0:
			return linkMode{}
		case nth == 0:
			return linkMode{cutAfter: 64 << 10}
		}
		return linkMode{refuse: refuse(nth)}
	}
}

// reseedCutOnce is reseed with shard 0's first link cut 64 KiB after its
// HELLO, then check.
func (sc *resyncScene) reseedCutOnce(t *testing.T) {
	t.Helper()
	proxy := startReviewProxy(t, sc.b2.peer, func(shard uint64, nth int) linkMode {
		if shard == 0 && nth == 0 {
			return linkMode{cutAfter: 64 << 10}
		}
		return linkMode{}
	})
	sc.reseed(t, proxy.addr())
	sc.check(t)
	proxy.wantRelinked(t, 0)
}

// TestSlowSecondaryReseedSilence measures (FTKV_SEED_WINDOW_BENCH=1) how
// long a re-seeding secondary that applies each SEED frame slowly (30 ms:
// a loaded machine) stays silent to its primary, with the window of 8
// frames against the former 64. A secondary answers what one read brought
// once it has applied all of it, and the link's pings and live writes
// queue behind the frames in flight; a primary reports a link silent for
// longer than the failure timeout as stalled, and under an fsync-always
// load the coordinator failed the re-seeding secondary in 5 of 16 runs of
// scripts/bench-resync.sh with 64 frames (0 of 10 with 8 or 16). On a
// quiet machine: 1.56 s of silence with 64 frames, 150 ms with 8. A
// timing, so not part of make test (a CI run under its load saw 848 ms
// with 8); the bench script is the measurement of record.
func TestSlowSecondaryReseedSilence(t *testing.T) {
	if os.Getenv("FTKV_SEED_WINDOW_BENCH") == "" {
		t.Skip("set FTKV_SEED_WINDOW_BENCH=1")
	}
	silence := func(window uint64) (w time.Duration) {
		seedWindowTest.Store(window)
		defer seedWindowTest.Store(0)
		t.Run(fmt.Sprintf("window %d", window), func(t *testing.T) { w = seedSilence(t) })
		return w
	}
	w64 := silence(64)
	w8 := silence(seedWindow)
	t.Logf("longest silence of a re-seeding secondary taking 30 ms a frame: %s with 64 frames in flight, %s with %d",
		w64.Round(time.Millisecond), w8.Round(time.Millisecond), seedWindow)
	if w8 >= w64 {
		t.Errorf("the window of %d frames left the secondary silent as long as 64 did", seedWindow)
	}
}

// seedSilence re-seeds a secondary that takes 30 ms a SEED frame and
// returns the longest its primary went without hearing from it.
func seedSilence(t *testing.T) time.Duration {
	// About 19 MiB per shard: 75 frames of 256 KiB.
	sc := newScene(t, 300, 64<<10, true)
	slow := func() { time.Sleep(30 * time.Millisecond) }
	seedApplied.Store(&slow)
	defer seedApplied.Store(nil)
	var worst atomic.Int64
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
			}
			sc.a.mu.Lock()
			p := sc.a.prims[0]
			sc.a.mu.Unlock()
			if p == nil {
				continue
			}
			if h, ok := p.linkHealth(time.Now()); ok && int64(h.Stalled) > worst.Load() {
				worst.Store(int64(h.Stalled))
			}
		}
	}()
	sc.reseed(t, sc.b2.peer)
	close(stop)
	<-sampled
	sc.check(t)
	return time.Duration(worst.Load())
}
