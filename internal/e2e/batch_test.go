package e2e

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// TestBatch: client.Batch pipelines puts, gets and deletes over every shard
// from several goroutines while a primary is killed with -9. Every
// operation must succeed (a retry inside the batch is invisible), every get
// must see its own goroutine's latest write, and afterwards every key holds
// the last value its owner wrote (or is absent when the last op deleted it).
func TestBatch(t *testing.T) {
	const n, workers, keysEach, rounds = 3, 4, 48, 60
	c := testcluster.Start(t, testcluster.Options{N: n})
	cl := c.Client()
	c.WaitRecovered(t, 10*time.Second)
	type state struct {
		val     string
		present bool
	}
	finals := make([]map[string]state, workers)
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	killed := make(chan struct{})
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			mine := map[string]state{}
			for r := 0; r < rounds; r++ {
				if r == rounds/3 && g == 0 {
					close(killed)
				}
				ops := make([]client.BatchOp, 0, 16)
				for j := 0; j < 16; j++ {
					k := fmt.Sprintf("batch-%d-%d", g, (r*16+j)%keysEach)
					switch (r + j) % 4 {
					case 0, 1:
						ops = append(ops, client.BatchOp{Kind: client.BatchPut, Key: k, Value: []byte(fmt.Sprintf("v%d.%d", r, j))})
					case 2:
						ops = append(ops, client.BatchOp{Kind: client.BatchGet, Key: k})
					default:
						ops = append(ops, client.BatchOp{Kind: client.BatchDelete, Key: k})
					}
				}
				// Expected results of the gets: the batch's operations on one
				// key may run in any order, so a get only checks keys the
				// batch does not also write.
				written := map[string]bool{}
				for _, op := range ops {
					if op.Kind != client.BatchGet {
						written[op.Key] = true
					}
				}
				ctx, cancel := context.WithTimeout(context.Background(), foOpTimeout)
				err := cl.Batch(ctx, ops)
				cancel()
				if err != nil {
					errs <- fmt.Errorf("worker %d round %d: %v", g, r, err)
					return
				}
				for _, op := range ops {
					if op.Err != nil {
						errs <- fmt.Errorf("worker %d round %d: %v %q: %v", g, r, op.Kind, op.Key, op.Err)
						return
					}
					switch op.Kind {
					case client.BatchGet:
						want := mine[op.Key]
						if !written[op.Key] && (op.Found != want.present || string(op.Value) != want.val) {
							errs <- fmt.Errorf("worker %d round %d: get %q = %q/%v, want %q/%v", g, r, op.Key, op.Value, op.Found, want.val, want.present)
							return
						}
					case client.BatchPut:
						mine[op.Key] = state{string(op.Value), true}
					case client.BatchDelete:
						mine[op.Key] = state{}
					}
				}
			}
			finals[g] = mine
		}(g)
	}
	<-killed
	v := c.KillServer(t, 1)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	c.WaitRecovered(t, recoverTimeout, v)
	if t.Failed() {
		return
	}
	checked := 0
	for _, mine := range finals {
		for k, want := range mine {
			ctx, cancel := context.WithTimeout(context.Background(), foOpTimeout)
			got, err := cl.Get(ctx, k)
			cancel()
			if want.present && (err != nil || string(got) != want.val) || !want.present && err == nil {
				t.Errorf("%q = %q, %v; want %q (present %v)", k, got, err, want.val, want.present)
			}
			checked++
		}
	}
	t.Logf("%d keys checked after %d batches of 16 with a kill -9 of server 1", checked, workers*rounds)
}
