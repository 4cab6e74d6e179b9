// Package timing is ftkv's one timing configuration: every duration the
// servers, the coordinator and the client wait, retry or give up after is
// derived here from the failure timeout (the coordinator's -t), in the
// style of hashicorp/raft's DefaultConfig + Validate.
//
// The coordinator passes its failure timeout to every server it spawns
// (as a duration flag), and both sides call New with it, so the pairs that
// must agree across processes (a freeze and how long the coordinator waits
// for it; a re-seeding and how long the coordinator waits for its outcome)
// come from one definition.
package timing

import (
	"errors"
	"fmt"
	"reflect"
	"time"
)

// DefaultFailureTimeout is the coordinator's -t when none is given.
const DefaultFailureTimeout = 500 * time.Millisecond

// Config holds every derived duration. Build it with New, Default or Fast;
// a literal Config is only for tests that change one field, and must pass
// Validate.
type Config struct {
	// FailureTimeout: a server silent for this long is declared failed.
	FailureTimeout time.Duration

	// Liveness and fencing.

	// Heartbeat is the server's heartbeat period (timeout/5).
	Heartbeat time.Duration
	// Lease is how long a primary may serve after a renewal from the
	// coordinator or its secondary (timeout x 4/5: always shorter than
	// the timeout, so a failed server's lease has run out when it is
	// declared failed).
	Lease time.Duration
	// LeaseMargin is added to the former primary's lease before a
	// promoted secondary serves (lease/8: clock-rate differences).
	LeaseMargin time.Duration
	// Ping is the period of a primary's lease pings to its secondary (lease/4).
	Ping time.Duration

	// Connections.

	// Dial bounds a TCP connect between processes (timeout x 2).
	Dial time.Duration
	// Handshake bounds a link's HELLO exchange and its enrolment into an
	// event loop (timeout x 4).
	Handshake time.Duration
	// LinkConnect bounds connecting a replication link while a view is
	// applied (timeout x 10).
	LinkConnect time.Duration
	// WriteStall: a client's write to a server that takes no byte of it
	// for this long (between half of it and all of it) fails the
	// connection, and the client retries elsewhere (timeout x 20, 10 s by
	// default: a server that stops reading a connection for a while under
	// load is not one that is gone).
	WriteStall time.Duration
	// AnswerOverdue: a client's connection on which a request has waited
	// this long with no byte arriving has its server checked against a
	// fresh view; if the view no longer makes it a primary, the
	// connection is dropped and its requests go to their shards' new
	// primaries (timeout x 2: by then the coordinator has failed a
	// server that went silent). A host that drops off the network sends
	// no reset: without the check the requests waited out their context.
	AnswerOverdue time.Duration
	// RetryMin and RetryMax bound the back-off between reconnect attempts
	// of a replication link and between a client's retries (timeout/50
	// doubling up to timeout x 2/5).
	RetryMin, RetryMax time.Duration
	// ClientRetryMin is a client's first retry delay (timeout/100): a
	// client retries sooner than a link reconnects, since most of its
	// retries follow a redirect that succeeds at once.
	ClientRetryMin time.Duration
	// HeartbeatRetryMin and HeartbeatRetryMax bound the back-off of a
	// server reconnecting its heartbeat link (timeout/10 up to timeout x 2).
	HeartbeatRetryMin, HeartbeatRetryMax time.Duration
	// Poll is the period of the few loops that wait for a state change
	// by looking again (timeout/25).
	Poll time.Duration

	// Hand-back and re-seeding: each pair is one definition.

	// Freeze is how long a primary handing a shard back waits for its
	// writes in flight to commit (timeout x 4).
	Freeze time.Duration
	// FreezeHold is how long a freeze lasts if the hand-back view never
	// comes (timeout x 6); the primary then serves again.
	FreezeHold time.Duration
	// FreezeAsk is how long the coordinator waits for a freeze answer:
	// Freeze plus a margin for the round trip (timeout x 10).
	FreezeAsk time.Duration
	// SeedLimit bounds one re-seeding on the sending primary (timeout x 240,
	// 2 minutes by default).
	SeedLimit time.Duration
	// SeedAsk is how long the coordinator waits for a re-seeding's
	// outcome: SeedLimit plus a minute's worth of margin (timeout x 360).
	SeedAsk time.Duration
	// SeedStart is how long a primary waits for a re-seeding job it is
	// asked about to appear (the view that starts it may still be
	// connecting): timeout x 20.
	SeedStart time.Duration

	// Coordinator.

	// Control bounds one order to a server on its control port
	// (a view, a shutdown): timeout x 16.
	Control time.Duration
	// LinkStall: a primary's report that its secondary has not answered
	// for longer fails that secondary (timeout x 2). It is indirect
	// evidence: a busy machine holding up either side's event loop for
	// over a failure timeout is no partition (writes of 1 MiB values did,
	// and secondaries that answered every ping were failed).
	LinkStall time.Duration
	// Repush: a live member that has not confirmed the current view this
	// long after it was published gets it again (timeout x 4).
	Repush time.Duration
	// Report bounds how long a respawned local server may take to report
	// (timeout x 20); RemoteReport the same over ssh (timeout x 60).
	Report, RemoteReport time.Duration
	// RespawnMin and RespawnMax bound the back-off between failed respawns
	// of one server (timeout x 2/5 doubling up to timeout x 10).
	RespawnMin, RespawnMax time.Duration
	// KillWait is how long a killed process may take to be gone
	// (timeout x 6); ShutdownWait bounds an orderly shutdown of the
	// cluster (timeout x 10), ServerExit one server's exit after it
	// dumped (timeout x 4), StopSilence how long a server being stopped
	// may go without a heartbeat before it is killed undumped (timeout
	// x 2: stopped or hung; one dumping heartbeats on), DumpWait how
	// long one that heartbeats on may take to dump (timeout x 120).
	KillWait, ShutdownWait, ServerExit, StopSilence, DumpWait time.Duration
	// SSHConnect is ssh's ConnectTimeout unless the config sets one
	// (timeout x 10); SSHWaitDelay how long ssh's output pipes may
	// outlive it (timeout x 2); SSHWatch the period of a remote
	// process's liveness check (timeout x 2).
	SSHConnect, SSHWaitDelay, SSHWatch time.Duration
	// Start bounds starting the whole cluster (timeout x 30, 15 s by default).
	Start time.Duration
	// Recover is how long a started server whose process still runs may
	// take to report, past Start or Report: it may be rebuilding its
	// tables from a large log (timeout x 360, 3 minutes by default).
	Recover time.Duration
	// ShutdownDrain is how long a stopping server lets its writes in
	// flight commit before it dumps its tables (timeout x 2).
	ShutdownDrain time.Duration

	// The coordinators' Raft group (hashicorp/raft's timers).

	// RaftHeartbeat is how long a follower hears nothing from its leader
	// before it stands for election, and RaftElection how long a
	// candidate waits for votes (timeout x 2 each).
	RaftHeartbeat, RaftElection time.Duration
	// RaftLeaderLease is how long a leader that reaches no quorum goes
	// on believing it leads, and how long after its last confirmed
	// contact with a quorum it still renews servers' leases (the failure
	// timeout): with the lease it ends before a new leader, elected no
	// sooner than RaftHeartbeat after that contact, may fail a server on
	// silence (one failure timeout after it took over).
	RaftLeaderLease time.Duration
	// RaftSolo is all three for a single coordinator (timeout/5): it has
	// nobody to wait for, and `make run` should not wait a second for
	// its election.
	RaftSolo time.Duration
	// RaftCommit is how long the leader may batch log entries before
	// sending them (timeout/10).
	RaftCommit time.Duration
	// RaftApply bounds committing one decision to the group (timeout x 4):
	// a decision not committed by then is dropped and taken again.
	RaftApply time.Duration
}

