package connlimit

import (
	"bufio"
	"crypto/tls"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/panjf2000/gnet/v2"

	"ftkv/internal/frameio"
	"ftkv/internal/tlsconf"
	"ftkv/wire"
)

// asyncServer answers each GET with an AsyncWrite issued on the loop,
// counted in flight until written (MaxInflight pauses the connection).
type asyncServer struct{ gnet.BuiltinEventEngine }

func (h *asyncServer) OnTraffic(c gnet.Conn) gnet.Action {
	return Decode(c, func(f *wire.Frame, out []byte) ([]byte, gnet.Action) {
		st := Begin(c, 0)
		_ = c.AsyncWrite(wire.Append(nil, &wire.Frame{Op: f.Op, ID: f.ID}), func(c gnet.Conn, err error) error {
			st.Done(0)
			return nil
		})
		return out, gnet.None
	})
}

func cpuNow() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// idleAfterPauses pauses a connection (MaxInflight 1, answers written
// with AsyncWrite) and resumes it a few times, then leaves it idle, and
// checks that its loop idles too. On a TLS port the epoll interest took
// EPOLLOUT from the TLS layer's queued ciphertext, which gnet's own
// buffer did not hold: gnet never dropped it, and the loop spun at a whole
// CPU for an idle client (a review; 1.0 s of CPU in 1 s, 5 ms before).
func idleAfterPauses(t *testing.T, useTLS bool) {
	cfg := Config{MaxInflight: 1}
	var cli *tlsconf.Material
	if useTLS {
		var srv *tlsconf.Material
		srv, cli = tlsMaterial(t)
		cfg.TLS = srv.Server(false)
	}
	p := listen(t, &asyncServer{}, cfg)
	var nc net.Conn
	var err error
	if useTLS {
		nc, err = tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", p.Addr().String(), cli.Client(tlsconf.RoleServer))
	} else {
		nc, err = net.DialTimeout("tcp", p.Addr().String(), 5*time.Second)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	br := bufio.NewReader(nc)
	for round := range 3 {
		if _, err := nc.Write(gets(4, uint64(round*4+1))); err != nil {
			t.Fatal(err)
		}
		_ = nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		for range 4 {
			if _, err := frameio.ReadFrame(br); err != nil {
				t.Fatal(err)
			}
		}
	}
	time.Sleep(300 * time.Millisecond)
	before := cpuNow()
	time.Sleep(time.Second)
	used := cpuNow() - before
	t.Logf("tls=%v: CPU used by the idle process over 1 s: %s", useTLS, used)
	if used > 300*time.Millisecond {
		t.Errorf("tls=%v: an idle connection keeps its loop busy (%s CPU in 1 s): EPOLLOUT left in the mask with nothing for gnet to write", useTLS, used)
	}
}

func TestIdleConnectionLeavesItsLoopIdle(t *testing.T)    { idleAfterPauses(t, false) }
func TestIdleTLSConnectionLeavesItsLoopIdle(t *testing.T) { idleAfterPauses(t, true) }

// One slow sender holding just over half the input budget (an incomplete
// frame, under frame_timeout and under the budget: never closed) does
// not hold back honest writers of 1 MiB frames, whose frames fit in the
// budget: it completes nothing, and waiting for it helps nobody. It
// held each such write a second (a review: four took 4.05 s, 18 ms
// before the input budget held at all).
func TestSlowSenderHoldsNoWriterBack(t *testing.T) { slowSenderScene(t, false) }

// The same with a slow sender that sends a byte every 50 ms: its input
// grows, but it completes nothing in any time that matters, and it held
// each honest 1 MiB write a second (a second review: 4.02 s for four).
func TestTricklingSenderHoldsNoWriterBack(t *testing.T) { slowSenderScene(t, true) }

// slowSenderScene: a sender holds 2.5 MiB of a 3.5 MiB frame on a 4 MiB
// input budget, and sends nothing more (or, trickling, a byte every 50
// ms); an honest client then writes four 1 MiB frames, which must take
// well under the second a wait for the budget lasts.
func slowSenderScene(t *testing.T, trickle bool) {
	h := &getServer{val: []byte("v")}
	ib := NewInputBudget(4 << 20)
	p := listen(t, h, Config{InputBudget: ib})
	big := wire.Append(nil, &wire.Frame{Op: wire.OpPut, ID: 1, Key: []byte("k"), Value: make([]byte, 3<<20+512<<10)})
	atk := dial(t, p)
	if _, err := atk.Write(big[:5<<19]); err != nil { // 2.5 MiB of 3.5
		t.Fatal(err)
	}
	eventually(t, 5*time.Second, "the slow sender's input held", func() bool { return ib.Used() >= 5<<19 })
	if trickle {
		stop := make(chan struct{})
		defer close(stop)
		go func() {
			for off := 5 << 19; ; off++ {
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
				_, _ = atk.Write(big[off : off+1])
			}
		}()
	}
	time.Sleep(2 * progressWindow) // (a sender that stopped is no longer growing)
	nc := dial(t, p)
	br := bufio.NewReader(nc)
	frame := wire.Append(nil, &wire.Frame{Op: wire.OpPut, ID: 2, Key: []byte("k"), Value: make([]byte, 1<<20)})
	start := time.Now()
	const n = 4
	for i := range n {
		_ = nc.SetDeadline(time.Now().Add(8 * time.Second))
		if _, err := nc.Write(frame); err != nil {
			t.Fatal(err)
		}
		if _, err := frameio.ReadFrame(br); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
	}
	el := time.Since(start)
	t.Logf("trickle=%v: %d honest 1 MiB writes took %s (closed for a limit %d)", trickle, n, el, p.LimitClosed())
	if el > 2*time.Second {
		t.Errorf("trickle=%v: honest writes held %s each by one slow sender", trickle, el/n)
	}
}
