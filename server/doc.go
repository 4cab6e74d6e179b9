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
// it. Heartbeats go to the coordinator every HeartbeatInterval.
package server
