package decide

import (
	"errors"
	"fmt"
	"time"

	"ftkv/timing"
)

// Config holds the durations and limits the rules depend on.
type Config struct {
	// FailureTimeout: a member silent for longer is failed (one per
	// round). A tick more than FailureTimeout/2 after the previous one
	// does not judge silence.
	FailureTimeout time.Duration
	// LinkStall: a link its primary reports down for longer fails the
	// secondary (or drops it, when it holds the last copy of a shard).
	LinkStall time.Duration
	// Repush: a live member that has not confirmed the current view this
	// long after its publication is sent it again.
	Repush time.Duration
	// PushRetry: how soon a failed push to a member may be retried.
	PushRetry time.Duration
	// FreezeRetry: how soon a failed hand-back freeze may be retried.
	FreezeRetry time.Duration
	// RespawnMin and RespawnMax bound the doubling back-off between
	// failed respawns of one member.
	RespawnMin, RespawnMax time.Duration
	// SpareAfter is how many respawns in a row must fail before a member
	// moves to a spare host (if any).
	SpareAfter int
}

// FromTiming returns the Config of the coordinator's timing configuration.
func FromTiming(t timing.Config) Config {
	return Config{
		FailureTimeout: t.FailureTimeout,
		LinkStall:      t.LinkStall,
		Repush:         t.Repush,
		PushRetry:      t.Poll,
		FreezeRetry:    t.Heartbeat,
		RespawnMin:     t.RespawnMin,
		RespawnMax:     t.RespawnMax,
		SpareAfter:     3,
	}
}

// Validate reports a Config the rules cannot work with.
func (c Config) Validate() error {
	switch {
	case c.FailureTimeout <= 0:
		return errors.New("decide: FailureTimeout must be positive")
	case c.LinkStall < c.FailureTimeout:
		return fmt.Errorf("decide: LinkStall %s is shorter than the failure timeout %s", c.LinkStall, c.FailureTimeout)
	case c.Repush <= 0 || c.PushRetry <= 0 || c.FreezeRetry <= 0:
		return errors.New("decide: Repush, PushRetry and FreezeRetry must be positive")
	case c.RespawnMin <= 0 || c.RespawnMax < c.RespawnMin:
		return fmt.Errorf("decide: respawn back-off %s..%s is not a range", c.RespawnMin, c.RespawnMax)
	case c.SpareAfter <= 0:
		return errors.New("decide: SpareAfter must be positive")
	}
	return nil
}
