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
// its context ends. Its next requests must go to shard 1's new primary:
// a request that timed out without an answer is an error, and the view
// is refreshed (SPEC §3: the view is refreshed on a redirect or an
// error). Before, the client kept the view and every later request to
// shard 1 waited out its context too, for as long as the program held
// the port.
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

	// Each request gets 2 s; the first may be lost to the silent
	// program, the ones after it must not be.
	ok, start := 0, time.Now()
	var errs []string
	for i := 0; i < 4; i++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		err := cl.Put(ctx, key, []byte(fmt.Sprintf("after %d", i)))
		cancel()
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		ok++
	}
	t.Logf("%d of 4 puts after the move succeeded in %s; errors: %v", ok, time.Since(start).Round(time.Millisecond), errs)
	if ok < 3 {
		t.Errorf("%d of 4 puts succeeded with shard 1 led by server 2: the client kept sending to the silent address", ok)
	}
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if v, err := cl.Get(ctx, key); err != nil || string(v) != "after 3" {
		t.Errorf("get %q: %q, %v; want \"after 3\"", key, v, err)
	}
}
