package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"ftkv/hashring"
	"ftkv/internal/frameio"
	"ftkv/timing"
	"ftkv/wire"
)

// This file is a small harness for tests that run real servers on
// loopback ports without a coordinator process: a fake coordinator that
// grants every heartbeat (so primaries hold their lease), views pushed by
// the test on the control ports, and raw client frames.

const testSecret = "test-secret"

// fakeCoord answers every heartbeat OK and remembers the last one of each
// server.
type fakeCoord struct {
	ln net.Listener
	mu sync.Mutex
	hb map[uint32]wire.Heartbeat
	at map[uint32][]time.Time // when each heartbeat arrived
}

func startFakeCoord(t *testing.T) *fakeCoord {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fc := &fakeCoord{ln: ln, hb: make(map[uint32]wire.Heartbeat), at: make(map[uint32][]time.Time)}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go fc.serve(nc)
		}
	}()
	return fc
}

func (fc *fakeCoord) serve(nc net.Conn) {
	defer nc.Close()
	br := bufio.NewReader(nc)
	for {
		f, err := frameio.ReadFrame(br)
		if err != nil {
			return
		}
		if f.Op != wire.OpHeartbeat {
			continue
		}
		if hb, err := wire.DecodeHeartbeat(f.Value); err == nil {
			fc.mu.Lock()
			fc.hb[hb.ID] = hb
			fc.at[hb.ID] = append(fc.at[hb.ID], time.Now())
			fc.mu.Unlock()
		}
		if _, err := nc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpHeartbeat, ID: f.ID, Status: wire.StatusOK})); err != nil {
			return
		}
	}
}

// arrivals returns when id's heartbeats arrived.
func (fc *fakeCoord) arrivals(id uint32) []time.Time {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return append([]time.Time(nil), fc.at[id]...)
}

func (fc *fakeCoord) last(id uint32) (wire.Heartbeat, bool) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	hb, ok := fc.hb[id]
	return hb, ok
}

// testServer is one running server and the addresses it reported.
type testServer struct {
	*Server
	client, peer, ctl string
}

// testSyncSecondary (FTKV_TEST_SYNC_SECONDARY=1, a second run of this
// package in make test) gives the servers of startTestServer and of the
// resync scenes a log with fsync_secondary: every secondary then
// acknowledges only what its log synced.
var testSyncSecondary = os.Getenv("FTKV_TEST_SYNC_SECONDARY") == "1"

func startTestServer(t *testing.T, fc *fakeCoord, id uint32, tm timing.Config) *testServer {
	t.Helper()
	cfg := Config{ID: id, Incarnation: 1, CoordAddr: fc.ln.Addr().String(), Secret: testSecret,
		DumpDir: t.TempDir(), Timing: tm, Loops: 1, Logger: zerolog.New(zerolog.NewTestWriter(t)).Level(zerolog.WarnLevel)}
	if testSyncSecondary {
		cfg.DataDir, cfg.Fsync, cfg.SyncSecondary = t.TempDir(), "always", true
	}
	ts, _ := runTestServer(t, fc, cfg)
	return ts
}

