package hostile

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
	"ftkv/wire"
)

func TestParseVmRSS(t *testing.T) {
	cases := []struct {
		in   string
		want int64
		err  bool
	}{
		{in: "Name:\tserver\nVmPeak:\t  99 kB\nVmRSS:\t   18432 kB\nThreads: 9\n", want: 18432 << 10},
		{in: "VmRSS: 0 kB\n", want: 0},
		{in: "Name:\tkthreadd\n", err: true},
		{in: "VmRSS:\t12 MB\n", err: true},
		{in: "VmRSS:\tx kB\n", err: true},
	}
	for _, tc := range cases {
		got, err := parseVmRSS([]byte(tc.in))
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("parseVmRSS(%q) = %d, %v; want %d, error %v", tc.in, got, err, tc.want, tc.err)
		}
	}
}

var sink []byte

func TestWatchRSSSeesGrowth(t *testing.T) {
	w, err := WatchRSS(os.Getpid(), 2*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 64<<20)
	for i := 0; i < len(b); i += 4096 {
		b[i] = 1 // touch every page so it becomes resident
	}
	sink = b
	time.Sleep(50 * time.Millisecond)
	r := w.Stop()
	sink = nil
	if r.Before <= 0 || r.Growth() < 32<<20 || r.Samples < 2 || r.Gone {
		t.Errorf("after touching 64 MiB: %s (%d samples)", r, r.Samples)
	}
	if _, err := ReadRSS(1 << 30); err == nil {
		t.Error("ReadRSS of a pid that cannot exist: no error")
	}
}

func TestResultStringAndMerge(t *testing.T) {
	a := Result{Probe: "p a", Target: "x:1", Opened: 2, ClosedByServer: 1, MaxCloseAfter: time.Second, Requests: 5, Answers: 4,
		Sent: 3 << 20, Statuses: map[string]int64{"OK": 4}, Errors: map[string]int{"timeout": 1}, Notes: []string{"note a"}}
	b := Result{Probe: "p b", Target: "x:2", Opened: 3, DialErrors: 1, MaxCloseAfter: 2 * time.Second, Statuses: map[string]int64{"OK": 1, "BAD_REQUEST": 2}}
	m := merge("p", "x:1", []Result{a, b})
	if m.Opened != 5 || m.DialErrors != 1 || m.ClosedByServer != 1 || m.MaxCloseAfter != 2*time.Second ||
		m.Statuses["OK"] != 5 || m.Statuses["BAD_REQUEST"] != 2 || m.Errors["timeout"] != 1 || len(m.Parts) != 2 {
		t.Errorf("merge: %+v", m)
	}
	s := m.String()
	for _, want := range []string{"p -> x:1", "5 opened, 1 dial errors, 1 closed by the server", "OK 5, BAD_REQUEST 2", "3.0 MiB sent", "  p a -> x:1", "note a", "timeout 1"} {
		if !strings.Contains(s, want) {
			t.Errorf("String() lacks %q:\n%s", want, s)
		}
	}
}

func TestErrKind(t *testing.T) {
	cases := map[string]error{
		"closed by the server (EOF)": io.EOF,
		"timeout":                    os.ErrDeadlineExceeded,
		"connection reset by peer":   &net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)},
		"too many open files":        &net.OpError{Op: "dial", Err: os.NewSyscallError("socket", syscall.EMFILE)},
		"context ended":              context.DeadlineExceeded,
		"boom":                       errors.New("wrapped: boom"),
	}
	for want, err := range cases {
		if got := errKind(err); got != want {
			t.Errorf("errKind(%v) = %q, want %q", err, got, want)
		}
	}
}

func TestHugeHeaderRefused(t *testing.T) {
	for _, op := range []wire.Op{wire.OpPut, wire.OpHello, wire.OpReplHello} {
		h := hugeHeader(op)
		if len(h) != wire.HeaderSize || wire.FrameLen(h) != 0xFFFFFFFF+4 {
			t.Fatalf("%s: header of %d bytes announcing %d", op, len(h), wire.FrameLen(h))
		}
		if _, _, err := wire.Decode(h, 0); !errors.Is(err, wire.ErrTooLarge) {
			t.Errorf("%s: Decode: %v, want ErrTooLarge", op, err)
		}
	}
}

