package client_test

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// TestBatch: a batch's outcomes — values written and read back, absent
// keys, deletes, an over-limit key failing alone — and its writes survive
// the kill of a primary in the middle of the batches (retried through the
// failover, none lost).
func TestBatch(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, c.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()

	const n = 300
	ops := make([]client.BatchOp, 0, n+1)
	for i := range n {
		ops = append(ops, client.BatchOp{Kind: client.BatchPut, Key: fmt.Sprintf("fast:%d", i), Value: []byte(fmt.Sprintf("v%d", i))})
	}
	ops = append(ops, client.BatchOp{Kind: client.BatchPut, Key: string(make([]byte, 70<<10)), Value: []byte("x")})
	if err := cl.Batch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	for i, op := range ops[:n] {
		if op.Err != nil {
			t.Fatalf("put %d: %v", i, op.Err)
		}
	}
	if err := ops[n].Err; err == nil {
		t.Fatal("a 70 KiB key was accepted")
	}

	// Reads through both, deletes, absent keys.
	check := func(what string, batch func(context.Context, []client.BatchOp) error, deleted int) {
		t.Helper()
		gets := make([]client.BatchOp, n+1)
		for i := range n {
			gets[i] = client.BatchOp{Kind: client.BatchGet, Key: fmt.Sprintf("fast:%d", i)}
		}
		gets[n] = client.BatchOp{Kind: client.BatchGet, Key: "fast:absent"}
		if err := batch(ctx, gets); err != nil {
			t.Fatal(err)
		}
		for i, op := range gets[:n] {
			want := i >= deleted
			if op.Err != nil || op.Found != want || want && string(op.Value) != fmt.Sprintf("v%d", i) {
				t.Fatalf("%s: get %s = %q (found %v, %v), want found %v", what, op.Key, op.Value, op.Found, op.Err, want)
			}
		}
		if op := gets[n]; op.Err != nil || op.Found || op.Value != nil {
			t.Fatalf("%s: absent key = %q (found %v, %v)", what, op.Value, op.Found, op.Err)
		}
	}
	check("Batch", cl.Batch, 0)
	dels := make([]client.BatchOp, 10)
	for i := range dels {
		dels[i] = client.BatchOp{Kind: client.BatchDelete, Key: fmt.Sprintf("fast:%d", i)}
	}
	if err := cl.Batch(ctx, dels); err != nil {
		t.Fatal(err)
	}
	for _, op := range dels {
		if op.Err != nil {
			t.Fatalf("delete %s: %v", op.Key, op.Err)
		}
	}
	check("Batch after deletes", cl.Batch, 10)

	// Batches of writes across the kill of a primary: every one is
	// acknowledged, and every acknowledged value is there.
	done := make(chan struct{})
	go func() {
		defer close(done)
		time.Sleep(100 * time.Millisecond)
		c.KillServer(t, 1)
	}()
	for round := range 40 {
		ops := make([]client.BatchOp, 50)
		for i := range ops {
			ops[i] = client.BatchOp{Kind: client.BatchPut, Key: fmt.Sprintf("kill:%d:%d", round, i), Value: []byte(fmt.Sprint(round))}
		}
		if err := cl.Batch(ctx, ops); err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			if op.Err != nil {
				t.Fatalf("round %d: put %s: %v", round, op.Key, op.Err)
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	<-done
	for round := range 40 {
		ops := make([]client.BatchOp, 50)
		for i := range ops {
			ops[i] = client.BatchOp{Kind: client.BatchGet, Key: fmt.Sprintf("kill:%d:%d", round, i)}
		}
		if err := cl.Batch(ctx, ops); err != nil {
			t.Fatal(err)
		}
		for _, op := range ops {
			if op.Err != nil || !op.Found || string(op.Value) != fmt.Sprint(round) {
				t.Fatalf("after the kill: %s = %q (found %v, %v)", op.Key, op.Value, op.Found, op.Err)
			}
		}
	}
}

// TestBatchGetValueCap: a Get with MaxValue takes a value up to that
// length; a longer one is not sent back (ErrTooLarge, no value), by a
// real server; other operations of the batch are unaffected.
func TestBatchGetValueCap(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, c.Addr)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if err := cl.Put(ctx, "hundred", make([]byte, 100)); err != nil {
		t.Fatal(err)
	}
	ops := []client.BatchOp{
		{Kind: client.BatchGet, Key: "hundred", MaxValue: 99},
		{Kind: client.BatchGet, Key: "hundred", MaxValue: 100},
		{Kind: client.BatchGet, Key: "hundred"},
		{Kind: client.BatchGet, Key: "absent", MaxValue: 1},
	}
	if err := cl.Batch(ctx, ops); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(ops[0].Err, client.ErrTooLarge) || ops[0].Value != nil || ops[0].Found {
		t.Errorf("a 100-byte value under a cap of 99: err %v, %d bytes, found %v; want ErrTooLarge and nothing", ops[0].Err, len(ops[0].Value), ops[0].Found)
	}
	for i, op := range ops[1:3] {
		if op.Err != nil || !op.Found || len(op.Value) != 100 {
			t.Errorf("op %d: err %v, found %v, %d bytes; want the 100-byte value", i+1, op.Err, op.Found, len(op.Value))
		}
	}
	if ops[3].Err != nil || ops[3].Found {
		t.Errorf("an absent key under a cap: err %v, found %v", ops[3].Err, ops[3].Found)
	}
}
