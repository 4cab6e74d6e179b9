package e2e

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// TestLinearizable drives 16 goroutines over 4 clients with random Get, Put,
// Delete, CompareAndSwap and Append on 4 keys of a 3-server cluster,
// records every call and answer with its start and end time, and checks the
// history per key with porcupine.
func TestLinearizable(t *testing.T) {
	t.Run("checker rejects illegal histories", testCheckerRejects)

	const (
		workers      = 16
		clients      = 4
		keys         = 4
		duration     = 3500 * time.Millisecond
		maxOpsEach   = 1500
		opTimeout    = 5 * time.Second
		checkTimeout = 2 * time.Minute
	)
	c := testcluster.Start(t, testcluster.Options{N: 3})
	cls := make([]*client.Client, clients)
	for i := range cls {
		cls[i] = c.Client(client.WithConnsPerServer(1 + i%2))
	}
	base := seed(t)
	keyNames := make([]string, keys)
	for i := range keyNames {
		keyNames[i] = fmt.Sprintf("lin-%d", i)
	}

	t0 := time.Now()
	now := func() int64 { return int64(time.Since(t0)) }
	deadline := t0.Add(duration)
	histories := make([][]porcupine.Operation, workers)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for g := 0; g < workers; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(base + int64(g)))
			cl := cls[(g/keys)%clients]
			// The last value this goroutine saw per key: CAS expects it,
			// so that some swaps succeed.
			seen := map[string]kvState{}
			for i := 0; i < maxOpsEach && time.Now().Before(deadline); i++ {
				// Each goroutine works on two neighbouring keys, so at most
				// 8 goroutines contend for one key: a stall of the machine
				// then leaves at most 8 overlapping operations per key, which
				// keeps porcupine's search (exponential in the overlap)
				// quick, while every key still sees 8 writers from 4 clients.
				key := keyNames[(g+rng.Intn(2))%keys]
				ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
				call := now()
				in, out, err := randomOp(ctx, cl, rng, g, i, key, seen)
				ret := now()
				cancel()
				if err != nil {
					// Nothing is injected here: every call must succeed.
					errs <- fmt.Errorf("worker %d op %d %s(%s): %w", g, i, in.op, key, err)
					return
				}
				histories[g] = append(histories[g], porcupine.Operation{
					ClientId: g, Input: in, Call: call, Output: out, Return: ret})
			}
		}(g)
	}
	wg.Wait()
	elapsed := time.Since(t0)
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if t.Failed() {
		t.FailNow()
	}

	var history []porcupine.Operation
	counts := map[string]int{}
	for _, h := range histories {
		history = append(history, h...)
		for _, op := range h {
			in, out := op.Input.(kvInput), op.Output.(kvOutput)
			counts[in.op.String()]++
			if in.op == opGet && out.present {
				counts["get found"]++
			}
			if in.op == opCAS && out.ok {
				counts["cas swapped"]++
				if in.oldPresent {
					counts["cas swapped from a value"]++
				}
			}
		}
	}
	t.Logf("%d operations in %s (%.0f ops/s): %v", len(history), elapsed.Round(time.Millisecond),
		float64(len(history))/elapsed.Seconds(), counts)
	// Guard against a vacuous run: the history must exercise every kind of
	// answer the model distinguishes.
	for _, k := range []string{"get", "put", "delete", "cas", "append", "get found", "cas swapped", "cas swapped from a value"} {
		if counts[k] == 0 {
			t.Fatalf("no %q operation in the history: the check would prove little", k)
		}
	}
	if len(history) < 500 {
		t.Fatalf("only %d operations recorded; want at least 500", len(history))
	}
	if res := checkHistory(t, history, checkTimeout); res != porcupine.Ok {
		t.Fatalf("history of %d operations is not linearizable: %s", len(history), res)
	}
}

// testCheckerRejects feeds the model hand-made histories so that
// TestLinearizable cannot pass because the checker accepts anything.
func testCheckerRejects(t *testing.T) {
	op := func(client int, call, ret int64, in kvInput, out kvOutput) porcupine.Operation {
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	put := func(k, v string) kvInput { return kvInput{op: opPut, key: k, value: v} }
	app := func(k, v string) kvInput { return kvInput{op: opAppend, key: k, value: v} }
	get := kvInput{op: opGet, key: "k"}
	cases := []struct {
		name string
		h    []porcupine.Operation
		want porcupine.CheckResult
	}{
		{"stale read after a completed put", []porcupine.Operation{
			op(0, 0, 10, put("k", "a"), kvOutput{}),
			op(0, 20, 30, put("k", "b"), kvOutput{}),
			op(1, 40, 50, get, kvOutput{present: true, value: "a"}),
		}, porcupine.Illegal},
		{"read of a value never written", []porcupine.Operation{
			op(0, 0, 10, put("k", "a"), kvOutput{}),
			op(1, 5, 15, get, kvOutput{present: true, value: "z"}),
		}, porcupine.Illegal},
		{"append applied twice", []porcupine.Operation{
			op(0, 0, 10, app("k", "x;"), kvOutput{}),
			op(1, 20, 30, get, kvOutput{present: true, value: "x;x;"}),
		}, porcupine.Illegal},
		{"two only-if-absent CAS both win", []porcupine.Operation{
			op(0, 0, 10, kvInput{op: opCAS, key: "k", value: "p"}, kvOutput{ok: true}),
			op(1, 0, 10, kvInput{op: opCAS, key: "k", value: "q"}, kvOutput{ok: true}),
		}, porcupine.Illegal},
		{"CAS mismatch reports a wrong current value", []porcupine.Operation{
			op(0, 0, 10, put("k", "a"), kvOutput{}),
			op(1, 20, 30, kvInput{op: opCAS, key: "k", old: "b", oldPresent: true, value: "c"},
				kvOutput{curKnown: true, present: true, value: "zz"}),
		}, porcupine.Illegal},
		{"read of a deleted key", []porcupine.Operation{
			op(0, 0, 10, put("k", "a"), kvOutput{}),
			op(0, 20, 30, kvInput{op: opDelete, key: "k"}, kvOutput{}),
			op(1, 40, 50, get, kvOutput{present: true, value: "a"}),
		}, porcupine.Illegal},
		// The same shapes, made legal by concurrency, must pass.
		{"concurrent put may be read either way", []porcupine.Operation{
			op(0, 0, 10, put("k", "a"), kvOutput{}),
			op(0, 20, 50, put("k", "b"), kvOutput{}),
			op(1, 30, 40, get, kvOutput{present: true, value: "a"}),
			op(2, 30, 60, kvInput{op: opCAS, key: "k", old: "a", oldPresent: true, value: "c"}, kvOutput{ok: true}),
			op(3, 70, 80, app("k", "x"), kvOutput{}),
			op(3, 90, 95, get, kvOutput{present: true, value: "bx"}),
		}, porcupine.Ok},
	}
	for _, tc := range cases {
		res := porcupine.CheckOperationsTimeout(kvModel, tc.h, 10*time.Second)
		if res != tc.want {
			t.Errorf("%s: porcupine says %s, want %s", tc.name, res, tc.want)
		}
	}
}
