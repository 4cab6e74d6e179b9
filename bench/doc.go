// Package bench is ftkv's load generator, the engine behind bin/bench.
//
// One workload loop drives any Target: Connections requesters each issue
// batches of Pipeline operations (gets with probability Ratio, puts
// otherwise) on keys "key:%08d" drawn uniformly from [0, Keys), with values
// of ValueSize random bytes. Every operation's latency is recorded in a
// per-requester HDR histogram (microseconds), merged once at the end, so the
// hot path takes no lock. Two targets exist: FTKV (an ftkv cluster through
// package client, one client per requester) and Redis (a minimal RESP client
// on the codec of package bench/resp, so both systems see the identical
// workload and the same measurement code).
//
//	res, err := bench.Run(ctx, bench.Config{Connections: 50, Duration: 10 * time.Second},
//		bench.FTKV("127.0.0.1:7000"))
//	if err != nil { ... }
//	res.WriteText(os.Stdout)
//
// Unless Preload is PreloadOff, a run whose Ratio is above zero first writes
// every key once so gets hit; that phase is reported separately in
// Result.Preload and not counted in the measurement.
//
// Command is bin/bench itself (modes run, failover, reseed, memory and
// compare); the leaves bench/resp, bench/chart and bench/proc hold the
// RESP codec, the chart and the local process helpers.
package bench
