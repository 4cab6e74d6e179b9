package server

import (
	"context"
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"
)

// fdEngine is a gnet engine that only carries enrolled connections.
type fdEngine struct {
	gnet.BuiltinEventEngine
	eng    chan gnet.Engine
	ready  chan struct{} // closed once a loop runs (a probe connection opened)
	once   sync.Once
	closed chan gnet.Conn
}

func (e *fdEngine) OnBoot(eng gnet.Engine) gnet.Action { e.eng <- eng; return gnet.None }
func (e *fdEngine) OnOpen(c gnet.Conn) ([]byte, gnet.Action) {
	if c.Context() != nil {
		return nil, gnet.None // enrolled
	}
	e.once.Do(func() { close(e.ready) })
	return nil, gnet.Close
}
func (e *fdEngine) OnClose(c gnet.Conn, _ error) gnet.Action {
	if c.Context() != nil { // an enrolled connection, not the probe
		e.closed <- c
	}
	return gnet.None
}

// dial connects to ln; enroll accepts that connection and enrolls its
// server side into eng (two steps: the test frees a descriptor between
// them, so the accepted side takes its number).
func dial(t *testing.T, ln net.Listener) net.Conn {
	t.Helper()
	cl, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl
}

func enroll(t *testing.T, eng gnet.Engine, ln net.Listener) gnet.Conn {
	t.Helper()
	sc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	resc, err := eng.Register(gnet.NewNetConnContext(gnet.NewContext(context.Background(), "enrolled"), sc))
	if err != nil {
		t.Fatal(err)
	}
	res := <-resc
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	return res.Conn
}

// fdOf is c's descriptor number.
func fdOf(t *testing.T, c net.Conn) int {
	t.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	fd := -1
	_ = rc.Control(func(u uintptr) { fd = int(u) })
	return fd
}

// TestWriteOnLoopAfterClose: gnet's Conn.Write does not check that the
// connection is still open, and after a close its descriptor number
// belongs to whatever the process opens next. A reply to a client that
// hung up (replyBatch.flush) or a replication link's pending flush
// (replLink.flushOnLoop) then went to another connection: a re-seeding
// whose link was cut delivered its old stream's tail on the new link,
// which marked a copy missing most keys complete (TestLinkCutDuringFullSeed,
// 1 run in 40 under -race -cpu 1). writeOnLoop must drop such a write.
func TestWriteOnLoopAfterClose(t *testing.T) {
	h := &fdEngine{eng: make(chan gnet.Engine, 1), ready: make(chan struct{}), closed: make(chan gnet.Conn, 4)}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	go func() { _ = gnet.Run(h, "tcp://"+addr, gnet.WithNumEventLoop(1)) }()
	var eng gnet.Engine
	select {
	case eng = <-h.eng:
	case <-time.After(10 * time.Second):
		t.Fatal("engine did not start")
	}
	t.Cleanup(func() { _ = eng.Stop(context.Background()) })
	// OnBoot runs before the loops are listed: Register only once a
	// connection of the engine's own listener has opened.
	for probed := false; !probed; {
		if pc, err := net.Dial("tcp", addr); err == nil {
			pc.Close()
		}
		select {
		case <-h.ready:
			probed = true
		case <-time.After(100 * time.Millisecond):
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()

	for _, tc := range []struct {
		name  string
		write func(gnet.Conn, []byte) error
		leaks bool
	}{
		{"gnet Write (the hole)", func(c gnet.Conn, b []byte) error { _, err := c.Write(b); return err }, true},
		{"writeOnLoop", writeOnLoop, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dial(t, ln)
			old := enroll(t, eng, ln)
			fd := old.Fd()
			if err := old.Close(); err != nil {
				t.Fatal(err)
			}
			<-h.closed
			// The next descriptors the process opens take the number back:
			// here new connections; the peer of the one with old's number
			// reads what reaches it.
			var reader net.Conn
			for i := 0; i < 4 && reader == nil; i++ {
				a := dial(t, ln)
				b, err := ln.Accept()
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { b.Close() })
				switch fd {
				case fdOf(t, a):
					reader = b
				case fdOf(t, b):
					reader = a
				}
			}
			if reader == nil {
				t.Skipf("descriptor %d not reused by the next 8 sockets", fd)
			}
			errc := make(chan error, 1)
			_ = old.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
				errc <- tc.write(old, []byte("stale"))
				return nil
			}))
			werr := <-errc
			_ = reader.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			buf := make([]byte, 16)
			n, _ := reader.Read(buf)
			switch {
			case tc.leaks && n == 0:
				t.Fatalf("the scene does not show the hole: nothing reached the connection that reused fd %d", fd)
			case !tc.leaks && n > 0:
				t.Fatalf("a write to a closed connection reached the connection that reused its descriptor %d: %q", fd, buf[:n])
			case !tc.leaks && !errors.Is(werr, net.ErrClosed):
				t.Fatalf("write to a closed connection: %v, want net.ErrClosed", werr)
			}
			t.Logf("fd %d reused; %d bytes reached the new connection", fd, n)
		})
	}
	// An open connection gets what writeOnLoop writes.
	cl := dial(t, ln)
	c := enroll(t, eng, ln)
	errc := make(chan error, 1)
	_ = c.EventLoop().Execute(context.Background(), gnet.RunnableFunc(func(context.Context) error {
		errc <- writeOnLoop(c, []byte("fresh"))
		return nil
	}))
	if err := <-errc; err != nil {
		t.Fatalf("writeOnLoop to an open connection: %v", err)
	}
	_ = cl.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 5)
	if _, err := io.ReadFull(cl, buf); err != nil || string(buf) != "fresh" {
		t.Fatalf("an open connection got %q (%v), want \"fresh\"", buf, err)
	}
}
