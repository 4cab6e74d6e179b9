// Package gateway is ftkv's front door for clients nobody here wrote: a
// stateless process that speaks the Redis protocol (RESP2, and RESP3 after
// HELLO 3) so that redis-cli, redis-benchmark and Redis client libraries
// work unchanged, and an HTTP API (GET/PUT/DELETE /v1/kv/{key},
// GET /v1/status). Everything is forwarded through the Go client library,
// so the gateway inherits its pipelining, view caching, failover retries
// and exactly-once writes; any key goes through any gateway (clients use
// Redis's non-cluster mode), and as many gateways as wanted may run.
//
// The RESP port runs on gnet event loops under the servers' client limits
// (package limits: connections, queued output, unread input, commands
// in flight per connection). The loops only parse (arrays of bulk strings
// as Redis does, a length over the request limit refused as soon as it is
// read; inline commands with redcon's parser: its array parser, v1.6.4,
// panics on a negative bulk length — nine bytes, "*1\r\n$-2\r\n", took the
// whole gateway down — and waits for any length announced); each
// connection's commands
// run in order on one
// goroutine at a time, which writes the answers with AsyncWrite, so a
// pipeline is answered in order and no loop waits for the cluster. Plain
// GETs and SETs go to the cluster as one client batch (one write and one
// round trip per server): those of distinct keys pipelined on one
// connection, and those of every connection of an event loop that sent
// while the loop's previous batch was out (one batch at a time per loop,
// so batches grow with the load; one out for longer than a few
// milliseconds does not hold the next); commands on one key of one
// connection keep their order.
//
// Commands: PING, ECHO, GET, SET (NX, XX, GET), SETNX, GETSET, DEL, EXISTS,
// MGET, MSET (not atomic across shards), APPEND, STRLEN, INCR, DECR,
// INCRBY, DECRBY, DBSIZE, INFO, SELECT 0, QUIT, HELLO, CLIENT
// SETNAME/GETNAME/SETINFO/ID, CONFIG GET, COMMAND (COUNT, DOCS, INFO,
// LIST). Read-modify-write commands (SET with XX or GET, GETSET, APPEND,
// INCR…) are compare-and-swap loops: each is linearizable, its swap being
// its linearization point. ftkv has no expiry: SET's EX, PX, EXAT, PXAT
// and KEEPTTL answer an error. Errors of the cluster become Redis errors:
// CLUSTERDOWN when a shard has no live copy, TRYAGAIN when the cluster
// did not answer within the gateway's timeout (for a write: it may then
// have been applied).
package gateway
