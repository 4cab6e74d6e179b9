package e2e

// The ledger: a record of acknowledged writes to keys that are written once
// and never overwritten, so that "every acknowledged write is still there"
// is a plain read-back, independent of porcupine.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/hashring"
)

// ledger writes unique keys and remembers which writes were acknowledged.
type ledger struct {
	prefix    string
	opTimeout time.Duration

	mu      sync.Mutex
	acked   map[string]string       // acknowledged: must be present with this value
	ackedAt map[string][2]time.Time // when each acknowledged put started and returned (for a failure's report)
	unknown map[string]string       // failed: absent or this value
	nerr    int
	errs    []string

	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	puts   atomic.Int64
	ctx    context.Context
	cancel context.CancelFunc // aborts puts in flight when a test gives up
}

func newLedger(prefix string, opTimeout time.Duration) *ledger {
	l := &ledger{prefix: prefix, opTimeout: opTimeout, acked: map[string]string{}, ackedAt: map[string][2]time.Time{},
		unknown: map[string]string{}, stop: make(chan struct{})}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// startLedger is newLedger followed by start.
func startLedger(t *testing.T, clients []*client.Client, writers int, prefix string, opTimeout time.Duration) *ledger {
	l := newLedger(prefix, opTimeout)
	l.start(t, clients, writers)
	return l
}

// start runs writers goroutines that Put fresh keys (over every shard, as
// the hash spreads them) until Stop; when the test ends without Stop (it
// failed), puts in flight are aborted.
func (l *ledger) start(t *testing.T, clients []*client.Client, writers int) {
	t.Cleanup(func() { l.cancel(); l.Stop() })
	for g := 0; g < writers; g++ {
		l.wg.Add(1)
		go func(g int) {
			defer l.wg.Done()
			cl := clients[g%len(clients)]
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				k := fmt.Sprintf("%s/%d/%d", l.prefix, g, i)
				_ = l.put(cl, k, "v"+k)
			}
		}(g)
	}
}

func (l *ledger) put(cl *client.Client, k, v string) error {
	ctx, cancel := context.WithTimeout(l.ctx, l.opTimeout)
	start := time.Now()
	err := cl.Put(ctx, k, []byte(v))
	cancel()
	l.puts.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		l.unknown[k] = v
		l.nerr++
		if len(l.errs) < 10 {
			l.errs = append(l.errs, fmt.Sprintf("put %q after %s: %v", k, time.Since(start).Round(time.Millisecond), err))
		}
		return err
	}
	l.acked[k] = v
	l.ackedAt[k] = [2]time.Time{start, time.Now()}
	return nil
}

// preload writes n keys of about size bytes each from 64 goroutines and
// fails the test unless every one is acknowledged.
func (l *ledger) preload(t *testing.T, cl *client.Client, n, size int) {
	t.Helper()
	start := time.Now()
	pad := strings.Repeat("x", size)
	var wg sync.WaitGroup
	var failed atomic.Int64
	const workers = 64
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				k := fmt.Sprintf("%s/pre/%d", l.prefix, i)
				if failed.Load() > 0 {
					return
				}
				if err := l.put(cl, k, k+pad); err != nil {
					failed.Add(1)
					return
				}
			}
		}(w)
	}
	wg.Wait()
	if n, errs := l.Errors(); n > 0 {
		t.Fatalf("preload: %d puts failed: %s", n, strings.Join(errs, "\n"))
	}
	t.Logf("preloaded %d keys of %d bytes in %s", n, size, time.Since(start).Round(time.Millisecond))
}

// Stop ends the writers and waits for their last calls.
func (l *ledger) Stop() {
	l.once.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// Errors is the number of failed puts and the first few of them.
func (l *ledger) Errors() (int, []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.nerr, append([]string(nil), l.errs...)
}

// Unknown returns the keys whose Put failed.
func (l *ledger) Unknown() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]string, 0, len(l.unknown))
	for k := range l.unknown {
		out = append(out, k)
	}
	return out
}

