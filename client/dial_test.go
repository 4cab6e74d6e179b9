package client_test

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
	"ftkv/timing"
)

// TestDialWithAnOlderTiming: a timing.Config built before AnswerOverdue
// existed (or by hand, without it) leaves it zero. The client must fall
// back to the default derived from its failure timeout; it panicked in
// its watcher goroutine (a ticker of period 0), taking the program down.
func TestDialWithAnOlderTiming(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3, Plain: true, Args: []string{"-data-dir", "none"}})
	tm := timing.Default()
	tm.AnswerOverdue = 0
	cl := c.Client(client.WithTiming(tm))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Put(ctx, "older-timing", []byte("v")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(tm.Handshake / 4) // (the watcher has looked a few times)
	if v, err := cl.Get(ctx, "older-timing"); err != nil || string(v) != "v" {
		t.Fatalf("get: %q, %v", v, err)
	}
}

// TestConcurrentCallersShareOneDial: many goroutines whose first requests
// find no connection to a server (a new client, or after its connection
// broke) must not each dial one and keep it: the client keeps
// WithConnsPerServer connections per server. Before, every caller that
// found none dialed its own, and all were kept (64 callers: up to 64
// connections to one server, each holding the server's buffers and
// counting against its max_clients).
func TestConcurrentCallersShareOneDial(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3, Plain: true, Args: []string{"-data-dir", "none"}})
	var mu sync.Mutex
	dials := map[string]int{}
	var d net.Dialer
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		nc, err := d.DialContext(ctx, network, addr)
		if err == nil {
			mu.Lock()
			dials[addr]++
			mu.Unlock()
		}
		return nc, err
	}
	for _, conns := range []int{1, 2} {
		mu.Lock()
		clear(dials)
		mu.Unlock()
		cl := c.Client(client.WithDialer(dial), client.WithConnsPerServer(conns))
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for g := range 64 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range 4 {
					if err := cl.Put(ctx, fmt.Sprintf("dial-%d-%d", g, i), []byte("v")); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		cancel()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		mu.Lock()
		for _, m := range cl.View().Servers {
			t.Logf("%d per server: %s dialed %d times", conns, m.Addr, dials[m.Addr])
			if dials[m.Addr] > conns {
				t.Errorf("%s dialed %d times by 64 concurrent callers, with %d connection(s) per server", m.Addr, dials[m.Addr], conns)
			}
		}
		mu.Unlock()
		cl.Close()
	}
}

// TestShortDeadlinesDoNotCutASharedDial: the dial that callers share
// must not run on the context of the caller that started it. Callers
// with 10 ms deadlines keep arriving at a client whose servers take
// 20 ms to connect; callers with 2 s deadlines among them must get
// through. When the dial ran on its starter's context, each was cut at
// 10 ms and every waiter got that caller's deadline as its error: a
// review counted 36-382 dials per round, nearly all cut, and callers
// with 2 s deadlines failed (3 of 4 in one round) or waited up to 1.4 s.
func TestShortDeadlinesDoNotCutASharedDial(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3, Plain: true, Args: []string{"-data-dir", "none"}})
	var dials atomic.Int64
	var d net.Dialer
	slow := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != c.Addr { // (the coordinator's is not slow)
			dials.Add(1)
			select { // a server 20 ms away
			case <-time.After(20 * time.Millisecond):
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		return d.DialContext(ctx, network, addr)
	}
	for round := range 4 {
		dials.Store(0)
		cl := c.Client(client.WithDialer(slow))
		stop := make(chan struct{})
		var wg sync.WaitGroup
		for g := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
					_ = cl.Put(ctx, fmt.Sprintf("short-%d-%d", g, i%8), []byte("v")) // (may time out)
					cancel()
					time.Sleep(time.Millisecond)
				}
			}()
		}
		time.Sleep(5 * time.Millisecond)
		var long sync.WaitGroup
		var mu sync.Mutex
		var slowest time.Duration
		for g := range 4 {
			long.Add(1)
			go func() {
				defer long.Done()
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
				defer cancel()
				start := time.Now()
				if err := cl.Put(ctx, fmt.Sprintf("long-%d", g), []byte("v")); err != nil {
					t.Errorf("round %d: a put with a 2 s deadline failed: %v", round, err)
				}
				mu.Lock()
				slowest = max(slowest, time.Since(start))
				mu.Unlock()
			}()
		}
		long.Wait()
		close(stop)
		wg.Wait()
		cl.Close()
		t.Logf("round %d: %d server dials, slowest 2 s put %s", round, dials.Load(), slowest.Round(time.Millisecond))
		if n := dials.Load(); n > 6 {
			t.Errorf("round %d: %d dials to 3 servers: callers' deadlines cut the shared dial", round, n)
		}
	}
}
