package e2e

// Review of the client's write deadlines (client/conn.go: a caller writing
// to a server that takes nothing stops at its ctx deadline, the rest is
// drained in the background; on TLS the connection fails): a primary is
// SIGSTOPped under load of large values with short deadlines, briefly
// (resumed before any failover) and then for good (failed over). Every
// call must return close to its deadline, the shared client must serve
// every shard again, and every key must read back as the ledger says.
// (Values up to 272 KiB: with the helper's 1 MiB values under the race
// detector most calls timed out before any stop. At this size the
// kernel's buffers rarely fill, so this is the broad check; the blocked
// write itself is provoked deterministically by the client package's
// TestWriteStallHonorsDeadline and TestReview9TLSCutWriteFailsPromptly.)

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

type stallStats struct {
	mu       sync.Mutex
	overruns []time.Duration // elapsed - budget, of every call
	worst    string
	ok, fail atomic.Int64
	lastOK   sync.Map // shard -> time of its last success
}

func (s *stallStats) add(el, budget time.Duration, what string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := el - budget
	s.overruns = append(s.overruns, o)
	if len(s.overruns) == 1 || o > s.maxLocked() {
		s.worst = fmt.Sprintf("%s: %v for a %v deadline", what, el.Round(time.Millisecond), budget)
	}
}

func (s *stallStats) maxLocked() time.Duration {
	var m time.Duration
	for _, o := range s.overruns[:len(s.overruns)-1] {
		m = max(m, o)
	}
	return m
}

func (s *stallStats) summary() (p99, worst time.Duration, n int, desc string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := append([]time.Duration(nil), s.overruns...)
	sort.Slice(o, func(i, j int) bool { return o[i] < o[j] })
	if len(o) == 0 {
		return 0, 0, 0, ""
	}
	return o[len(o)*99/100], o[len(o)-1], len(o), s.worst
}

