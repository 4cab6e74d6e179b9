package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// TestGatewayChaos kill -9s each server in turn (the primary of one shard,
// the secondary of another), waiting for recovery after each, while
// redis-benchmark (SETs, pipelined) and go-redis clients run through the
// gateway: the go-redis writers SET fresh keys and INCR counters of their
// own, another go-redis client pipelines SETs and GETs. No error may
// reach a Redis client (redis-benchmark exits at the first one), every
// acknowledged SET must be in the cluster afterwards, and each counter
// must equal the number of INCRs its writer saw acknowledged, the last
// answer included (an INCR applied twice, or lost, would show).
func TestGatewayChaos(t *testing.T) {
	needRedisTools(t)
	c := testcluster.Start(t, testcluster.Options{N: 3})
	g, cl := startGateway(t, c)
	c.WaitRecovered(t, 10*time.Second)
	host, port, _ := net.SplitHostPort(g.Addr())

	// redis-benchmark until told to stop (-l loops); it exits on the
	// first error it gets.
	bctx, bstop := context.WithCancel(context.Background())
	defer bstop()
	bench := exec.CommandContext(bctx, "redis-benchmark", "-h", host, "-p", port, "-t", "set", "-c", "5",
		"-r", "100000", "-d", "32", "-P", "16", "-n", "100000000", "-q")
	var benchOut bytes.Buffer
	bench.Stdout, bench.Stderr = &benchOut, &benchOut
	if err := bench.Start(); err != nil {
		t.Fatal(err)
	}
	benchDone := make(chan error, 1)
	go func() { benchDone <- bench.Wait() }()

	ropts := func() *redis.Options {
		return &redis.Options{Addr: g.Addr(), ReadTimeout: 30 * time.Second, WriteTimeout: 30 * time.Second, MaxRetries: -1,
			Protocol: 3}
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := map[string]string{}
	counters := map[string]int64{}
	var errs []string
	var sets, incrs, piped atomic.Int64
	fail := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		if len(errs) < 20 {
			errs = append(errs, fmt.Sprintf(format, args...))
		}
	}
	const writers = 6
	for w := 0; w < writers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			rdb := redis.NewClient(ropts())
			defer rdb.Close()
			ctx := context.Background()
			ctr := fmt.Sprintf("chaos:ctr:%d", w)
			var n int64
			for i := 0; ; i++ {
				select {
				case <-stop:
					mu.Lock()
					counters[ctr] = n
					mu.Unlock()
					return
				default:
				}
				k, v := fmt.Sprintf("chaos:%d:%d", w, i), fmt.Sprintf("v%d-%d", w, i)
				if err := rdb.Set(ctx, k, v, 0).Err(); err != nil {
					fail("SET %s: %v", k, err)
					continue
				}
				mu.Lock()
				acked[k] = v
				mu.Unlock()
				sets.Add(1)
				got, err := rdb.Incr(ctx, ctr).Result()
				if err != nil {
					fail("INCR %s: %v", ctr, err)
					continue
				}
				if n++; got != n {
					fail("INCR %s answered %d, want %d", ctr, got, n)
					n = got
				}
				incrs.Add(1)
			}
		}(w)
	}
	wg.Add(1)
	go func() { // pipelines of SETs and GETs of the same keys
		defer wg.Done()
		rdb := redis.NewClient(ropts())
		defer rdb.Close()
		ctx := context.Background()
		for r := 0; ; r++ {
			select {
			case <-stop:
				return
			default:
			}
			cmds, err := rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for i := 0; i < 32; i++ {
					k := fmt.Sprintf("chaos:pipe:%d", i)
					p.Set(ctx, k, r, 0)
					p.Get(ctx, k)
				}
				return nil
			})
			if err != nil {
				fail("pipeline %d: %v", r, err)
				continue
			}
			for i := 1; i < len(cmds); i += 2 {
				if v := cmds[i].(*redis.StringCmd).Val(); v != fmt.Sprint(r) {
					fail("pipeline %d: GET answered %q", r, v)
				}
			}
			piped.Add(int64(len(cmds)))
		}
	}()

	progress := func(what string) {
		t.Helper()
		from := sets.Load()
		deadline := time.Now().Add(30 * time.Second)
		for sets.Load() < from+100 {
			if time.Now().After(deadline) {
				t.Fatalf("no progress %s (%d SETs acknowledged)", what, sets.Load())
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	progress("before the first kill")
	kills := 0
	for victim := 0; victim < 3; victim++ {
		before := c.Status(t)
		t.Logf("kill -9 %s", roles(before, victim))
		start := time.Now()
		v := c.KillServer(t, victim)
		progress("after the kill")
		t.Logf("100 more SETs acknowledged through the gateway %s after the kill", time.Since(start).Round(time.Millisecond))
		c.WaitRecovered(t, recoverTimeout, v)
		kills++
		progress("after recovery")
	}
	close(stop)
	wg.Wait()
	select {
	case err := <-benchDone:
		t.Fatalf("redis-benchmark exited during the kills (%v):\n%s", err, tail(benchOut.String()))
	default:
	}
	bstop()
	<-benchDone
	if out := benchOut.String(); strings.Contains(out, "rror") {
		t.Fatalf("redis-benchmark saw an error:\n%s", tail(out))
	}
	if len(errs) > 0 {
		t.Fatalf("errors reached the Redis clients:\n%s", strings.Join(errs, "\n"))
	}

	// Every acknowledged SET, every counter, read back from the cluster.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var ops []client.BatchOp
	want := map[string]string{}
	for k, v := range acked {
		ops = append(ops, client.BatchOp{Kind: client.BatchGet, Key: k})
		want[k] = v
	}
	for k, n := range counters {
		ops = append(ops, client.BatchOp{Kind: client.BatchGet, Key: k})
		want[k] = fmt.Sprint(n)
	}
	if err := cl.Batch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	lost := 0
	for _, op := range ops {
		if op.Err != nil || !op.Found || string(op.Value) != want[op.Key] {
			if lost++; lost <= 10 {
				t.Errorf("%s = %q (found %v, %v), want %q", op.Key, op.Value, op.Found, op.Err, want[op.Key])
			}
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged writes lost or wrong", lost, len(ops))
	}
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		t.Fatal("read-back timed out")
	}
	t.Logf("gateway chaos: %d kills; %d SETs and %d INCRs acknowledged to go-redis, %d pipelined commands, redis-benchmark "+
		"throughout: no error reached a Redis client, every acknowledged write read back (%d keys)", kills, sets.Load(),
		incrs.Load(), piped.Load(), len(ops))
}

func tail(s string) string {
	s = strings.ReplaceAll(s, "\r", "\n")
	if len(s) > 2000 {
		s = s[len(s)-2000:]
	}
	return s
}
