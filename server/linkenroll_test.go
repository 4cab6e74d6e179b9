package server

import (
	"bufio"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/internal/frameio"
	"ftkv/timing"
	"ftkv/wire"
)

// TestLinkClosedAsItEnrolls: a secondary that accepts the link's HELLO
// and closes the connection at once, again and again. The primary's
// connection is closed and released by its event loop as the link
// enrolls; dialLink read it (its context) from another goroutine, a data
// race the detector reported in CI (TestReviewKilledTwiceMidResync). Run
// with -race (make test does): the primary must take what OnOpen gave.
func TestLinkClosedAsItEnrolls(t *testing.T) {
	fc := startFakeCoord(t)
	a := startTestServer(t, fc, 0, timing.New(500*time.Millisecond))
	var hellos atomic.Int32
	fakeSecondary(t, a, func(int, *bufio.Reader, net.Conn) {}, &hellos)
	deadline := time.Now().Add(5 * time.Second)
	for hellos.Load() < 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d links opened and closed at once by the secondary", hellos.Load())
	if hellos.Load() < 2 {
		t.Fatalf("the primary dialled its link %d times in 5 s; want it to retry", hellos.Load())
	}
}

// TestLinkEnrolledAfterTimeoutClosed: the link's enrolment into the
// event loop outlasts the handshake timeout (a busy loop), so dialLink
// gives up on it and dials again. Before, the connection registered late
// was opened all the same and left open, an orphan its secondary held
// for as long as the primary lived; now OnOpen closes it.
func TestLinkEnrolledAfterTimeoutClosed(t *testing.T) {
	fc := startFakeCoord(t)
	tm := timing.New(500 * time.Millisecond)
	tm.Handshake = 300 * time.Millisecond
	a := startTestServer(t, fc, 0, tm)
	var opens atomic.Int32
	hook := func(s *Server) {
		if s == a.Server && opens.Add(1) == 1 {
			time.Sleep(2 * tm.Handshake)
		}
	}
	testEnrollHook.Store(&hook)
	defer testEnrollHook.Store(nil)
	closed := make(chan int, 16) // index of each link the primary closed
	var hellos atomic.Int32
	fakeSecondary(t, a, func(n int, br *bufio.Reader, nc net.Conn) {
		for { // answer pings until the primary closes the link
			f, err := frameio.ReadFrame(br)
			if err != nil {
				closed <- n
				return
			}
			if f.Op == wire.OpPing {
				_, _ = nc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpReplAck, Flags: wire.FlagPing, Seq: f.ID}))
			}
		}
	}, &hellos)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case n := <-closed:
			if n == 1 {
				t.Logf("the link enrolled after its timeout was closed by the primary (%d links dialled)", hellos.Load())
				return
			}
		case <-deadline:
			t.Fatalf("the link enrolled after dialLink gave up on it is still open 5 s later (%d links dialled, %d enrolments)",
				hellos.Load(), opens.Load())
		}
	}
}

// fakeSecondary makes a listener server a's secondary for its shard 0
// (a view sent over a's control port): each connection that sends a
// link's HELLO is accepted (hellos counts them), then handed to serve
// with its index from 1; it is closed when serve returns.
func fakeSecondary(t *testing.T, a *testServer, serve func(n int, br *bufio.Reader, nc net.Conn), hellos *atomic.Int32) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				br := bufio.NewReader(nc)
				f, err := frameio.ReadFrame(br)
				if err != nil || f.Op != wire.OpReplHello {
					return
				}
				n := int(hellos.Add(1))
				_, _ = nc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpReplHello, ID: f.ID, Epoch: f.Epoch, Seq: 0}))
				serve(n, br, nc)
			}()
		}
	}()
	sec := wire.Member{ID: 1, Incarnation: 1, State: wire.StateServing, Host: "localhost", Addr: "127.0.0.1:1",
		PeerAddr: ln.Addr().String(), CtlAddr: "127.0.0.1:1"}
	v := wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer), sec},
		Shards: []wire.Placement{{Primary: 0, Secondary: 1}, {Primary: 0, Secondary: -1}}}
	ctl := dialConn(t, a.ctl, true)
	go func() {
		_, _ = ctl.do(&wire.Frame{Op: wire.OpSetView, Epoch: v.Epoch, Value: wire.AppendView(nil, &v)}, 20*time.Second)
	}()
}
