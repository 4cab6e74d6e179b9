package e2e

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// keyState checks the reads of a key that one goroutine alone writes: a
// read returns the last acknowledged value or a value whose write never
// got an answer (it may take effect at any time after it was sent), and
// once such a value is seen, what it replaced cannot come back.
type keyState struct {
	cur     string          // last acknowledged or observed value ("" absent)
	pending map[string]bool // values written without an answer
}

func (k *keyState) acked(v string)   { k.cur = v }
func (k *keyState) unknown(v string) { k.pending[v] = true }
func (k *keyState) read(v string) error {
	if v == k.cur {
		return nil
	}
	if k.pending[v] {
		delete(k.pending, v)
		k.cur = v
		return nil
	}
	return fmt.Errorf("read %q, want %q or one of %d unanswered writes", v, k.cur, len(k.pending))
}

// TestReviewSharedClientFaults: one client shared by 24 goroutines (Put,
// AppendGet into a reused buffer, Append, Batch), some calls with
// deadlines of a few milliseconds, while primaries are killed with -9 and
// stopped with SIGSTOP. Every read of a goroutine's own key is
// linearizable (the last acknowledged value or an unanswered write's),
// every acknowledged Append is applied exactly once and after the appends before it, no call
// outlives its deadline by more than a few seconds, and no call fails
// with anything but its context's error or a session expiry.
func TestReviewSharedClientFaults(t *testing.T) {
	const (
		workers = 24
		keysPer = 3
	)
	dur := 25 * time.Second
	if testing.Short() {
		dur = 8 * time.Second
	}
	c := testcluster.Start(t, testcluster.Options{N: 3})
	base := seed(t)
	cl := c.Client()

	stop := make(chan struct{})
	var faults sync.WaitGroup
	var nfaults atomic.Int64
	faults.Add(1)
	go func() {
		defer faults.Done()
		rng := rand.New(rand.NewSource(base ^ 0xfa17))
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(time.Duration(800+rng.Intn(800)) * time.Millisecond):
			}
			id := rng.Intn(3)
			if i%2 == 0 {
				v := c.KillServer(t, id)
				c.WaitRecovered(t, 60*time.Second, v)
			} else {
				v := c.StopServer(t, id)
				time.Sleep(time.Duration(200+rng.Intn(1500)) * time.Millisecond)
				c.ContServer(t, v)
				c.WaitFor(t, 60*time.Second, "every server serving", func(st *client.ClusterStatus) error {
					return testcluster.Recovered(st)
				})
			}
			nfaults.Add(1)
		}
	}()

	deadline := time.Now().Add(dur)
	var wg sync.WaitGroup
	var nops, nshort, nctx atomic.Int64
	errc := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewSource(base + int64(w)))
			keys := make([]string, keysPer)
			st := make([]*keyState, keysPer)
			for i := range keys {
				keys[i] = fmt.Sprintf("rv:%d:%d", w, i)
				st[i] = &keyState{pending: map[string]bool{}}
			}
			apKey := fmt.Sprintf("rv-ap:%d", w)
			var apAcked, apUnknown []int
			buf := make([]byte, 0, 64)
			fail := func(err error) { errc <- fmt.Errorf("worker %d: %w", w, err) }
			// call runs op with a deadline and reports whether the call's
			// outcome is known (err nil) or it failed as allowed.
			call := func(op func(ctx context.Context) error) (bool, error) {
				d := 20 * time.Second
				if rng.Intn(5) == 0 {
					d = time.Duration(1+rng.Intn(5)) * time.Millisecond
					nshort.Add(1)
				}
				ctx, cancel := context.WithTimeout(context.Background(), d)
				defer cancel()
				start := time.Now()
				err := op(ctx)
				if late := time.Since(start) - d; late > 5*time.Second {
					return false, fmt.Errorf("a call with a %s deadline returned after %s", d, time.Since(start))
				}
				nops.Add(1)
				if err == nil {
					return true, nil
				}
				if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, client.ErrSessionExpired) {
					nctx.Add(1)
					return false, nil
				}
				return false, err
			}
			for n := 1; time.Now().Before(deadline); n++ {
				k := rng.Intn(keysPer)
				val := fmt.Sprintf("%d:%d:%d", w, k, n)
				switch r := rng.Intn(10); {
				case r < 3: // Put
					ok, err := call(func(ctx context.Context) error { return cl.Put(ctx, keys[k], []byte(val)) })
					if err != nil {
						fail(fmt.Errorf("put %s: %w", keys[k], err))
						return
					}
					if ok {
						st[k].acked(val)
					} else {
						st[k].unknown(val)
					}
				case r < 6: // AppendGet into a buffer with a prefix
					var got []byte
					ok, err := call(func(ctx context.Context) error {
						var err error
						got, err = cl.AppendGet(ctx, append(buf[:0], "pfx|"...), keys[k])
						if errors.Is(err, client.ErrNotFound) {
							got, err = []byte("pfx|"), nil
						}
						return err
					})
					if err != nil {
						fail(fmt.Errorf("get %s: %w", keys[k], err))
						return
					}
					if ok {
						if !strings.HasPrefix(string(got), "pfx|") {
							fail(fmt.Errorf("get %s: the buffer's prefix is gone: %q", keys[k], got))
							return
						}
						if err := st[k].read(string(got[4:])); err != nil {
							fail(fmt.Errorf("get %s: %w", keys[k], err))
							return
						}
						buf = got[:0]
					}
				case r < 8: // Append a token
					ok, err := call(func(ctx context.Context) error {
						return cl.Append(ctx, apKey, []byte(strconv.Itoa(n)+","))
					})
					if err != nil {
						fail(fmt.Errorf("append %s: %w", apKey, err))
						return
					}
					if ok {
						apAcked = append(apAcked, n)
					} else {
						apUnknown = append(apUnknown, n)
					}
				default: // a Batch: a put of one key, gets of the others
					ops := make([]client.BatchOp, keysPer)
					for i := range ops {
						ops[i] = client.BatchOp{Kind: client.BatchGet, Key: keys[i]}
					}
					ops[k] = client.BatchOp{Kind: client.BatchPut, Key: keys[k], Value: []byte(val)}
					var berr error
					_, err := call(func(ctx context.Context) error { berr = cl.Batch(ctx, ops); return berr })
					if err != nil {
						fail(fmt.Errorf("batch: %w", err))
						return
					}
					for i, op := range ops {
						ok := op.Err == nil
						// An operation whose connection broke as the deadline
						// passed keeps the connection's error (not retried):
						// its outcome is unknown too.
						late := berr != nil && op.Err != nil && strings.Contains(op.Err.Error(), "connection broken")
						if !ok && !late && !errors.Is(op.Err, context.DeadlineExceeded) && !errors.Is(op.Err, client.ErrSessionExpired) {
							fail(fmt.Errorf("batch op %d on %s: %w", i, op.Key, op.Err))
							return
						}
						if i == k {
							if ok {
								st[i].acked(val)
							} else {
								st[i].unknown(val)
							}
							continue
						}
						if !ok {
							continue
						}
						got := ""
						if op.Found {
							got = string(op.Value)
						}
						if err := st[i].read(got); err != nil {
							fail(fmt.Errorf("batch get %s: %w", op.Key, err))
							return
						}
					}
				}
			}
			// Every acknowledged token once, unanswered ones at most once,
			// all in the order appended.
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			v, err := cl.Get(ctx, apKey)
			if errors.Is(err, client.ErrNotFound) {
				v, err = nil, nil
			}
			if err != nil {
				fail(fmt.Errorf("final get %s: %w", apKey, err))
				return
			}
			// An acknowledged token comes after every token appended
			// before it was sent (a later one, or an unanswered one, may
			// take effect at any time after it was sent).
			acked := map[int]bool{}
			for _, x := range apAcked {
				acked[x] = true
			}
			seen := map[int]int{}
			maxSeen := 0
			for _, tok := range strings.Split(strings.TrimSuffix(string(v), ","), ",") {
				if tok == "" {
					continue
				}
				x, _ := strconv.Atoi(tok)
				seen[x]++
				if acked[x] && x < maxSeen {
					fail(fmt.Errorf("%s: acknowledged token %d after %d: %q", apKey, x, maxSeen, v))
					return
				}
				maxSeen = max(maxSeen, x)
			}
			for _, x := range apAcked {
				if seen[x] != 1 {
					fail(fmt.Errorf("%s: acknowledged token %d applied %d times", apKey, x, seen[x]))
					return
				}
				delete(seen, x)
			}
			for _, x := range apUnknown {
				delete(seen, x)
			}
			for x := range seen {
				fail(fmt.Errorf("%s: token %d was never appended", apKey, x))
				return
			}
		}()
	}
	wg.Wait()
	close(stop)
	faults.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	t.Logf("%d calls (%d with a short deadline, %d ended by it), %d faults", nops.Load(), nshort.Load(), nctx.Load(), nfaults.Load())
	if nfaults.Load() < 2 {
		t.Errorf("only %d faults injected", nfaults.Load())
	}
}