// New derives every duration from the failure timeout t (zero: the default).
func New(t time.Duration) Config {
	if t <= 0 {
		t = DefaultFailureTimeout
	}
	c := Config{
		FailureTimeout:    t,
		Heartbeat:         t / 5,
		Lease:             t * 4 / 5,
		Dial:              2 * t,
		Handshake:         4 * t,
		LinkConnect:       10 * t,
		WriteStall:        20 * t,
		AnswerOverdue:     2 * t,
		RetryMin:          t / 50,
		RetryMax:          t * 2 / 5,
		ClientRetryMin:    t / 100,
		HeartbeatRetryMin: t / 10,
		HeartbeatRetryMax: 2 * t,
		Poll:              t / 25,
		Freeze:            4 * t,
		FreezeHold:        6 * t,
		FreezeAsk:         10 * t,
		SeedLimit:         240 * t,
		SeedAsk:           360 * t,
		SeedStart:         20 * t,
		Control:           16 * t,
		Repush:            4 * t,
		LinkStall:         2 * t,
		Report:            20 * t,
		RemoteReport:      60 * t,
		RespawnMin:        t * 2 / 5,
		RespawnMax:        10 * t,
		KillWait:          6 * t,
		ShutdownWait:      10 * t,
		ServerExit:        4 * t,
		StopSilence:       2 * t,
		DumpWait:          120 * t,
		SSHConnect:        10 * t,
		SSHWaitDelay:      2 * t,
		SSHWatch:          2 * t,
		Start:             30 * t,
		Recover:           360 * t,
		ShutdownDrain:     2 * t,
		RaftHeartbeat:     2 * t,
		RaftElection:      2 * t,
		RaftLeaderLease:   t,
		RaftSolo:          t / 5,
		RaftCommit:        t / 10,
		RaftApply:         4 * t,
	}
	c.LeaseMargin = c.Lease / 8
	c.Ping = c.Lease / 4
	return c
}

