package client_test

import (
	"context"
	"fmt"
	"net"
	"sync"
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
