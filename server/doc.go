// Package server is ftkv's storage server. It listens on three ports, all
// served by gnet event loops:
//
//   - the client port: Get/Put/Delete/CAS/Append for the shards it leads;
//   - the peer port: replication from the primaries of the shards it copies;
//   - the control port: views and shutdown orders from the coordinator.
//
// Each shard it holds is one table. For a shard it leads, writes go through
// one sequencer that deduplicates retries, computes the new value, ships the
// write to the secondary over an ordered, batched link and applies it to the
// table (making it visible to reads) only when the secondary has acknowledged
// it. Heartbeats go to the coordinator every Timing.Heartbeat.
//
// # Files
//
//   - server.go: Config, Server, Run (listeners), shutdown.
//   - limits.go: each port's client limits (accepting through
//     internal/connlimit: connections, queued output, half frames).
//   - gc.go: the collector's headroom follows the live heap.
//   - view.go: applying a view (roles kept, lost and taken over).
//   - heartbeat.go: the heartbeat link to the coordinator.
//   - lease.go: the lease tracker (coordinator's and secondary's leases).
//   - primary.go: a led shard: leases, freeze, drain, close.
//   - sequence.go: the write path: sequencing, commit, answers.
//   - link.go: the replication link, from dialling to reconnecting.
//   - reply.go: answers batched per connection.
//   - seed.go: re-seeding, sender and receiver.
//   - secondary.go, peer.go: the copies this server keeps, the peer port.
//   - handlers.go, control.go: the client and control ports.
//   - dedup.go, session.go, session_expiry.go, dedup_seed.go: exactly-once
//     sessions: claims, one client's records, expiry and limits, re-seeding.
//   - table.go, kvmap.go: a shard's keys; dump.go: shutdown dumps.
//   - durable.go: the write-ahead log (-data-dir): what is logged when,
//     recovery at New, the identity file, disk errors.
//   - snapshot.go: snapshots of the tables in the background, the log
//     truncated behind them; recovery loads the latest one first.
//
// # Locks
//
// Each lock guards the state of its own file; a component gets what it
// needs from others at construction (primaryEnv, linkOwner) instead of
// reaching into them. The locks, and which may be held while taking which
// (an arrow: the left one may be held while taking the right one; never
// the other way):
//
//	Server.viewMu   serialises applyView; held across a whole view change
//	Server.secMu    sec, tails; held while a peer HELLO checks the view and
//	                while applyView publishes a view and fences stale links
//	Server.mu       tables, prims
//	secState.mu     one copied shard; held while a read of its link is applied
//	primary.mu      one led shard: pending, inflight (and who waits for each
//	                entry), nextIndex, link, freeze
//	replLink.mu     a link's write buffer
//	dedup.mu        one stripe (of 64, by client id) of the client sessions; one at a time
//	leaseTracker.mu sent-times of heartbeats or pings
//	stripe.mu       one stripe of a table (read-write)
//	Server.hwMu     highWater
//
//	viewMu -> secMu -> Server.mu -> primary.mu -> replLink.mu, dedup.mu, leaseTracker.mu, stripe.mu
//	secMu -> secState.mu -> dedup.mu, stripe.mu
//
//	primary.mu, secState.mu -> wal.Log.mu (Append; its callbacks run on the
//	                log's goroutine with no lock held and take primary.mu or secState.mu)
//
// replLink.mu, dedup.mu, leaseTracker.mu, stripe.mu and hwMu are leaves. A
// primary is closed outside Server.mu and primary.mu. Event loops hold no lock while they flush
// answers or call a link's owner.
package server
