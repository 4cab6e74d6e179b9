package decide

import "ftkv/wire"

// Action is an order for the shell, returned by Core.Step.
type Action interface{ isAction() }

// Publish makes View durable (the shell may raise its Epoch, e.g. to carry
// the Raft term) and reports Published or PublishFailed. At most one
// Publish is outstanding. Pushing the view to the members follows as Push
// actions once it is published.
type Publish struct {
	View wire.View
	Why  string // for the log: "failover", "re-seed", "seeded", "hand-back"
	// Detail says, for the log, which members a failover fails and why
	// ("server 1: no heartbeat for 612ms").
	Detail string
}

// Push sends View to incarnation Inc of member ID; the shell reports
// PushResult. Pushes are independent of each other: run them concurrently.
type Push struct {
	ID   int
	Inc  uint64
	View wire.View
}

// Kill kills incarnation Inc of member ID (in the background: a remote
// host may take a while to answer). Nothing is reported back beyond the
// ProcessExited its watcher sends.
type Kill struct {
	ID  int
	Inc uint64
}

// Spawn starts incarnation Inc of member ID on Host after killing
// incarnation Old if it still runs (waiting up to the kill wait). The
// first heartbeat of (ID, Inc) is its success, SpawnFailed its failure;
// the shell reports one of them within the report timeout.
type Spawn struct {
	ID   int
	Inc  uint64
	Old  uint64
	Host string
}

// AskSeed asks incarnation PrimaryInc of Primary, the primary of Shard,
// whether it re-seeded incarnation Inc of member ID; the shell reports
// SeedResult. (Address that incarnation, not whatever member Primary
// runs by the time the question goes out: a respawned primary never
// seeded anyone.)
type AskSeed struct {
	ID         int
	Inc        uint64
	Shard      int
	Primary    int
	PrimaryInc uint64
	Epoch      uint64 // the view that made it re-seed Shard (its SeedResult carries it back)
}

// Freeze freezes Shard on its current primary (incarnation PrimaryInc of
// member Primary) for a hand-back computed at Epoch; the shell reports
// FreezeResult.
type Freeze struct {
	Shard      int
	Primary    int
	PrimaryInc uint64
	Epoch      uint64
}

func (Publish) isAction() {}
func (Push) isAction()    {}
func (Kill) isAction()    {}
func (Spawn) isAction()   {}
func (AskSeed) isAction() {}
func (Freeze) isAction()  {}
