package e2e

import (
	"context"
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// TestReviewBatchDeadlineCarriesCtxErr: a Batch whose connections break
// while it waits (every server frozen, then the client's connections cut
// and new ones refused), and whose context ends while its first operation
// is being retried: Batch's doc says operations without an outcome then
// carry the context's error (a single Get returns it, wrapping the last
// error). Before the fix the other operations carried the unexported
// "connection broken".
func TestReviewBatchDeadlineCarriesCtxErr(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})
	var refuse atomic.Bool
	var mu sync.Mutex
	var conns []net.Conn
	d := &net.Dialer{}
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr == c.Addr {
			return d.DialContext(ctx, network, addr)
		}
		if refuse.Load() {
			return nil, errors.New("refused by the test")
		}
		nc, err := d.DialContext(ctx, network, addr)
		if err == nil {
			mu.Lock()
			conns = append(conns, nc)
			mu.Unlock()
		}
		return nc, err
	}
	cl := c.Client(client.WithDialer(dial))
	keys := []string{"bc:a", "bc:b", "bc:c", "bc:d", "bc:e", "bc:f"}
	ctx0, cancel0 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel0()
	for _, k := range keys { // a connection to every server
		if err := cl.Put(ctx0, k, []byte("v")); err != nil {
			t.Fatal(err)
		}
	}
	var vs []testcluster.Victim
	for id := range 3 {
		vs = append(vs, c.StopServer(t, id)) // answers stop
	}
	defer func() {
		for _, v := range vs {
			c.ContServer(t, v)
		}
	}()
	ops := make([]client.BatchOp, len(keys))
	for i, k := range keys {
		ops[i] = client.BatchOp{Kind: client.BatchGet, Key: k}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 400*time.Millisecond)
	defer cancel()
	time.AfterFunc(100*time.Millisecond, func() {
		refuse.Store(true) // no new connection until the deadline
		mu.Lock()
		for _, nc := range conns {
			nc.Close()
		}
		conns = nil
		mu.Unlock()
	})
	err := cl.Batch(ctx, ops)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Batch: %v, want the deadline", err)
	}
	for i, op := range ops {
		t.Logf("op %d %s: %v (found %v)", i, op.Key, op.Err, op.Found)
	}
	for i, op := range ops {
		if !errors.Is(op.Err, context.DeadlineExceeded) {
			t.Errorf("op %d (%s) has no outcome and carries %q, not the context's error", i, op.Key, op.Err)
		}
	}
}
