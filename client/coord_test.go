package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"ftkv/status"
	"ftkv/timing"
	"ftkv/wire"
)

// fakeNode is a tiny TCP server on loopback speaking the wire protocol:
// every request frame gets answer(request) back (the request's id is
// copied). It stands in for a coordinator or a storage server.
type fakeNode struct {
	addr   string
	ln     net.Listener
	answer func(f wire.Frame) wire.Frame
	asked  atomic.Int64
	mu     sync.Mutex
	ops    []wire.Op
}

func startFake(t *testing.T, answer func(f wire.Frame) wire.Frame) *fakeNode {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	n := &fakeNode{addr: ln.Addr().String(), ln: ln, answer: answer}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go n.serve(nc)
		}
	}()
	return n
}

func (n *fakeNode) serve(nc net.Conn) {
	defer nc.Close()
	readFrames(nc, func(f wire.Frame) bool {
		n.asked.Add(1)
		n.mu.Lock()
		n.ops = append(n.ops, f.Op)
		n.mu.Unlock()
		r := n.answer(f)
		r.ID = f.ID
		_, err := nc.Write(wire.Append(nil, &r))
		return err == nil
	}, nil)
}

// deadAddr is a loopback address nobody listens on (connection refused).
func deadAddr(t *testing.T) string {
	t.Helper()
	return deadAddrs(t, 1)[0]
}

// deadAddrs is n distinct addresses nobody listens on (the listeners
// are held until all are taken: one closed port can be handed out again).
func deadAddrs(t *testing.T, n int) []string {
	t.Helper()
	addrs := make([]string, n)
	for i := range addrs {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		addrs[i] = ln.Addr().String()
	}
	return addrs
}

// mute accepts connections and never answers, like a stopped (SIGSTOP)
// coordinator whose kernel still completes the handshake.
func mute(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var conns []net.Conn
	var mu sync.Mutex
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
	})
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
			go io.Copy(io.Discard, nc)
		}
	}()
	return ln.Addr().String()
}

// testView is a one-shard view at epoch whose server is at addr.
func testView(epoch uint64, addr string) []byte {
	v := wire.View{Epoch: epoch, Servers: []wire.Member{{ID: 0, Incarnation: 1, State: wire.StateServing, Addr: addr}},
		Shards: []wire.Placement{{Primary: 0, Secondary: -1}}}
	return wire.AppendView(nil, &v)
}

// coordinator answers VIEW with view() and STATUS with st() (as JSON).
func coordinator(view func() []byte, st func() status.Cluster) func(wire.Frame) wire.Frame {
	return func(f wire.Frame) wire.Frame {
		switch f.Op {
		case wire.OpView:
			return wire.Frame{Op: f.Op, Status: wire.StatusOK, Value: view()}
		case wire.OpStatus:
			b, _ := json.Marshal(st())
			return wire.Frame{Op: f.Op, Status: wire.StatusOK, Value: b}
		}
		return wire.Frame{Op: f.Op, Status: wire.StatusBadRequest}
	}
}

func notLeader(hint string) func(wire.Frame) wire.Frame {
	return func(f wire.Frame) wire.Frame {
		return wire.Frame{Op: f.Op, Status: wire.StatusNotLeader, Value: []byte(hint)}
	}
}

// fastTiming: a short handshake, so that a stalled coordinator is left
// quickly.
func fastTiming() Option { return WithTiming(timing.New(50 * time.Millisecond)) }

func TestParseCoordAddrs(t *testing.T) {
	got, err := parseCoordAddrs(" a:1, b:2,,a:1 ,c:3 ")
	if err != nil || strings.Join(got, ",") != "a:1,b:2,c:3" {
		t.Errorf("got %v, %v", got, err)
	}
	for _, s := range []string{"", " , ,"} {
		if _, err := parseCoordAddrs(s); !errors.Is(err, ErrNoCoordinator) {
			t.Errorf("%q: %v, want ErrNoCoordinator", s, err)
		}
		if _, err := Dial(context.Background(), s); !errors.Is(err, ErrNoCoordinator) {
			t.Errorf("Dial(%q): %v, want ErrNoCoordinator", s, err)
		}
	}
}

