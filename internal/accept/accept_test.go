package accept

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

const helperEnv = "FTKV_ACCEPT_HELPER"

// TestMain doubles as a server with very few descriptors: it lowers its
// RLIMIT_NOFILE, accepts and greets every connection it can, prints its
// address and runs until stdin closes.
func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "" {
		os.Exit(m.Run())
	}
	rl := unix.Rlimit{Cur: 64, Max: 64}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		fmt.Println("setrlimit:", err)
		os.Exit(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Println("listen:", err)
		os.Exit(1)
	}
	var mu sync.Mutex
	var held []net.Conn
	a := New(ln, Config{Name: "test", Log: zerolog.New(os.Stderr), Enroll: func(nc net.Conn) error {
		mu.Lock()
		held = append(held, nc)
		mu.Unlock()
		go func() {
			_, _ = nc.Write([]byte("hi\n"))
			_, _ = io.Copy(io.Discard, nc) // until the peer closes
			_ = nc.Close()
		}()
		return nil
	}})
	go func() {
		fmt.Println("serve ended:", a.Serve())
		os.Exit(1)
	}()
	fmt.Println("addr", ln.Addr())
	_, _ = io.Copy(io.Discard, os.Stdin)
	os.Exit(0)
}

// Out of descriptors, the acceptor keeps running and serves again once
// connections close: gnet's acceptor stopped the engine here.
func TestOutOfDescriptorsKeepsServing(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"=1")
	stdin, _ := cmd.StdinPipe()
	out, _ := cmd.StdoutPipe()
	var stderr lockedBuf
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() { stdin.Close(); <-exited }()
	br := bufio.NewReader(out)
	line, err := br.ReadString('\n')
	if err != nil || !strings.HasPrefix(line, "addr ") {
		t.Fatalf("helper said %q, %v; stderr %s", line, err, stderr.String())
	}
	addr := strings.TrimSpace(strings.TrimPrefix(line, "addr "))
	greeted := func(nc net.Conn) bool {
		_ = nc.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		b := make([]byte, 3)
		_, err := io.ReadFull(nc, b)
		return err == nil && string(b) == "hi\n"
	}
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for i := 0; i < 150; i++ {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			break
		}
		conns = append(conns, nc)
	}
	var ok atomic.Int64
	var wg sync.WaitGroup
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if greeted(c) {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	t.Logf("%d connections opened, %d served with a 64-descriptor limit", len(conns), ok.Load())
	if n := int(ok.Load()); n == 0 || n >= len(conns) {
		t.Fatalf("expected the descriptor limit to bite: %d of %d served", n, len(conns))
	}
	select {
	case err := <-exited:
		t.Fatalf("helper exited out of descriptors: %v\n%s", err, stderr.String())
	default:
	}
	for _, c := range conns {
		c.Close()
	}
	conns = nil
	// The acceptor recovers: a new connection is served.
	deadline := time.Now().Add(5 * time.Second)
	for {
		nc, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			good := greeted(nc)
			nc.Close()
			if good {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no connection served after the others closed; helper stderr:\n%s", stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(stderr.String(), "too many open files") {
		t.Errorf("the descriptor exhaustion was not logged:\n%s", stderr.String())
	}
	if n := strings.Count(stderr.String(), "\n"); n > 20 {
		t.Errorf("%d log lines: the acceptor must log at most about once a second", n)
	}
}

// Beyond MaxConns a connection gets the rejection and is closed; a slot
// freed by Closed is usable again.
func TestMaxConns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	enrolled := make(chan net.Conn, 10)
	a := New(ln, Config{Name: "test", MaxConns: 2, Reject: []byte("max clients reached\n"), Log: zerolog.Nop(),
		Enroll: func(nc net.Conn) error { enrolled <- nc; return nil }})
	go a.Serve()
	defer a.Close()
	var cs []net.Conn
	for i := 0; i < 3; i++ {
		nc, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		cs = append(cs, nc)
	}
	for i := 0; i < 2; i++ {
		<-enrolled
	}
	_ = cs[2].SetReadDeadline(time.Now().Add(2 * time.Second))
	b, _ := io.ReadAll(cs[2])
	if string(b) != "max clients reached\n" {
		t.Fatalf("third connection read %q, want the rejection then EOF", b)
	}
	if a.Rejected() != 1 || a.Open() != 2 {
		t.Fatalf("rejected %d open %d, want 1 and 2", a.Rejected(), a.Open())
	}
	a.Closed()
	nc, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	select {
	case <-enrolled:
	case <-time.After(2 * time.Second):
		t.Fatal("a freed slot was not reused")
	}
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
