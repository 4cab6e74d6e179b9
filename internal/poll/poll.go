// Package poll cancels work once a condition that nothing signals comes
// true: a primary's dial that a newer view made pointless, a publication
// whose member's log failed meanwhile.
package poll

import (
	"context"
	"time"
)

// CancelWhen calls cancel as soon as cond reports true, checking it every
// period until ctx ends. It blocks: run it in its own goroutine.
func CancelWhen(ctx context.Context, cancel context.CancelFunc, period time.Duration, cond func() bool) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if ctx.Err() != nil {
			return // (both were ready: the context's end wins)
		}
		if cond() {
			cancel()
			return
		}
	}
}