func review9Stall(t *testing.T, c *testcluster.Cluster, cl *client.Client, stopFor time.Duration) {
	const n = 3
	const workers = 12
	keys := keysOnShards(n, workers, "r9stall") // keys[i] is on shard i%n
	l := &overLedger{acked: map[string]int{}, unknown: map[string]map[int]bool{}, stop: make(chan struct{})}
	st := &stallStats{}
	goBefore := runtime.NumGoroutine()
	for g := 0; g < workers; g++ {
		l.wg.Add(1)
		go func(g int) {
			defer l.wg.Done()
			rng := rand.New(rand.NewSource(int64(g)))
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				ki := (g + i*workers) % len(keys)
				k := keys[ki]
				l.mu.Lock()
				idx := l.acked[k] + 1 + len(l.unknown[k])
				l.mu.Unlock()
				size := 16<<10 + rng.Intn(256<<10) // (1 MiB values under the race detector on 2 CPUs left most calls timing out before any stop)
				v := fmt.Sprintf("%s#%d#", k, idx)
				v += strings.Repeat("v", size-len(v))
				budget := time.Duration(100+rng.Intn(201)) * time.Millisecond
				ctx, cancel := context.WithTimeout(context.Background(), budget)
				start := time.Now()
				err := cl.Put(ctx, k, []byte(v))
				el := time.Since(start)
				cancel()
				st.add(el, budget, fmt.Sprintf("put %s (%d KiB) err=%v", k, size>>10, err))
				l.mu.Lock()
				if err != nil {
					if l.unknown[k] == nil {
						l.unknown[k] = map[int]bool{}
					}
					l.unknown[k][idx] = true
					st.fail.Add(1)
				} else {
					l.acked[k] = idx
					l.nacked++
					st.ok.Add(1)
					st.lastOK.Store(ki%n, time.Now())
				}
				l.mu.Unlock()
				if err != nil {
					// A pause, as a client backs off: twelve workers
					// retrying puts of up to 272 KiB at once over TLS
					// starved a loaded machine of the puts the test
					// waits for.
					time.Sleep(20 * time.Millisecond)
				}
			}
		}(g)
	}
	waitProgress(t, c, "load", l.count, 30, time.Second)

	// A stop resumed before the failure timeout.
	v := c.StopServer(t, 0)
	time.Sleep(stopFor)
	c.ContServer(t, v)
	mark := time.Now().Add(time.Second)
	time.Sleep(3 * time.Second)
	t.Logf("after a stop of %v: %d ok, %d failed", stopFor, st.ok.Load(), st.fail.Load())

	if stopFor <= time.Second {
		// A stop for good: the coordinator fails server 0 over.
		v = c.StopServer(t, 0)
		time.Sleep(3 * time.Second)
		c.ContServer(t, v)
		c.WaitRecovered(t, recoverTimeout, v)
		mark = time.Now()
		time.Sleep(3 * time.Second)
	}
	// Every shard serves again: a put succeeds after the mark. (Waited
	// for up to 8 s more: under the race detector with TLS on 2 CPUs the
	// resumed link's backlog of large values alone has taken 2 s; a
	// primary that never serves again fails all the same.)
	served := func(sh int) bool {
		at, ok := st.lastOK.Load(sh)
		return ok && !at.(time.Time).Before(mark)
	}
	for end := time.Now().Add(8 * time.Second); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
		all := true
		for sh := 0; sh < n; sh++ {
			all = all && served(sh)
		}
		if all {
			break
		}
	}
	for sh := 0; sh < n; sh++ {
		if !served(sh) {
			t.Errorf("shard %d: no put succeeded in the 2-11 s after the server was resumed or replaced", sh)
			review9Hold(t, c)
		}
	}
	l.halt()
	review9StallReport(t, st)

	// Every key as the ledger says.
	bad := 0
	for k, a := range l.acked {
		if bad > 3 {
			break
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		val, err := cl.Get(ctx, k)
		cancel()
		got := -1
		if err == nil {
			parts := strings.SplitN(string(val), "#", 3)
			if len(parts) == 3 && parts[0] == k && strings.Trim(parts[2], "v") == "" {
				got, _ = strconv.Atoi(parts[1])
			}
		} else if !errors.Is(err, client.ErrNotFound) {
			t.Errorf("Get %q: %v", k, err)
			bad++
			continue
		}
		if got == a || (got > a && l.unknown[k][got]) {
			continue
		}
		if bad++; bad <= 10 {
			t.Errorf("key %q holds index %d; last acknowledged %d (unknown %v)", k, got, a, l.unknown[k])
		}
	}
	t.Logf("checked %d keys", len(l.acked))

	// No write left behind (drain) once idle.
	deadline := time.Now().Add(15 * time.Second)
	for {
		buf := make([]byte, 1<<20)
		dump := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(dump, "client.(*conn).drain") && !strings.Contains(dump, "client.(*conn).write") {
			t.Logf("%d goroutines now, %d before the load", runtime.NumGoroutine(), goBefore)
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("a client write still under way 15 s after the load ended:\n%s", dump)
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// review9Hold, with R9_HOLD set, keeps the cluster as it is for a
// minute, for a look from outside.
func review9Hold(t *testing.T, c *testcluster.Cluster) {
	if os.Getenv("R9_HOLD") == "" {
		return
	}
	st, err := c.TryStatus(context.Background())
	if err == nil {
		t.Logf("holding; status: %s", testcluster.StatusJSON(st))
	}
	fmt.Fprintf(os.Stderr, "R9 HOLD dir %s\n", c.Dir)
	time.Sleep(60 * time.Second)
}

func review9StallReport(t *testing.T, st *stallStats) {
	t.Helper()
	p99, worst, calls, desc := st.summary()
	t.Logf("%d calls (%d ok, %d failed); overrun past the deadline: p99 %v, max %v (%s)",
		calls, st.ok.Load(), st.fail.Load(), p99.Round(time.Millisecond), worst.Round(time.Millisecond), desc)
	// The project's bound for a call past its deadline under faults (as
	// in review_client_test.go's) with room for the race detector on a
	// loaded 2-CPU machine; without the fix a call blocked for as long as
	// the server was stopped, or 5 s more on TLS.
	if worst > 2*time.Second {
		t.Errorf("a call returned %v after its deadline (%s)", worst.Round(time.Millisecond), desc)
	}
}

func TestReview9StallDeadlines(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		c := testcluster.Start(t, testcluster.Options{N: 3, Plain: true})
		cl := c.Client()
		defer cl.Close()
		c.WaitRecovered(t, 10*time.Second)
		review9Stall(t, c, cl, 300*time.Millisecond)
	})
	t.Run("tls", func(t *testing.T) {
		p := newTLSPKI(t)
		c := startTLSClusterWith(t, 3, p, testcluster.Options{Plain: true})
		cl := c.Client()
		defer cl.Close()
		c.WaitRecovered(t, 10*time.Second)
		review9Stall(t, c, cl, 300*time.Millisecond)
	})
}

// TestReview9StallLongStop: the coordinator's failure timeout is long
// (4 s), so a primary stopped for 2.5 s is resumed, not replaced: the
// sockets to it stay full for 2.5 s. No call may outlive its deadline by
// more than a second.
func TestReview9StallLongStop(t *testing.T) {
	for _, mode := range []string{"plain", "tls"} {
		t.Run(mode, func(t *testing.T) {
			var c *testcluster.Cluster
			if mode == "plain" {
				c = testcluster.Start(t, testcluster.Options{N: 3, Plain: true, Timeout: "4s"})
			} else {
				p := newTLSPKI(t)
				c = testcluster.Start(t, testcluster.Options{N: 3, Timeout: "4s",
					Config: "3\n" + strings.Repeat("localhost 0 0 0\n", 3) + p.lines(), ClientOptions: []client.Option{client.WithTLS(p.client)}})
			}
			cl := c.Client()
			defer cl.Close()
			c.WaitRecovered(t, 10*time.Second)
			review9Stall(t, c, cl, 2500*time.Millisecond)
		})
	}
}