// The first coordinator of the list is dead (refused) or stalled (accepts,
// never answers): Dial goes on to the next one at once, resp. after one
// handshake timeout, and later refreshes start with the one that answered.
func TestDialSkipsDeadCoordinator(t *testing.T) {
	st := func() status.Cluster { return status.Cluster{} }
	for name, first := range map[string]func(*testing.T) string{"refused": deadAddr, "stalled": mute} {
		t.Run(name, func(t *testing.T) {
			live := startFake(t, coordinator(func() []byte { return testView(3, "127.0.0.1:1") }, st))
			dead := first(t)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			start := time.Now()
			c, err := Dial(ctx, dead+","+live.addr, fastTiming())
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			if took := time.Since(start); took > time.Second {
				t.Errorf("Dial took %s past a dead coordinator", took)
			}
			if e := c.View().Epoch; e != 3 {
				t.Errorf("view epoch %d, want 3", e)
			}
			if o := c.coordOrder(); o[0] != live.addr {
				t.Errorf("order after a success %v, want %s first", o, live.addr)
			}
			if err := c.refreshView(ctx, 3); err != nil {
				t.Fatal(err)
			}
			if n := live.asked.Load(); n != 2 {
				t.Errorf("live coordinator asked %d times, want 2", n)
			}
		})
	}
}

// A follower answers NOT_LEADER with the leader's address: the client asks
// that address next, before the rest of the list.
func TestNotLeaderRedirect(t *testing.T) {
	st := func() status.Cluster { return status.Cluster{} }
	leader := startFake(t, coordinator(func() []byte { return testView(9, "127.0.0.1:1") }, st))
	other := startFake(t, coordinator(func() []byte { return testView(9, "127.0.0.1:1") }, st))
	follower := startFake(t, notLeader(leader.addr))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// The leader is not in the list at all: only the hint leads there.
	c, err := Dial(ctx, follower.addr+","+other.addr, fastTiming())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if leader.asked.Load() != 1 || other.asked.Load() != 0 {
		t.Errorf("leader asked %d times, other %d; want the hint followed first (1, 0)", leader.asked.Load(), other.asked.Load())
	}

	// No leader known (empty hint), or a hint that is dead: the next one.
	for _, hint := range []string{"", deadAddr(t)} {
		follower := startFake(t, notLeader(hint))
		c, err := Dial(ctx, follower.addr+","+other.addr, fastTiming())
		if err != nil {
			t.Fatalf("hint %q: %v", hint, err)
		}
		c.Close()
	}

	// Followers that only redirect to each other: a clear error, soon.
	var a, b *fakeNode
	a = startFake(t, func(f wire.Frame) wire.Frame { return notLeader(b.addr)(f) })
	b = startFake(t, func(f wire.Frame) wire.Frame { return notLeader(a.addr)(f) })
	_, err = Dial(ctx, a.addr+","+b.addr, fastTiming())
	if err == nil || !strings.Contains(err.Error(), "NOT_LEADER") || ctx.Err() != nil {
		t.Errorf("redirect loop: %v", err)
	}
	t.Logf("redirect loop: %v", err)
}

// Every coordinator dead: Dial fails well within its context, with one
// line naming each coordinator and what went wrong.
func TestAllCoordinatorsDead(t *testing.T) {
	dead := append(deadAddrs(t, 2), mute(t))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Dial(ctx, strings.Join(dead, ","), fastTiming())
	took := time.Since(start)
	if err == nil {
		t.Fatal("Dial succeeded with every coordinator dead")
	}
	if took > 2*time.Second || ctx.Err() != nil {
		t.Errorf("took %s (ctx %v), want a prompt error", took, ctx.Err())
	}
	msg := err.Error()
	if strings.Contains(msg, "\n") || !strings.HasPrefix(msg, "ftkv: no coordinator of "+strings.Join(dead, ",")+" answered: ") {
		t.Errorf("error %q: want one line naming the coordinators", msg)
	}
	for _, a := range dead {
		if !strings.Contains(msg, a) {
			t.Errorf("error %q does not name %s", msg, a)
		}
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Errorf("error %q does not wrap ECONNREFUSED", msg)
	}
	t.Logf("after %s: %v", took.Round(time.Millisecond), err)

	// A context shorter than one round ends it with the context's error.
	short, cancel2 := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel2()
	_, err = Dial(short, mute(t)+","+mute(t), WithTiming(timing.New(time.Second)))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("short ctx: %v, want DeadlineExceeded", err)
	}

	// One coordinator: the error is as it always was.
	one := deadAddr(t)
	_, err = Dial(ctx, one)
	if err == nil || !strings.HasPrefix(err.Error(), "ftkv: coordinator "+one+": ") {
		t.Errorf("single coordinator: %v", err)
	}
}

