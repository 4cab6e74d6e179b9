package decide

import (
	"fmt"
	"time"

	"ftkv/wire"
)

// NodeState is where one member stands in the failover cycle.
type NodeState uint8

// The states of a member. Serving, Reseeding, Seeded and Condemned are
// members of the current view (as serving or re-seeding); Failed,
// Respawning and Registered are down in it.
const (
	// Serving: in the view as serving its roles.
	Serving NodeState = iota
	// Reseeding: in the view as the re-seeding secondary of its home
	// shards; the outcome is asked of every seeding primary.
	Reseeding
	// Seeded: every seeding primary reported success; to be published
	// as serving.
	Seeded
	// Condemned: its process exited or its re-seeding failed; failed
	// over by the next decision. Its heartbeats renew no lease.
	Condemned
	// Failed: declared failed (or its respawn failed); respawned once
	// its back-off has passed. Its heartbeats renew no lease.
	Failed
	// Respawning: a Spawn of Inc is out.
	Respawning
	// Registered: incarnation Inc heartbeats; to be added as re-seeding.
	Registered
)

var stateNames = [...]string{"serving", "reseeding", "seeded", "condemned", "failed", "respawning", "registered"}

func (s NodeState) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return fmt.Sprintf("NodeState(%d)", s)
}

// inView reports whether a member in state s belongs to the current view
// as a live member (serving or re-seeding).
func (s NodeState) inView() bool { return s <= Condemned }

// Node is the core's record of one member.
type Node struct {
	ID    int
	State NodeState
	// Inc is the newest incarnation: the one in the view, or the one
	// spawned since.
	Inc  uint64
	Host string
	// HB is the last heartbeat of Inc (addresses, PID for the view).
	HB        wire.Heartbeat
	LastSeen  time.Time
	Confirmed uint64 // highest epoch Inc confirmed (heartbeat or push)

	Backoff   time.Duration
	NextSpawn time.Time
	Failures  int  // respawns in a row that failed
	served    bool // incarnation Inc has served (its failure respawns at once)

	pushAt  time.Time // no push before (a push in flight or failed)
	links   []Link    // link reports of the last heartbeat
	linksEp uint64    // the epoch those reports were made in
	linksAt time.Time // when they came
	// backAt: when it was first heard here, or again after a silence
	// of over half the failure timeout (from silentFrom; zero: first
	// heard): its primaries' reports of their links to it, from before,
	// may tell of the silence (ofSilence).
	backAt, silentFrom time.Time
	seedWait           []int            // shards whose re-seed outcome is awaited
	seedAt             map[int]seedView // shard -> the view that asked for its re-seed outcome
	unjoin             []int            // shards it joined (rule 4b) whose re-seeding failed: it is dropped as their secondary
	joinAt             time.Time        // no join (rule 4b) before
	joinFail           int              // joins in a row that failed or were dropped (the back-off doubles with each, up to 8 × RespawnMax)
	prev               NodeState        // state before a failover not yet published
	// inherited: New found it re-seeding, or respawned since the view
	// (a re-seeding or respawn of the previous leader's, its outcome
	// unknown here): the failover that replaces it says so.
	inherited bool
	resume    bool // New found it re-seeding: the outcome is to be asked
}

// joinFailed puts off the next join of nd (rule 4b): a join that failed
// or was dropped (a link its primary cannot connect) would stall that
// shard's writes again while its view is tried, so the wait doubles with
// each in a row, from RespawnMax up to 8 × RespawnMax.
func (nd *Node) joinFailed(now time.Time, base time.Duration) {
	nd.joinAt = now.Add(base << min(nd.joinFail, 3))
	nd.joinFail++
}

// seedView is the view that asked for a re-seeding's outcome: its epoch,
// and when it was published here. The shard's primary was given this
// secondary by that view, no earlier. For a re-seeding this leader took
// over, the view it took over, and At zero: the view that gave the
// primary this secondary may be older, published when is not known.
type seedView struct {
	Epoch uint64
	At    time.Time
}

// askSeed records that nd's re-seeding of shard, asked for by view v
// (published at now), is awaited, and returns the action that asks for
// its outcome.
func (nd *Node) askSeed(v wire.View, shard int, now time.Time) AskSeed {
	if nd.seedAt == nil {
		nd.seedAt = map[int]seedView{}
	}
	nd.seedAt[shard] = seedView{Epoch: v.Epoch, At: now}
	pl := v.Shards[shard]
	return AskSeed{ID: nd.ID, Inc: nd.Inc, Shard: shard, Primary: int(pl.Primary), PrimaryInc: v.Servers[pl.Primary].Incarnation, Epoch: v.Epoch}
}
