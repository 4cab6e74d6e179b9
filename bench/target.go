package bench

import "context"

// Target is a system under load. The loop asks it for one Requester per
// connection before the clock starts.
type Target interface {
	// Name identifies the target in results, e.g. "ftkv" or "redis".
	Name() string
	// Addr is the address the target was given, for the report.
	Addr() string
	// NewRequester opens one connection's worth of client.
	NewRequester(ctx context.Context) (Requester, error)
}

// Requester issues batches of operations. One goroutine uses it at a time.
type Requester interface {
	// Do sends every op of batch, the whole batch in flight at once, and
	// waits for their answers or ctx's end. It sets each op's outcome
	// (Done, Latency, Miss, Err), the latency measured per op. A non-nil
	// error means the requester is broken: the loop counts the ops left
	// without an outcome as failed, closes it and opens another.
	Do(ctx context.Context, batch []Op) error
	// Close releases the requester's connections.
	Close() error
}

// SharedTarget is a Target whose requesters can be shared by goroutines,
// as a Go client is shared by the goroutines of a program
// (Config.Goroutines > 1).
type SharedTarget interface {
	Target
	// NewSharedRequester opens a requester whose Do may be called by many
	// goroutines at once, each with a batch of one operation. Its Do
	// reports failures per operation and never returns an error: the
	// client behind it reconnects by itself.
	NewSharedRequester(ctx context.Context) (Requester, error)
}