// Status prefers the leader's report; if the leader does not answer it
// returns the follower's.
func TestStatusPrefersLeader(t *testing.T) {
	view := func() []byte { return testView(4, "127.0.0.1:1") }
	var leaderAddr atomic.Value // string: read by the fakes' goroutines
	group := func(answered int) status.Cluster {
		return status.Cluster{Epoch: 4, Term: 2, Leader: 1, Answered: answered, Coordinators: []status.Coordinator{
			{ID: 0, ClientAddr: "x", Role: "follower"}, {ID: 1, ClientAddr: leaderAddr.Load().(string), Role: "leader"}}}
	}
	leader := startFake(t, coordinator(view, func() status.Cluster {
		st := group(1)
		st.Servers = []status.Server{{ID: 0, PrimaryKeys: 42}}
		return st
	}))
	leaderAddr.Store(leader.addr)
	follower := startFake(t, coordinator(view, func() status.Cluster { return group(0) }))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, follower.addr, fastTiming())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	st, err := c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Answered != 1 || len(st.Servers) != 1 || st.Servers[0].PrimaryKeys != 42 {
		t.Errorf("status answered by %d: %+v; want the leader's", st.Answered, st)
	}

	// The leader dies: the follower's report.
	leader.ln.Close()
	c.mu.Lock()
	for _, cn := range c.coordConns {
		cn.fail(ErrClosed)
	}
	c.mu.Unlock()
	leaderAddr.Store(deadAddr(t))
	st, err = c.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Answered != 0 {
		t.Errorf("answered by %d, want the follower (0)", st.Answered)
	}
}

// A coordinator whose view is older than an epoch a server reported (a
// follower cut off from its group) is passed over: the client takes the
// next coordinator's newer view, and a request goes through.
func TestLaggingCoordinatorSkipped(t *testing.T) {
	var epoch atomic.Uint64
	epoch.Store(5)
	srv := startFake(t, func(f wire.Frame) wire.Frame {
		if f.Epoch != epoch.Load() {
			return wire.Frame{Op: f.Op, Status: wire.StatusStaleEpoch, Epoch: epoch.Load()}
		}
		return wire.Frame{Op: f.Op, Status: wire.StatusOK, Value: []byte("v")}
	})
	st := func() status.Cluster { return status.Cluster{} }
	lagging := startFake(t, coordinator(func() []byte { return testView(5, srv.addr) }, st))
	current := startFake(t, coordinator(func() []byte { return testView(epoch.Load(), srv.addr) }, st))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, lagging.addr+","+current.addr, fastTiming())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if v, err := c.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("get at epoch 5: %q, %v", v, err)
	}
	epoch.Store(6) // a failover the lagging coordinator never hears of
	if v, err := c.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("get at epoch 6: %q, %v", v, err)
	}
	if e := c.View().Epoch; e != 6 {
		t.Errorf("view epoch %d, want 6", e)
	}
}

// TestCutOffCoordinatorSameView: a coordinator cut off from its group
// keeps handing out the view it last knew, in which a server that was
// respawned elsewhere still has its old, dead address. A server then says
// nothing of a newer epoch (it cannot be reached), so the view is not
// "older than a server's"; it is merely no newer than the one that just
// failed. The client must ask the other coordinators for a newer one
// instead of looping on the stale view until its calls time out.
func TestCutOffCoordinatorSameView(t *testing.T) {
	srv := startFake(t, func(f wire.Frame) wire.Frame {
		return wire.Frame{Op: f.Op, Status: wire.StatusOK, Value: []byte("v")}
	})
	dead := func() string { // an address nobody listens on
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		a := l.Addr().String()
		l.Close()
		return a
	}()
	st := func() status.Cluster { return status.Cluster{} }
	var moved atomic.Bool
	addr := func() string {
		if moved.Load() {
			return srv.addr
		}
		return dead
	}
	cutOff := startFake(t, coordinator(func() []byte { return testView(5, dead) }, st))
	leader := startFake(t, coordinator(func() []byte {
		if moved.Load() {
			return testView(6, addr())
		}
		return testView(5, dead)
	}, st))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := Dial(ctx, cutOff.addr+","+leader.addr, fastTiming())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	moved.Store(true) // the server was respawned at a new address (epoch 6)
	gctx, gcancel := context.WithTimeout(ctx, 2*time.Second)
	defer gcancel()
	if v, err := c.Get(gctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("get after the move, with the cut-off coordinator asked first: %q, %v", v, err)
	}
	if e := c.View().Epoch; e != 6 {
		t.Errorf("view epoch %d, want 6", e)
	}
}

