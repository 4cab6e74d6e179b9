package e2e

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// TestClientLeavesASilentAddress: server 1 dies and another program takes
// its port, accepting connections and never answering (as a port reused
// by something else, or a host that is back without its server). The
// coordinator moves shard 1 to server 2. A client whose cached view still
// names server 1 sends its requests to that program: each waits until
// its context ends, unless the client notices that nothing comes back
// and that the view no longer makes that address a primary. Every request
// must reach shard 1's new primary within its 3 s. Before 5a30f90 the
// client kept the view and every later request to shard 1 waited out its
// context too, for as long as the program held the port; before
// watchOverdue the first request after the move was lost to the program.
func TestClientLeavesASilentAddress(t *testing.T) {
	const n = 3
	port := testcluster.FreePorts(t, 1)[0]
	c := testcluster.Start(t, testcluster.Options{Config: fmt.Sprintf("%d\nlocalhost 0 0 0\nlocalhost %d 0 0\nlocalhost 0 0 0\n", n, port)})
	c.WaitRecovered(t, 10*time.Second)
	cl := c.Client()
	key := keysOnShard(n, 1, 1, "silent-address")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := cl.Put(ctx, key, []byte("before")); err != nil {
		t.Fatal(err)
	}
	cancel()

	c.KillServer(t, 1)
	ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	for deadline := time.Now().Add(5 * time.Second); err != nil && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
		ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	}
	if err != nil {
		t.Fatalf("taking server 1's port: %v", err)
	}
	var mu sync.Mutex
	var held []net.Conn
	defer func() {
		ln.Close()
		mu.Lock()
		for _, cn := range held {
			cn.Close()
		}
		mu.Unlock()
	}()
	go func() { // accepts, reads nothing, answers nothing
		for {
			cn, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			held = append(held, cn)
			mu.Unlock()
		}
	}()
	c.WaitFor(t, 20*time.Second, "shard 1 led by server 2", func(st *client.ClusterStatus) error {
		if len(st.Servers[2].PrimaryOf) < 2 {
			return fmt.Errorf("%s", roles(st, 2))
		}
		return nil
	})

	// Each request gets 3 s: time to find the address silent (the
	// client's AnswerOverdue, 1 s, counted from its first look after
	// the request left, every 250 ms) and go to the new primary.
	ok, start := 0, time.Now()
	var errs []string
	for i := 0; i < 4; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		err := cl.Put(ctx, key, []byte(fmt.Sprintf("after %d", i)))
		cancel()
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		ok++
	}
	t.Logf("%d of 4 puts after the move succeeded in %s; errors: %v", ok, time.Since(start).Round(time.Millisecond), errs)
	if ok < 4 {
		t.Errorf("%d of 4 puts succeeded with shard 1 led by server 2: the client waited on the silent address", ok)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if v, err := cl.Get(ctx, key); err != nil || string(v) != "after 3" {
		t.Errorf("get %q: %q, %v; want \"after 3\"", key, v, err)
	}
}