// TestPeek checks the closed/data probe on a real loopback connection.
func TestPeek(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	sc := <-accepted
	tc := nc.(*net.TCPConn)
	if closed, data := peek(tc); closed || data {
		t.Errorf("idle connection: closed %v data %v", closed, data)
	}
	_, _ = sc.Write([]byte("x"))
	waitFor(t, func() bool { _, data := peek(tc); return data })
	sc.Close()
	buf := make([]byte, 1)
	_, _ = nc.Read(buf) // the byte; peek never consumes
	waitFor(t, func() bool { closed, _ := peek(tc); return closed })
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestRunUnknownProbe(t *testing.T) {
	if _, err := Run(context.Background(), "nope", Config{Server: "127.0.0.1:1"}); err == nil || !strings.Contains(err.Error(), "slow-reader") {
		t.Errorf("Run(nope): %v", err)
	}
	for _, n := range Names() {
		if _, ok := Lookup(n); !ok {
			t.Errorf("Names lists %q, Lookup does not find it", n)
		}
	}
	if _, err := Resolve(context.Background(), Config{}); err == nil {
		t.Error("Resolve without Coord or Server: no error")
	}
}

// TestProbesAgainstCluster runs every probe briefly and gently against a
// real cluster: each must run, stop by itself and report what it did. (The
// internal/e2e hostile tests run them at full strength.)
func TestProbesAgainstCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a cluster")
	}
	c := testcluster.Start(t, testcluster.Options{N: 3})
	c.WaitRecovered(t, 20*time.Second)
	base := Config{Coord: c.Addr, ServerID: 2, Duration: 300 * time.Millisecond}
	cases := []struct {
		name  string
		cfg   func(Config) Config
		check func(Result) string
	}{
		{"slow-reader", func(c Config) Config { c.Size, c.Conns = 4<<10, 1; return c }, func(r Result) string {
			if r.Opened != 1 || r.Requests == 0 || r.Sent == 0 {
				return "no GET sent"
			}
			return ""
		}},
		{"slow-reader", func(c Config) Config { c.Size, c.Conns, c.Writes = 4<<10, 1, true; return c }, func(r Result) string {
			// A GET and a PUT of 4 KiB: over 4 KiB per request sent.
			if r.Opened != 1 || r.Requests == 0 || r.Sent <= r.Requests*(4<<10) {
				return "no GET and PUT sent"
			}
			return ""
		}},
		{"idle-conns", func(c Config) Config { c.Conns = 50; return c }, func(r Result) string {
			if r.Opened != 50 || r.DialErrors != 0 {
				return "not 50 connections"
			}
			return ""
		}},
		{"half-frames", func(c Config) Config { c.Conns = 20; return c }, func(r Result) string {
			if r.Opened != 20 || r.Sent != 20*wire.HeaderSize/2 {
				return "not 20 half headers"
			}
			return ""
		}},
		{"huge-length", func(c Config) Config { c.Conns = 2; return c }, func(r Result) string {
			if len(r.Parts) != 3 || r.Opened != 6 {
				return "not 2 connections on each of 3 ports"
			}
			return ""
		}},
		// (2 s: at 300 ms a CI machine loaded by other work let the
		// deadline pass before the first dial, and nothing was probed.)
		{"unauth-big", func(c Config) Config { c.Conns, c.Duration = 1, 2*time.Second; return c }, func(r Result) string {
			if len(r.Parts) != 4 || r.Opened < 2 {
				return "not 2 ports in 2 phases"
			}
			return ""
		}},
		{"bad-seqs", func(c Config) Config { c.Duration = time.Second; return c }, func(r Result) string {
			if len(r.Parts) != 2 || r.Answers == 0 || r.Parts[0].Answers == 0 || r.Parts[1].Answers == 0 {
				return "not both modes answered"
			}
			return ""
		}},
		{"one-shot", func(c Config) Config { c.Clients, c.Duration = 100, 30*time.Second; return c }, func(r Result) string {
			if r.Opened != 100 || r.Statuses["OK"] != 100 {
				return "not 100 clients answered OK"
			}
			return ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			res, err := Run(ctx, tc.name, tc.cfg(base))
			t.Logf("%s", res)
			if err != nil {
				t.Fatal(err)
			}
			if took := time.Since(start); took > 40*time.Second {
				t.Errorf("took %s", took)
			}
			if msg := tc.check(res); msg != "" {
				t.Errorf("%s: %s", tc.name, msg)
			}
		})
	}
}
