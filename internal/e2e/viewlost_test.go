package e2e

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
	"ftkv/server"
)

// TestViewLostOnControlPort: a server whose control port the coordinator
// cannot reach while its heartbeats still flow (a firewall rule, a
// half-open link) never receives the view that makes it the primary of
// its failed predecessor's shard. Before, that shard stayed down for as
// long as the condition lasted (a review: 15-26 s, the whole partition;
// clients holding the new view were refused STALE_EPOCH): the coordinator
// renewed the server's lease without ever getting the view to it. Now the
// coordinator's heartbeat answers carry the view the server has not
// applied, and the server applies it from them: the shard takes writes
// again within a few failure timeouts, and nothing acknowledged is lost.
func TestViewLostOnControlPort(t *testing.T) {
	drop := filepath.Join(t.TempDir(), "drop")
	// Servers inherit the coordinator's environment, the coordinator the test's.
	t.Setenv(server.TestDropViewEnv, drop)
	c := testcluster.Start(t, testcluster.Options{N: 3})
	to := testcluster.DefaultTimeout
	c.WaitRecovered(t, recoverTimeout)
	cl := c.Client()
	keys := keysOfShard(1, 3, 500) // server 1 leads shard 1; server 2 is its secondary
	put := func(k string, d time.Duration) error {
		ctx, cancel := context.WithTimeout(context.Background(), d)
		defer cancel()
		return cl.Put(ctx, k, []byte("v"+k))
	}
	const before = 20
	for _, k := range keys[:before] {
		if err := put(k, foOpTimeout); err != nil {
			t.Fatalf("put %s before the fault: %v", k, err)
		}
	}

	// Server 2 loses every SETVIEW from now on; server 1 dies.
	if err := os.WriteFile(drop, []byte("2\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	v := c.KillServer(t, 1)
	killedAt := time.Now()
	limit := 12 * to
	var writable time.Duration
	for i := before; ; i++ {
		if i == len(keys) {
			t.Fatal("out of probe keys")
		}
		if err := put(keys[i], 2*to); err == nil {
			writable = time.Since(killedAt)
			break
		} else if time.Since(killedAt) > limit {
			st, _ := c.TryStatus(context.Background())
			t.Fatalf("shard 1 not writable %s after its primary died while its secondary's control port lost every view (limit %s): %v\nstatus:\n%s",
				time.Since(killedAt).Round(time.Millisecond), limit, err, testcluster.StatusJSON(st))
		}
	}
	t.Logf("shard 1 writable again %s after the kill, its new primary's SETVIEWs lost", writable.Round(time.Millisecond))
	for _, k := range keys[:before] {
		ctx, cancel := context.WithTimeout(context.Background(), foOpTimeout)
		got, err := cl.Get(ctx, k)
		cancel()
		if err != nil || string(got) != "v"+k {
			t.Fatalf("get %s after the failover: %q, %v", k, got, err)
		}
	}
	if err := os.Remove(drop); err != nil {
		t.Fatal(err)
	}
	c.WaitRecovered(t, recoverTimeout, v)
}
