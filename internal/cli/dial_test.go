package cli

import (
	"bufio"
	"bytes"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/internal/frameio"
	"ftkv/wire"
)

// TestDialWaitsForTimeout: a coordinator that accepts but never answers
// (stopped, or busy) is waited for as long as -timeout says, not one
// handshake timeout (2 s): with -timeout 3500ms the client gives up after
// about 3.5 s and says so, exit 3. Found by a black-box test ("no answer
// within 2s" while -timeout was 5s).
func TestDialWaitsForTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var held []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			held = append(held, c) // read nothing, answer nothing
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Run([]string{"-h", host, "-p", port, "-timeout", "3500ms", "G", "k"}, strings.NewReader(""), &stdout, &stderr)
	took := time.Since(start)
	if code != ExitUnavailable {
		t.Fatalf("exit %d, stderr %q; want 3", code, stderr.String())
	}
	if took < 3*time.Second || took > 8*time.Second {
		t.Errorf("gave up after %s; want about -timeout (3.5s)", took)
	}
	if !strings.Contains(stderr.String(), "3.5s") || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("stderr %q: want one line naming -timeout (3.5s)", stderr.String())
	}
	t.Logf("after %s: %s", took.Round(time.Millisecond), strings.TrimSpace(stderr.String()))
}

// TestDialRefusedFailsFast: nobody listening is reported at once, not
// after -timeout.
func TestDialRefusedFailsFast(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	host, port, _ := net.SplitHostPort(addr)
	var stdout, stderr bytes.Buffer
	start := time.Now()
	code := Run([]string{"-h", host, "-p", port, "-timeout", "10s", "G", "k"}, strings.NewReader(""), &stdout, &stderr)
	if code != ExitUnavailable || time.Since(start) > 3*time.Second {
		t.Errorf("exit %d after %s, stderr %q; want 3 at once", code, time.Since(start), stderr.String())
	}
}

// TestDialOtherProtocolFailsFast: a port that answers in another
// protocol (a Redis or HTTP server: "bad frame length") or a host name
// that does not resolve can never become a coordinator by waiting; the
// CLI should say so at once, not after -timeout (found by the session-10 review).
func TestDialOtherProtocolFailsFast(t *testing.T) {
	addr := acceptEach(t, func(c net.Conn) {
		defer c.Close()
		buf := make([]byte, 512)
		_, _ = c.Read(buf)
		_, _ = c.Write([]byte("-ERR unknown command\r\nHTTP/1.1 400 Bad Request\r\n\r\n"))
	})
	host, port, _ := net.SplitHostPort(addr)
	for _, args := range [][]string{{"-h", host, "-p", port}, {"-h", "no-such-host.invalid", "-p", "7000"}} {
		var stdout, stderr bytes.Buffer
		start := time.Now()
		code := Run(append(args, "-timeout", "10s", "G", "k"), strings.NewReader(""), &stdout, &stderr)
		if took := time.Since(start); took > 3*time.Second {
			t.Errorf("%v: exit %d after %s (want at once): %s", args, code, took.Round(time.Millisecond), strings.TrimSpace(stderr.String()))
		}
	}
}

// acceptEach listens on loopback and hands each connection to handle
// on a goroutine of its own; it returns the address.
func acceptEach(t *testing.T, handle func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go handle(c)
		}
	}()
	return ln.Addr().String()
}

// answering listens on loopback and answers every frame with status
// (and text), counting the frames it is sent.
func answering(t *testing.T, status wire.Status, text string) (addr string, asked *atomic.Int64) {
	t.Helper()
	asked = new(atomic.Int64)
	addr = acceptEach(t, func(c net.Conn) {
		defer c.Close()
		br := bufio.NewReader(c)
		for {
			f, err := frameio.ReadFrame(br)
			if err != nil {
				return
			}
			asked.Add(1)
			if _, err := c.Write(wire.Append(nil, &wire.Frame{Op: f.Op, ID: f.ID, Status: status, Value: []byte(text)})); err != nil {
				return
			}
		}
	})
	return addr, asked
}

// TestDialNotACoordinatorFailsFast: a port that speaks ftkv's protocol
// but is no coordinator's client port (the coordinator's servers port:
// "authentication required"; a server's client port: "op VIEW not
// accepted") answers the same whatever the wait: the CLI tried again
// and again until -timeout (5 s by default, exit 3, a black-box tester)
// while the Go client's Dial failed at once. In a list, such an answer
// from one coordinator does not stop the waiting for the others (one
// electing its leader, here).
func TestDialNotACoordinatorFailsFast(t *testing.T) {
	bad, badConns := answering(t, wire.StatusBadRequest, "authentication required")
	host, port, _ := net.SplitHostPort(bad)
	var stdout, stderr bytes.Buffer
	code := Run([]string{"-h", host, "-p", port, "-timeout", "3s", "G", "k"}, strings.NewReader(""), &stdout, &stderr)
	if code != ExitUnavailable || !strings.Contains(stderr.String(), "authentication required") {
		t.Fatalf("exit %d, stderr %q; want 3 naming the answer", code, stderr.String())
	}
	if n := badConns.Load(); n != 1 {
		t.Errorf("the port that is not a coordinator's was tried %d times, want once: %s", n, strings.TrimSpace(stderr.String()))
	}
	// Nor does a dead one's refusal (a leader just killed).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refused := ln.Addr().String()
	ln.Close()
	for _, other := range []string{bad, refused} {
		electing, electingAsked := answering(t, wire.StatusNotLeader, "")
		stderr.Reset()
		code = Run([]string{"-h", other + "," + electing, "-timeout", "1500ms", "G", "k"}, strings.NewReader(""), &stdout, &stderr)
		if code != ExitUnavailable {
			t.Fatalf("list: exit %d, stderr %q; want 3", code, stderr.String())
		}
		if n := electingAsked.Load(); n < 2 {
			t.Errorf("list with a coordinator electing its leader: it was asked %d times, want again until -timeout: %s", n, strings.TrimSpace(stderr.String()))
		}
	}
}
