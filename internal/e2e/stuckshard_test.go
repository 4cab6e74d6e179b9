package e2e

import (
	"context"
	"fmt"
	"testing"
	"time"

	"ftkv/hashring"
	"ftkv/internal/testkit/testcluster"
)

// TestStuckShardLeavesOtherShardsWritable: both copies of shard 0 are
// gone (servers 0 and 1 killed, their respawns held), and one goroutine
// of a client keeps a write to shard 0 waiting. The client's other writes,
// to the shards still served, must go on past max_session_records of
// them (SPEC §4.5, §4.7: every other shard keeps working). Before, the
// waiting Put held a sequence number although it never left the client,
// so the client's floor stayed below it, the servers kept every later
// record, and after max_session_records writes refused all of the
// client's writes ("too many writes in flight for this client") until
// shard 0 came back (an attack with real processes, session 19). When
// shard 0 returns the waiting write (an Append) is applied once.
func TestStuckShardLeavesOtherShardsWritable(t *testing.T) {
	const maxRecords = 500
	cfg := fmt.Sprintf("3\nlocalhost 0 0 0\nlocalhost 0 0 0\nlocalhost 0 0 0\nmax_session_records %d\n", maxRecords)
	c := testcluster.Start(t, testcluster.Options{Config: cfg})
	cl := c.Client()
	defer cl.Close()
	ctx0, cancel0 := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel0()
	if err := cl.Put(ctx0, "warm", []byte("v")); err != nil {
		t.Fatal(err)
	}
	n := len(cl.View().Shards)
	releases := []func(){holdDown(t, c, 0), holdDown(t, c, 1)}
	c.KillServer(t, 0)
	c.KillServer(t, 1)
	stuckKey := keyOfShard(n, 0)
	testcluster.Eventually(t, 20*time.Second, "shard 0 without a server in the client's view", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		_, _ = cl.Get(ctx, stuckKey)
		v := cl.View()
		o := v.Owner(0)
		return o == nil || o.Addr == ""
	})
	stuck := make(chan error, 1)
	stuckCtx, cancelStuck := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancelStuck()
	go func() { stuck <- cl.Append(stuckCtx, stuckKey, []byte("late;")) }()
	time.Sleep(100 * time.Millisecond) // the write is waiting now
	// Three times the cap, to shards 1 and 2 (led by server 2 now).
	written := 0
	for i := 0; written < 3*maxRecords; i++ {
		k := fmt.Sprintf("other/%d", i)
		if shardOf(n, k) == 0 {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		err := cl.Put(ctx, k, []byte("v"))
		cancel()
		if err != nil {
			t.Fatalf("write %d to shard %d while shard 0 is down, with a write to shard 0 waiting: %v", written, shardOf(n, k), err)
		}
		written++
	}
	t.Logf("%d writes to shards 1 and 2 while shard 0 had no server (max_session_records %d)", written, maxRecords)
	select {
	case err := <-stuck:
		t.Fatalf("the write to shard 0 returned while shard 0 had no server: %v", err)
	default:
	}
	for _, r := range releases {
		r()
	}
	if err := <-stuck; err != nil {
		t.Fatalf("the write to shard 0, once shard 0 is back: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if v, err := cl.Get(ctx, stuckKey); err != nil || string(v) != "late;" {
		t.Fatalf("%s after shard 0 came back: %q %v", stuckKey, v, err)
	}
}

// shardOf is key's shard in a ring of n shards.
func shardOf(n int, key string) int { return hashring.New(n).Shard(key) }
