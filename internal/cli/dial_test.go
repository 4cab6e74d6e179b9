package cli

import (
	"bytes"
	"net"
	"strings"
	"testing"
	"time"
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