// TestServerBehindWithFrozenCoordinator: a shard just handed back: the
// client has the newest view (epoch 6) from the leader, but the server it
// names has not applied it yet ("server is behind the client's view").
// Every live coordinator answers epoch 6 (no newer than the view that
// failed: kept, but others asked), and one coordinator of the group is
// frozen (SIGSTOP: connected, never answers). Each refresh waited for the
// frozen one's whole answer timeout (2 s): a chaos review saw every write
// to a shard just handed back stall 2.0 s while a coordinator was frozen.
// The frozen one is now waited for only until it is late.
func TestServerBehindWithFrozenCoordinator(t *testing.T) {
	var behind atomic.Bool
	srv := startFake(t, func(f wire.Frame) wire.Frame {
		if behind.Load() {
			return wire.Frame{Op: f.Op, Status: wire.StatusStaleEpoch, Epoch: 5, Value: []byte("server is behind the client's view")}
		}
		return wire.Frame{Op: f.Op, Status: wire.StatusOK, Value: []byte("v")}
	})
	st := func() status.Cluster { return status.Cluster{} }
	view := func() []byte { return testView(6, srv.addr) }
	leader := startFake(t, coordinator(view, st))
	follower := startFake(t, coordinator(view, st))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	tm := timing.Default()
	c, err := Dial(ctx, leader.addr+","+mute(t)+","+follower.addr, WithTiming(tm))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	behind.Store(true)
	time.AfterFunc(tm.Handshake/20, func() { behind.Store(false) }) // the view reaches the server
	start := time.Now()
	if v, err := c.Get(ctx, "k"); err != nil || string(v) != "v" {
		t.Fatalf("get: %q, %v", v, err)
	}
	// (Before: at least the answer timeout, the frozen one's.)
	if took := time.Since(start); took >= tm.Handshake/2 {
		t.Errorf("get took %s with the server briefly behind the view, want well under the answer timeout %s", took.Round(time.Millisecond), tm.Handshake)
	}
}

// TestDialWaitsForElection: the leader of a group just died and the
// others know no leader yet (NOT_LEADER without a hint, no view): Dial
// asks again until one is elected, instead of failing at once.
func TestDialWaitsForElection(t *testing.T) {
	st := func() status.Cluster { return status.Cluster{} }
	var elected atomic.Bool
	follower := func() *fakeNode {
		view := coordinator(func() []byte { return testView(9, "127.0.0.1:1") }, st)
		return startFake(t, func(f wire.Frame) wire.Frame {
			if !elected.Load() {
				return notLeader("")(f)
			}
			return view(f)
		})
	}
	a, b := follower(), follower()
	time.AfterFunc(300*time.Millisecond, func() { elected.Store(true) })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, deadAddr(t)+","+a.addr+","+b.addr, WithTiming(timing.New(100*time.Millisecond)))
	if err != nil {
		t.Fatalf("Dial during an election: %v", err)
	}
	c.Close()
	if a.asked.Load() < 2 {
		t.Fatalf("the follower was asked %d times: want it asked again after the election", a.asked.Load())
	}
}

// TestSilentServerNamedInTheError: the shard's server takes the request
// and answers nothing (frozen, and the last copy of its shard, so the
// coordinator keeps it in the view). The caller's deadline ends the call;
// the error names the shard and the server that did not answer (it said
// only "context deadline exceeded (last error: context deadline
// exceeded)": a black-box review).
func TestSilentServerNamedInTheError(t *testing.T) {
	silent := mute(t)
	st := func() status.Cluster { return status.Cluster{} }
	co := startFake(t, coordinator(func() []byte { return testView(6, silent) }, st))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := Dial(ctx, co.addr, WithTiming(timing.New(100*time.Millisecond)))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	gctx, gcancel := context.WithTimeout(context.Background(), time.Second)
	defer gcancel()
	_, err = c.Get(gctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(fmt.Sprint(err), "server "+silent+" did not answer") {
		t.Fatalf("get from a silent server: %v; want the deadline, naming the server that did not answer", err)
	}
	t.Log(err)
}