// Acked is the number of acknowledged puts.
func (l *ledger) Acked() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.acked)
}

// AckedCount is Acked as waitProgress counts progress.
func (l *ledger) AckedCount() int64 { return int64(l.Acked()) }

// keysWhere returns the acknowledged keys that satisfy keep.
func (l *ledger) keysWhere(keep func(string) bool) map[string]string {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]string{}
	for k, v := range l.acked {
		if keep(k) {
			out[k] = v
		}
	}
	return out
}

// verify reads back every acknowledged key (except those skip selects) and
// fails the test for each one missing or wrong; a write whose Put failed
// may be absent but never hold anything else. It returns how many keys it
// checked.
func (l *ledger) verify(t *testing.T, cl *client.Client, skip func(key string) bool) int {
	t.Helper()
	type item struct {
		k, v  string
		acked bool
		at    [2]time.Time
	}
	var items []item
	l.mu.Lock()
	for k, v := range l.acked {
		if skip == nil || !skip(k) {
			items = append(items, item{k, v, true, l.ackedAt[k]})
		}
	}
	for k, v := range l.unknown {
		if skip == nil || !skip(k) {
			items = append(items, item{k, v, false, [2]time.Time{}})
		}
	}
	l.mu.Unlock()

	var mu sync.Mutex
	var bad []string
	nbad := 0
	report := func(s string) {
		mu.Lock()
		nbad++
		if len(bad) < 20 {
			bad = append(bad, s)
		}
		mu.Unlock()
	}
	var wg sync.WaitGroup
	const workers = 32
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(items); i += workers {
				it := items[i]
				ctx, cancel := context.WithTimeout(context.Background(), l.opTimeout)
				v, err := cl.Get(ctx, it.k)
				cancel()
				switch {
				case errors.Is(err, client.ErrNotFound) && !it.acked:
				case errors.Is(err, client.ErrNotFound):
					const ms = "15:04:05.000"
					report(fmt.Sprintf("acknowledged key %q is gone (put from %s to %s UTC)", it.k, it.at[0].UTC().Format(ms), it.at[1].UTC().Format(ms)))
				case err != nil:
					report(fmt.Sprintf("get %q: %v", it.k, err))
				case !bytes.Equal(v, []byte(it.v)):
					report(fmt.Sprintf("key %q = %.40q, want %.40q", it.k, v, it.v))
				}
			}
		}(w)
	}
	wg.Wait()
	if nbad > 0 {
		t.Errorf("ledger: %d of %d keys wrong or lost:\n%s", nbad, len(items), strings.Join(bad, "\n"))
	}
	return len(items)
}

// keysOnShard returns count keys named prefix-… that an n-server ring
// places on shard.
func keysOnShard(n, shard, count int, prefix string) []string {
	ring := hashring.New(n)
	var out []string
	for i := 0; len(out) < count; i++ {
		k := fmt.Sprintf("%s-%d", prefix, i)
		if ring.Shard(k) == shard {
			out = append(out, k)
		}
	}
	return out
}

// keysOnShards returns perShard keys on every shard of an n-server ring,
// interleaved (shard 0, 1, …, n-1, 0, 1, …).
func keysOnShards(n, perShard int, prefix string) []string {
	by := make([][]string, n)
	for s := range by {
		by[s] = keysOnShard(n, s, perShard, prefix)
	}
	var out []string
	for i := 0; i < perShard; i++ {
		for s := 0; s < n; s++ {
			out = append(out, by[s][i])
		}
	}
	return out
}

// stopAndCheck ends the load and the ledger writers, reads every key of the
// workload once more, and checks the history with porcupine and the ledger
// against the cluster.
func stopAndCheck(t *testing.T, w *workload, l *ledger, cl *client.Client) {
	t.Helper()
	w.Stop()
	l.Stop()
	w.finalReads(t, cl)
	w.check(t)
	checkLedger(t, l, cl)
}
