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
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var hellos atomic.Int32
	go func() {
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer nc.Close()
				f, err := frameio.ReadFrame(bufio.NewReader(nc))
				if err != nil || f.Op != wire.OpReplHello {
					return
				}
				hellos.Add(1)
				_, _ = nc.Write(wire.Append(nil, &wire.Frame{Op: wire.OpReplHello, ID: f.ID, Epoch: f.Epoch, Seq: 0}))
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
	deadline := time.Now().Add(5 * time.Second)
	for hellos.Load() < 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d links opened and closed at once by the secondary", hellos.Load())
	if hellos.Load() < 2 {
		t.Fatalf("the primary dialled its link %d times in 5 s; want it to retry", hellos.Load())
	}
}