// Default is New(DefaultFailureTimeout).
func Default() Config { return New(DefaultFailureTimeout) }

// Fast is a preset for tests: a 200 ms failure timeout, so failovers,
// hand-backs and back-offs run in a fraction of the default times.
func Fast() Config { return New(200 * time.Millisecond) }

// Bounds of the failure timeout (the coordinator's -t).
const (
	MinFailureTimeout = 10 * time.Millisecond
	MaxFailureTimeout = time.Hour
)

// Validate reports a configuration that would break a guarantee: a lease
// that outlives the failure timeout (a failed primary could still serve
// after its secondary was promoted), a heartbeat too slow to renew the
// lease, or a pair whose waiting side gives up before the other side's limit.
func (c Config) Validate() error {
	var errs []error
	if c.FailureTimeout < MinFailureTimeout || c.FailureTimeout > MaxFailureTimeout {
		errs = append(errs, fmt.Errorf("failure timeout %s out of range [%s, %s]", c.FailureTimeout, MinFailureTimeout, MaxFailureTimeout))
	}
	if c.Lease <= 0 || c.Lease > c.FailureTimeout {
		errs = append(errs, fmt.Errorf("lease %s must be positive and at most the failure timeout %s", c.Lease, c.FailureTimeout))
	}
	if c.Heartbeat <= 0 || c.Heartbeat >= c.Lease {
		errs = append(errs, fmt.Errorf("heartbeat %s must be positive and shorter than the lease %s", c.Heartbeat, c.Lease))
	}
	if c.Ping <= 0 || c.Ping >= c.Lease {
		errs = append(errs, fmt.Errorf("ping period %s must be positive and shorter than the lease %s", c.Ping, c.Lease))
	}
	if c.FreezeHold <= c.Freeze {
		errs = append(errs, fmt.Errorf("freeze hold %s must outlast the freeze %s", c.FreezeHold, c.Freeze))
	}
	if c.FreezeAsk <= c.Freeze {
		errs = append(errs, fmt.Errorf("the coordinator's freeze wait %s must outlast the freeze %s", c.FreezeAsk, c.Freeze))
	}
	if c.Recover < c.Start || c.Recover < c.RemoteReport {
		errs = append(errs, fmt.Errorf("the wait for a recovering server %s must be at least the start limit %s and the remote report limit %s", c.Recover, c.Start, c.RemoteReport))
	}
	if c.SeedAsk <= c.SeedLimit {
		errs = append(errs, fmt.Errorf("the coordinator's re-seeding wait %s must outlast the re-seeding limit %s", c.SeedAsk, c.SeedLimit))
	}
	if c.RetryMin <= 0 || c.RetryMax < c.RetryMin || c.ClientRetryMin <= 0 || c.RetryMax < c.ClientRetryMin || c.HeartbeatRetryMin <= 0 || c.HeartbeatRetryMax < c.HeartbeatRetryMin ||
		c.RespawnMin <= 0 || c.RespawnMax < c.RespawnMin {
		errs = append(errs, errors.New("every back-off needs 0 < min <= max"))
	}
	if c.RaftLeaderLease+c.Lease >= c.RaftHeartbeat+c.FailureTimeout || c.RaftLeaderLease > c.RaftHeartbeat {
		errs = append(errs, fmt.Errorf("the coordinators' leader lease %s plus a server's lease %s must end before the Raft heartbeat timeout %s plus the failure timeout %s, and the leader lease be at most the heartbeat timeout",
			c.RaftLeaderLease, c.Lease, c.RaftHeartbeat, c.FailureTimeout))
	}
	for _, f := range c.Fields() {
		if f.D <= 0 {
			errs = append(errs, fmt.Errorf("%s must be positive", f.Name))
		}
	}
	return errors.Join(errs...)
}

// Field is one named duration of a Config.
type Field struct {
	Name string
	D    time.Duration
}

// Fields lists every duration of c by its field name, in declaration
// order (for logs, tests and the README's table).
func (c Config) Fields() []Field {
	v := reflect.ValueOf(c)
	t := v.Type()
	out := make([]Field, 0, t.NumField())
	for i := range t.NumField() {
		out = append(out, Field{Name: t.Field(i).Name, D: v.Field(i).Interface().(time.Duration)})
	}
	return out
}