// TestReviewBatchLarge: batches far larger than a connection's table of
// slots (4096) and the servers' in-flight limit, from several goroutines
// sharing one client at once: every put lands and every get reads its own
// key's value (answers matched through the slots and the overflow map).
func TestReviewBatchLarge(t *testing.T) {
	const (
		workers = 6
		n       = 9000
	)
	c := testcluster.Start(t, testcluster.Options{N: 3})
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := range 2 {
				puts := make([]client.BatchOp, n)
				for i := range puts {
					puts[i] = client.BatchOp{Kind: client.BatchPut, Key: fmt.Sprintf("big:%d:%d", w, i),
						Value: []byte(fmt.Sprintf("%d:%d:%d", round, w, i))}
				}
				if err := cl.Batch(ctx, puts); err != nil {
					errc <- err
					return
				}
				gets := make([]client.BatchOp, n+1)
				for i := range n {
					gets[i] = client.BatchOp{Kind: client.BatchGet, Key: fmt.Sprintf("big:%d:%d", w, n-1-i)}
				}
				gets[n] = client.BatchOp{Kind: client.BatchGet, Key: fmt.Sprintf("big:%d:absent", w)}
				if err := cl.Batch(ctx, gets); err != nil {
					errc <- err
					return
				}
				for i, op := range puts {
					if op.Err != nil {
						errc <- fmt.Errorf("put %d: %w", i, op.Err)
						return
					}
				}
				for i, op := range gets[:n] {
					want := fmt.Sprintf("%d:%d:%d", round, w, n-1-i)
					if op.Err != nil || !op.Found || string(op.Value) != want {
						errc <- fmt.Errorf("get %s = %q (found %v, %v), want %q", op.Key, op.Value, op.Found, op.Err, want)
						return
					}
				}
				if op := gets[n]; op.Err != nil || op.Found || op.Value != nil {
					errc <- fmt.Errorf("get of an absent key: %q found %v, %v", op.Value, op.Found, op.Err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}
