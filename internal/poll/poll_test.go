package poll

import (
	"context"
	"sync/atomic"
	"testing"
	"time"
)

// The context is cancelled once the condition holds, and the condition is
// no longer asked once the context ended otherwise.
func TestCancelWhen(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var asked atomic.Int32
	done := make(chan struct{})
	go func() {
		CancelWhen(ctx, cancel, time.Millisecond, func() bool { return asked.Add(1) == 3 })
		close(done)
	}()
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("not cancelled once the condition held")
	}
	<-done
	if n := asked.Load(); n != 3 {
		t.Fatalf("condition asked %d times, want 3", n)
	}

	ctx, cancel = context.WithCancel(context.Background())
	cancel()
	CancelWhen(ctx, func() { t.Error("cancel called for an ended context") }, time.Millisecond, func() bool { return true })
}
