package gateway

import (
	"context"
	"io"
	"net"
	"testing"
	"time"

	"ftkv/client"
)

// stuckStore holds every batch with the key "stuck" until release is
// closed (a shard failing over).
type stuckStore struct {
	*memStore
	release chan struct{}
}

func (s *stuckStore) Batch(ctx context.Context, ops []client.BatchOp) error {
	for _, op := range ops {
		if op.Key == "stuck" {
			select {
			case <-s.release:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return s.memStore.Batch(ctx, ops)
}

// TestStuckBatchDoesNotHoldOthers: connections whose commands arrive while
// a batch is held still get their answers (another group worker starts
// after stuckAfter), and the held one gets its own once released.
func TestStuckBatchDoesNotHoldOthers(t *testing.T) {
	st := &stuckStore{memStore: newMemStore(), release: make(chan struct{})}
	g := start(t, st, func(c *Config) { c.Loops = 1 }) // (one collector for all)
	held, err := net.Dial("tcp", g.Addr())
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	if _, err := io.WriteString(held, cmd("SET", "stuck", "v")); err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond) // (the held batch is out)
	for i := range 3 {
		// One command at a time, on fresh connections: each must be
		// answered with the held batch still out, whether a loop pass or
		// the timer starts its group worker.
		start := time.Now()
		exchange(t, g.Addr(), cmd("SET", "k", "v")+cmd("GET", "k"), "+OK\r\n$1\r\nv\r\n")
		if d := time.Since(start); d > time.Second {
			t.Fatalf("round %d: answered after %v behind a held batch", i, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
	close(st.release)
	_ = held.SetReadDeadline(time.Now().Add(5 * time.Second))
	got := make([]byte, len("+OK\r\n"))
	if _, err := io.ReadFull(held, got); err != nil || string(got) != "+OK\r\n" {
		t.Fatalf("held command: got %q (%v)", got, err)
	}
}
