// Package hostile holds the probes an operator runs to check that no client
// can take an ftkv server down: each probe plays a hostile or careless
// client against one server of any cluster (found from the coordinator's
// status, or given by address), for a bounded time, and reports what it did
// and what the server did to it.
//
//	res, err := hostile.Run(ctx, "slow-reader", hostile.Config{Coord: "127.0.0.1:7000", Duration: 10 * time.Second})
//	fmt.Println(res)
//
// The probes (Names lists them in order):
//
//	slow-reader  one PUT of a Size-byte value (1 MiB), then GETs of it pipelined
//	             on Conns connections (4) as fast as the socket takes them, never read
//	             (Writes: each GET followed by a PUT of the value)
//	idle-conns   Conns connections (20000) to the client port, held open
//	half-frames  Conns connections (1000) that send the first Fill bytes (30) of a
//	             frame and then nothing
//	huge-length  frames whose length prefix says 4 GiB, Conns times (20) on each of
//	             the client, control and peer ports
//	unauth-big   on the control and peer ports, without HELLO: a header announcing a
//	             4 MiB frame and nothing more, then whole 4 MiB frames on Conns (8)
//	             connections until Duration
//	bad-seqs     pipelined writes with random client ids, and with one client id and
//	             descending sequence numbers, floor 0 forever
//	one-shot     Clients (100000) short-lived clients, Conns (8) at a time, each one
//	             PUT with a fresh client id
//	write-flood  PUTs of a Size-byte value (1 KiB) pipelined on Conns connections (200),
//	             Window (4096) unanswered on each, answers read
//
// A probe never reads more than it must and never retries against a server
// that closed it: what the server did is the measurement. RSS samples a
// server's resident memory on this machine (/proc/<pid>/status) before,
// during and after a probe.
package hostile
