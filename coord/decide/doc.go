// Package decide is the coordinator's failover logic as a pure state
// machine, in the style of etcd-io/raft's Step: a Core takes one Event at a
// time (a tick, a heartbeat, a process exit, the outcome of an action) and
// returns the Actions the shell must carry out (publish a view, push it to
// a member, kill, spawn, ask for a re-seed outcome, freeze a shard). It does
// no I/O, reads no clock (time arrives in events), starts no goroutines and
// draws no random numbers, so every failover rule can be tested step by
// step and by simulation.
//
// The rules, one decision at a time, each decision a new view:
//
//  1. failure: a member whose process exited (or whose re-seeding failed)
//     is failed over; so is one member per round whose log reports a
//     failure (a full disk), or silent for longer than
//     the failure timeout, or one secondary its primary reports it cannot
//     replicate to for that long while both still heartbeat. Suspicion
//     (silence, a broken link) never condemns the last complete copy of a
//     shard, and a round that follows a stall of the shell's loop does not
//     judge silence. A failed member's shards move to their serving
//     secondaries, or become unavailable when no complete copy is left;
//  2. a failed member is respawned: at once, unless its spawn failed, it
//     exited before it served, or its log failed (a full disk) before it
//     served: then after a doubling back-off, moving to a spare host after
//     Config.SpareAfter such failures in a row;
//  3. restore: a shard that lost both copies comes back from the servers'
//     logs once both servers of its home pair registered new incarnations:
//     the one reporting the further complete copy (Heartbeat.Durable)
//     leads it, re-seeding like a respawned member (step 4);
//  4. re-seed: a respawned incarnation that registered becomes the
//     re-seeding secondary of its home shards that still have a primary;
//     4b. join: a shard led alone while the other server of its home
//     pair serves (a restore chose its partner after it was back in the
//     view) gets that server as its re-seeding secondary; 4c. unjoin: if
//     that re-seeding fails, the member is only dropped as that shard's
//     secondary (it served: it is not condemned) and joins again after
//     Config.RespawnMax;
//  5. seeded: when every seeding primary reported success it is serving
//     (a failure condemns the incarnation: it is failed and respawned);
//  6. hand-back: a shard led by its home secondary while its home server
//     serves as its secondary is frozen, then the roles are swapped back.
//
// Steps 3-6 wait until every live member has confirmed the current epoch;
// every member that has not confirmed it Config.Repush after publication
// is sent the view again (all of them, not only the first).
//
// Only one view is in flight at a time: after a Publish the core decides
// nothing until the shell reports Published or PublishFailed. A view's
// Epoch is always the current epoch + 1; the shell may stamp a larger one
// (for instance one carrying the Raft term) and reports it in Published.
package decide
