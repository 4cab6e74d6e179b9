package coord

import (
	"context"
	"testing"
	"time"

	"ftkv/wire"
)

// TestControlOrderNotQueuedBehindSlowOne: a server still applying a view
// (connecting a replication link it cannot reach: up to LinkConnect)
// answers that SETVIEW late. The next view, which may drop that
// secondary, must reach the server at once, not after the first answer:
// the server gives up on the older view's link only once it has the
// newer one (a review: the drop waited 5 s, and the shard's writes).
func TestControlOrderNotQueuedBehindSlowOne(t *testing.T) {
	got3 := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	f := startFakeCtlHook(t, func(fr wire.Frame) {
		switch {
		case fr.Op == wire.OpSetView && fr.Epoch == 2:
			<-release // the view whose link does not come up
		case fr.Op == wire.OpSetView && fr.Epoch == 3:
			close(got3)
		}
	})
	c := testCoordinator(t)
	c.secret = "s"
	nd := c.nodes[0]
	nd.hb.CtlAddr = f.addr
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// The cached control link is up (an order answered), then view 2
	// is sent and not answered.
	if _, err := c.control(ctx, nd, &wire.Frame{Op: wire.OpSetCoord}); err != nil {
		t.Fatal(err)
	}
	go func() { _, _ = c.control(ctx, nd, &wire.Frame{Op: wire.OpSetView, Epoch: 2}) }()
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	go func() { _, _ = c.control(ctx, nd, &wire.Frame{Op: wire.OpSetView, Epoch: 3}) }()
	select {
	case <-got3:
		t.Logf("view 3 reached the server %v after it was sent, view 2 still unanswered", time.Since(start).Round(time.Millisecond))
	case <-time.After(5 * time.Second):
		t.Fatal("view 3 did not reach the server within 5 s: queued behind view 2's answer")
	}
}