// runTestServer runs a server with cfg until the test ends (or cancel),
// and returns it once fc has its first heartbeat of cfg's incarnation.
func runTestServer(t *testing.T, fc *fakeCoord, cfg Config) (*testServer, context.CancelFunc) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = s.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		// Run returns without closing what it leads (the process exits
		// then): close it here, or its pingers and reconnect loops live
		// on in the test binary and dial their old addresses, which a
		// later test's server may hold (one of them re-seeded a later
		// test's secondary with its own copy).
		for _, p := range s.primaries() {
			p.close()
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		if hb, ok := fc.last(cfg.ID); ok && hb.Incarnation == cfg.Incarnation {
			return &testServer{Server: s, client: hb.Addr, peer: hb.PeerAddr, ctl: hb.CtlAddr}, cancel
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %d did not heartbeat", cfg.ID)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// conn is a test's connection to a server port, one request at a time.
type conn struct {
	nc   net.Conn
	br   *bufio.Reader
	next uint64

	client, seq uint64 // write's client id (0: not yet) and its last sequence number
}

// testClients numbers the client ids write stamps: above every id a test
// writes itself.
var testClients atomic.Uint64

func init() { testClients.Store(1 << 40) }

func dialConn(t *testing.T, addr string, hello bool) *conn {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &conn{nc: nc, br: bufio.NewReader(nc)}
	if hello {
		if ans, err := c.do(&wire.Frame{Op: wire.OpHello, Value: []byte(testSecret)}, 5*time.Second); err != nil || ans.Status != wire.StatusOK {
			t.Fatalf("hello to %s: %v %v", addr, err, ans.Status)
		}
	}
	return c
}

// doRetry is do, sent again while the answer is UNAVAILABLE (a lease
// lapsing under a loaded machine's stalls), within d, as a client retries.
// A write sent again must carry a client id and sequence number (write
// stamps them), or a retry of one the primary applied before it lost its
// lease applies it twice.
func (c *conn) doRetry(f *wire.Frame, d time.Duration) (wire.Frame, error) {
	deadline := time.Now().Add(d)
	for {
		ans, err := c.do(f, time.Until(deadline))
		if err != nil || ans.Status != wire.StatusUnavailable || time.Now().After(deadline) {
			return ans, err
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// write sends the write f as a client does: stamped with this
// connection's client id and its next sequence number (its floor: the
// writes before have their answers), and sent again with both while the
// answer is UNAVAILABLE, so that it applies once (doRetry).
func (c *conn) write(f *wire.Frame, d time.Duration) (wire.Frame, error) {
	if c.client == 0 {
		c.client = testClients.Add(1)
	}
	c.seq++
	f.Client, f.Seq, f.Floor = c.client, c.seq, c.seq
	return c.doRetry(f, d)
}

// do sends f and waits up to d for its answer.
func (c *conn) do(f *wire.Frame, d time.Duration) (wire.Frame, error) {
	c.next++
	f.ID = c.next
	_ = c.nc.SetDeadline(time.Now().Add(d))
	if _, err := c.nc.Write(wire.Append(nil, f)); err != nil {
		return wire.Frame{}, err
	}
	for {
		ans, err := frameio.ReadFrame(c.br)
		if err != nil {
			return ans, err
		}
		if ans.ID == f.ID {
			return ans, nil
		}
	}
}

// pushView sends v to every server in parallel and fails the test unless
// all apply it.
func pushView(t *testing.T, v wire.View, ss ...*testServer) {
	t.Helper()
	enc := wire.AppendView(nil, &v)
	errs := make(chan error, len(ss))
	for _, s := range ss {
		c := dialConn(t, s.ctl, true)
		go func() {
			ans, err := c.do(&wire.Frame{Op: wire.OpSetView, Epoch: v.Epoch, Value: enc}, 20*time.Second)
			if err == nil && ans.Status != wire.StatusOK {
				err = errors.New(ans.Status.String() + ": " + string(ans.Value))
			}
			errs <- err
		}()
	}
	for range ss {
		if err := <-errs; err != nil {
			t.Fatalf("view %d: %v", v.Epoch, err)
		}
	}
}

func member(s *testServer, peer string) wire.Member {
	return wire.Member{ID: s.cfg.ID, Incarnation: s.cfg.Incarnation, State: wire.StateServing,
		Host: "localhost", Addr: s.client, PeerAddr: peer, CtlAddr: s.ctl}
}

// keysOf returns n distinct keys of shard among shards.
func keysOf(prefix string, shard, shards, n int) []string {
	r := hashring.New(shards)
	var out []string
	for i := 0; len(out) < n; i++ {
		k := prefix + "-" + itoa(i)
		if r.Shard(k) == shard {
			out = append(out, k)
		}
	}
	return out
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var b [20]byte
	n := len(b)
	for i > 0 {
		n--
		b[n] = byte('0' + i%10)
		i /= 10
	}
	return string(b[n:])
}

// holdProxy forwards connections to a target; the target's answers can
// be held (not forwarded, kept in order) and released later.
type holdProxy struct {
	ln     net.Listener
	target string
	mu     sync.Mutex
	held   bool
	cond   *sync.Cond
}

func startHoldProxy(t *testing.T, target string) *holdProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holdProxy{ln: ln, target: target}
	p.cond = sync.NewCond(&p.mu)
	var conns []net.Conn
	var cmu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		p.hold(false)
		cmu.Lock()
		for _, c := range conns {
			c.Close()
		}
		cmu.Unlock()
	})
	go func() {
		for {
			down, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", target)
			if err != nil {
				down.Close()
				continue
			}
			cmu.Lock()
			conns = append(conns, down, up)
			cmu.Unlock()
			go func() {
				_, _ = io.Copy(up, down)
				up.Close()
				down.Close()
			}()
			go func() {
				buf := make([]byte, 32<<10)
				for {
					n, err := up.Read(buf)
					if n > 0 {
						p.mu.Lock()
						for p.held {
							p.cond.Wait()
						}
						p.mu.Unlock()
						if _, werr := down.Write(buf[:n]); werr != nil {
							break
						}
					}
					if err != nil {
						break
					}
				}
				up.Close()
				down.Close()
			}()
		}
	}()
	return p
}

func (p *holdProxy) addr() string { return p.ln.Addr().String() }

// hold stops (true) or resumes (false) forwarding the target's answers.
func (p *holdProxy) hold(on bool) {
	p.mu.Lock()
	p.held = on
	p.cond.Broadcast()
	p.mu.Unlock()
}

// waitSeeded waits until s holds a copy of shard that is not being
// re-seeded, and fails the test after d.
func waitSeeded(t *testing.T, s *testServer, shard int, d time.Duration) {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		s.secMu.Lock()
		st := s.sec[shard]
		s.secMu.Unlock()
		seeding := true
		if st != nil {
			st.mu.Lock()
			seeding = st.seeding
			st.mu.Unlock()
		}
		if !seeding {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server %d: shard %d not re-seeded after %v", s.cfg.ID, shard, d)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// closePrimaries closes s's primaries' links to their secondaries, as
// the end of s's process would (after its stop function).
func closePrimaries(s *testServer) {
	s.mu.Lock()
	var ps []*primary
	for _, p := range s.prims {
		ps = append(ps, p)
	}
	s.mu.Unlock()
	for _, p := range ps {
		p.close() // (takes secMu: never under Server.mu)
	}
}

// leadAlone pushes to alive the view of epoch in which dead (the other
// of two servers) is dead and alive is the primary of both shards, with
// no secondary.
func leadAlone(t *testing.T, epoch uint64, alive, dead *testServer) {
	t.Helper()
	md := member(dead, dead.peer)
	md.State = wire.StateDead
	servers := make([]wire.Member, 2)
	servers[alive.cfg.ID], servers[dead.cfg.ID] = member(alive, alive.peer), md
	me := int32(alive.cfg.ID)
	pushView(t, wire.View{Epoch: epoch, Servers: servers,
		Shards: []wire.Placement{{Primary: me, Secondary: -1}, {Primary: me, Secondary: -1}}}, alive)
}
