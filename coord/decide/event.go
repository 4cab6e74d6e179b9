package decide

import (
	"time"

	"ftkv/wire"
)

// Event is an input to Core.Step.
type Event interface{ isEvent() }

// Tick is the shell's periodic wake-up (every heartbeat period / 2). Only a
// tick judges silence, and only when it follows the previous tick by at
// most FailureTimeout/2 (otherwise the shell's loop was held up and
// heartbeats may be queued unread).
type Tick struct {
	Now time.Time
	// Unread are members silent for over the failure timeout that have
	// bytes waiting unread on their heartbeat links (the shell's event
	// loop that reads them was held up, not the ticks): their heartbeats
	// came and are not counted yet, so this tick does not judge them
	// silent. (The shell names a member for a bounded time only: a link
	// it stopped reading for good must not keep one from failing.)
	Unread []int
}

// Heartbeat is a server's report, received at Now. The first heartbeat of a
// respawned incarnation registers it (its addresses and PID are taken from
// HB). Ask Core.Lease whether to renew the sender's lease.
type Heartbeat struct {
	Now time.Time
	HB  wire.Heartbeat
	// Links are the sender's replication links to its secondaries that
	// are down (one per shard it leads), measured on its monotonic clock.
	Links []Link
}

// Link reports that the primary of Shard has been unable to replicate to
// incarnation Incarnation of Secondary (a member id) for DownFor.
type Link struct {
	Shard       int
	Secondary   int
	Incarnation uint64 // a report about a former incarnation condemns nobody
	DownFor     time.Duration
}

// ProcessExited reports that incarnation Inc of member ID is gone.
type ProcessExited struct {
	ID  int
	Inc uint64
}

// SpawnFailed reports that Spawn of (ID, Inc) failed: the process could
// not be started, exited during start-up or did not report in time. The
// first heartbeat of (ID, Inc) is its success.
type SpawnFailed struct {
	ID  int
	Inc uint64
	Err error
}

// Published reports that the view of the last Publish is durable (a Raft
// commit) with epoch Epoch, which is the proposed epoch or a larger one
// (0: the proposed one). An Epoch not above the current one is ignored.
type Published struct {
	Epoch uint64
	// Current is the record of current copies committed with the view
	// (nil: the core works it out, Current.Next). The shell's knows
	// more: which primaries were dead before the view was committed.
	Current Current
}

// PublishFailed reports that the view of the last Publish was not made
// durable (not the leader any more, a failed write): it is dropped and
// decided again at the next tick.
type PublishFailed struct{ Err error }

// PushResult is the outcome of Push to (ID, Inc) of the view with Epoch.
type PushResult struct {
	ID    int
	Inc   uint64
	Epoch uint64
	OK    bool
}

// SeedResult is the outcome of AskSeed: whether the primary of Shard
// re-seeded (ID, Inc) completely.
type SeedResult struct {
	ID    int
	Inc   uint64
	Shard int
	Epoch uint64 // AskSeed's (0: any)
	OK    bool
	Err   error
}

// FreezeResult is the outcome of Freeze of Shard at Epoch.
type FreezeResult struct {
	Shard int
	Epoch uint64
	OK    bool
}

func (Tick) isEvent()          {}
func (Heartbeat) isEvent()     {}
func (ProcessExited) isEvent() {}
func (SpawnFailed) isEvent()   {}
func (Published) isEvent()     {}
func (PublishFailed) isEvent() {}
func (PushResult) isEvent()    {}
func (SeedResult) isEvent()    {}
func (FreezeResult) isEvent()  {}
