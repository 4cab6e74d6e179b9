package client_test

import (
	"context"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
	"ftkv/timing"
)

// TestDialWithAnOlderTiming: a timing.Config built before AnswerOverdue
// existed (or by hand, without it) leaves it zero. The client must fall
// back to the default derived from its failure timeout; it panicked in
// its watcher goroutine (a ticker of period 0), taking the program down.
func TestDialWithAnOlderTiming(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3, Plain: true, Args: []string{"-data-dir", "none"}})
	tm := timing.Default()
	tm.AnswerOverdue = 0
	cl := c.Client(client.WithTiming(tm))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := cl.Put(ctx, "older-timing", []byte("v")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(tm.Handshake / 4) // (the watcher has looked a few times)
	if v, err := cl.Get(ctx, "older-timing"); err != nil || string(v) != "v" {
		t.Fatalf("get: %q, %v", v, err)
	}
}
