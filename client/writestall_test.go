package client

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"ftkv/wire"
)

// startDeaf accepts connections and never reads from them (a server that
// stopped: SIGSTOP, a partition that drops everything): once the
// kernel's buffers are full, a write to it blocks.
func startDeaf(t *testing.T) (addr string, conns <-chan net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ch := make(chan net.Conn, 4)
	var mu sync.Mutex
	var held []net.Conn
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, nc := range held {
			nc.Close()
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
			held = append(held, nc)
			mu.Unlock()
			ch <- nc
		}
	}()
	return ln.Addr().String(), ch
}

// TestWriteStallHonorsDeadline: a caller whose request is being written
// to a server that takes nothing returns when its context ends, as every
// other caller does; it stayed blocked in the socket write for as long as
// the server did not read (forever, against a stopped server).
func TestWriteStallHonorsDeadline(t *testing.T) {
	addr, _ := startDeaf(t)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cn := newConn(nc, addr)
	cn.stall = time.Minute // longer than the test: only the caller's deadline may end its write
	defer cn.fail(ErrClosed)

	value := make([]byte, 1<<20)
	for i := 0; i < 32; i++ { // 32 MiB: far more than loopback's buffers hold
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		start := time.Now()
		done := make(chan error, 1)
		go func() {
			_, err := cn.roundTrip(ctx, &wire.Frame{Op: wire.OpPut, Key: []byte("k"), Value: value})
			done <- err
		}()
		// Held in the write, a request returns after the stall limit (a
		// minute); one that honours its deadline returned after 0.5-1 s
		// under -race beside two busy CPUs (queuing 1 MiB behind up to
		// 31 MiB left unwritten), so 2 s was thin for make test's load:
		// the bound sits at 10 s, far below the stall.
		select {
		case err := <-done:
			cancel()
			if took := time.Since(start); took > 10*time.Second {
				t.Fatalf("request %d returned after %v (deadline 100ms): %v", i, took, err)
			}
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("request %d: %v, want the context's deadline", i, err)
			}
		case <-time.After(20 * time.Second):
			cancel()
			t.Fatalf("request %d still blocked 20s after its 100ms deadline: a write to a server that does not read ignores the caller's context", i)
		}
	}
}

// TestWriteStallBreaksConnection: what a caller's deadline left unwritten
// is written on in the background; a server that takes nothing for the
// connection's stall limit breaks the connection, so that callers without
// a deadline get an error (and the client retries elsewhere) instead of
// waiting forever.
func TestWriteStallBreaksConnection(t *testing.T) {
	addr, _ := startDeaf(t)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cn := newConn(nc, addr)
	cn.stall = 300 * time.Millisecond
	defer cn.fail(ErrClosed)

	// 16 MiB: several times what loopback's buffers take (about 3 MiB).
	// (64 MiB, appended by 64 callers under the connection's lock, took
	// the race detector over 10 s on a loaded machine before the second
	// write even began.)
	const callers = 16
	value := make([]byte, 1<<20)
	errc := make(chan error, callers)
	for i := 0; i < callers; i++ {
		go func() {
			_, err := cn.roundTrip(context.Background(), &wire.Frame{Op: wire.OpPut, Key: []byte("k"), Value: value})
			errc <- err
		}()
	}
	deadline := time.After(30 * time.Second)
	for i := 0; i < callers; i++ {
		select {
		case err := <-errc:
			if !errors.Is(err, errConnBroken) {
				t.Fatalf("caller %d: %v, want the connection broken", i, err)
			}
		case <-deadline:
			t.Fatalf("%d of %d callers without a deadline still waiting 30s after a stall limit of 300ms", callers-i, callers)
		}
	}
}
