package e2e

import (
	"context"
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// swallowConn hides everything the server sends while swallow is set: the
// write is applied, but its answer never reaches the client.
type swallowConn struct {
	net.Conn
	swallow *atomic.Bool
}

func (c swallowConn) Read(p []byte) (int, error) {
	for {
		n, err := c.Conn.Read(p)
		if err != nil || !c.swallow.Load() {
			return n, err
		}
	}
}

// TestRetryAfterHandBack: an Append is applied on the primary and its
// secondary, its answer is lost, the primary is killed, and the client's
// retry reaches the shard only after the respawned server has been
// re-seeded and has taken its shard back. The retry must be recognised
// (the remembered outcome travels with the re-seeding): the value holds
// the appended text exactly once.
func TestRetryAfterHandBack(t *testing.T) {
	const n, victim = 3, 1
	c := testcluster.Start(t, testcluster.Options{N: n})
	var swallow, block atomic.Bool
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		if addr != c.Addr {
			for block.Load() {
				select {
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
		var d net.Dialer
		nc, err := d.DialContext(ctx, network, addr)
		if err != nil || addr == c.Addr {
			return nc, err
		}
		return swallowConn{Conn: nc, swallow: &swallow}, nil
	}
	cl := c.Client(client.WithDialer(dial))
	direct := c.Client()
	c.WaitRecovered(t, 10*time.Second)
	key := keysOnShard(n, victim, 1, "retry-handback")[0]
	{
		// Open the client's connection to the shard's primary first.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cl.Get(ctx, key)
		cancel()
		if err != nil && !errors.Is(err, client.ErrNotFound) {
			t.Fatal(err)
		}
	}

	swallow.Store(true)
	block.Store(true)
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		errc <- cl.Append(ctx, key, []byte("x;"))
	}()
	testcluster.Eventually(t, 10*time.Second, "the append applied", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		v, err := direct.Get(ctx, key)
		return err == nil && string(v) == "x;"
	})
	v := c.KillServer(t, victim)
	after := c.WaitRecovered(t, recoverTimeout, v)
	t.Logf("recovered and handed back: %s", roles(after, victim))
	swallow.Store(false)
	block.Store(false)
	if err := <-errc; err != nil {
		t.Fatalf("append: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := direct.Get(ctx, key)
	if err != nil || string(got) != "x;" {
		t.Fatalf("after the retry %q = %q (%v), want \"x;\": the retried append was applied again", key, got, err)
	}
}
