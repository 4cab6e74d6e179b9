package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/hashring"
	"ftkv/internal/testkit/testcluster"
	"ftkv/server"
)

func seed(t *testing.T) int64 {
	s := time.Now().UnixNano()
	if v := os.Getenv("FTKV_SEED"); v != "" {
		fmt.Sscan(v, &s)
	}
	t.Logf("seed %d (set FTKV_SEED to replay)", s)
	return s
}

// TestWriteReadDump writes 20,000 random binary keys from 32 goroutines,
// reads every one back, shuts the cluster down with end of stdin and checks
// the dumps: server_i.primary holds exactly shard i and equals
// server_(i+1)%N.secondary.
func TestWriteReadDump(t *testing.T) {
	const n, keys, workers = 3, 20000, 32
	c := testcluster.Start(t, testcluster.Options{N: n})
	cl := c.Client()
	rng := rand.New(rand.NewSource(seed(t)))
	want := make(map[string][]byte, keys)
	for len(want) < keys {
		k := make([]byte, 1+rng.Intn(40))
		rng.Read(k)
		k[rng.Intn(len(k))] = 0 // every key carries a NUL byte
		v := make([]byte, rng.Intn(300))
		rng.Read(v)
		if len(v) > 0 {
			v[rng.Intn(len(v))] = 0
		}
		want[string(k)] = v
	}
	all := make([]string, 0, keys)
	for k := range want {
		all = append(all, k)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	run := func(fn func(k string) error) {
		var wg sync.WaitGroup
		errc := make(chan error, workers)
		for w := 0; w < workers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := w; i < len(all); i += workers {
					if err := fn(all[i]); err != nil {
						errc <- err
						return
					}
				}
			}(w)
		}
		wg.Wait()
		close(errc)
		for err := range errc {
			t.Fatal(err)
		}
	}
	run(func(k string) error { return cl.Put(ctx, k, want[k]) })
	run(func(k string) error {
		v, err := cl.Get(ctx, k)
		if err != nil {
			return fmt.Errorf("get %q: %w", k, err)
		}
		if !bytes.Equal(v, want[k]) {
			return fmt.Errorf("get %q = %q, want %q", k, v, want[k])
		}
		return nil
	})
	if _, err := cl.Get(ctx, "never written \x00"); !errors.Is(err, client.ErrNotFound) {
		t.Fatalf("get of an absent key: %v, want ErrNotFound", err)
	}

	start := time.Now()
	if err := c.Shutdown(10 * time.Second); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	took := time.Since(start)
	t.Logf("shutdown of %d servers took %s", n, took)
	if took > 3*time.Second {
		t.Errorf("shutdown took %s, want well under a second per server", took)
	}
	ring := hashring.New(n)
	prim := make([]map[string][]byte, n)
	for i := 0; i < n; i++ {
		var err error
		prim[i], err = server.ReadDump(filepath.Join(c.Dir, fmt.Sprintf("server_%d.primary", i)))
		if err != nil {
			t.Fatal(err)
		}
	}
	total := 0
	for i := 0; i < n; i++ {
		total += len(prim[i])
		for k, v := range prim[i] {
			if s := ring.Shard(k); s != i {
				t.Fatalf("server_%d.primary holds %q of shard %d", i, k, s)
			}
			if !bytes.Equal(v, want[k]) {
				t.Fatalf("server_%d.primary: %q = %q, want %q", i, k, v, want[k])
			}
		}
		sec, err := server.ReadDump(filepath.Join(c.Dir, fmt.Sprintf("server_%d.secondary", (i+1)%n)))
		if err != nil {
			t.Fatal(err)
		}
		if len(sec) != len(prim[i]) {
			t.Fatalf("server_%d.secondary has %d keys, server_%d.primary %d", (i+1)%n, len(sec), i, len(prim[i]))
		}
		for k, v := range prim[i] {
			if sv, ok := sec[k]; !ok || !bytes.Equal(sv, v) {
				t.Fatalf("server_%d.secondary differs from server_%d.primary at %q", (i+1)%n, i, k)
			}
		}
	}
	if total != keys {
		t.Fatalf("dumps hold %d keys, wrote %d", total, keys)
	}
}

// TestServerTimerSlack checks that every thread of every server runs with
// the 1 ms timer slack the server sets for itself at start (the Go
// runtime's monitor thread then wakes about a millisecond apart instead of
// every 20 µs on a busy server; docs/BENCHMARKS.md). Reading another
// process's timer slack needs CAP_SYS_NICE: CI runs it as root.
func TestServerTimerSlack(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("reading another process's timer slack needs root (CAP_SYS_NICE); CI runs this as root")
	}
	c := testcluster.Start(t, testcluster.Options{N: 3})
	for id := 0; id < 3; id++ {
		pid := c.ServerPID(t, id)
		tasks, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*", pid))
		if err != nil || len(tasks) == 0 {
			t.Fatalf("server %d (pid %d): no threads listed: %v", id, pid, err)
		}
		for _, task := range tasks {
			b, err := os.ReadFile(filepath.Join("/proc", filepath.Base(task), "timerslack_ns"))
			if err != nil {
				t.Fatalf("server %d thread %s: %v", id, filepath.Base(task), err)
			}
			if got := string(bytes.TrimSpace(b)); got != "1000000" {
				t.Errorf("server %d (pid %d) thread %s: timer slack %s ns, want 1000000", id, pid, filepath.Base(task), got)
			}
		}
		t.Logf("ran: server %d (pid %d): %d threads, each with 1 ms of timer slack", id, pid, len(tasks))
	}
}
