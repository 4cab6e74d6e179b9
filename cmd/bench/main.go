// Command bench is ftkv's load generator: it drives an ftkv cluster (or,
// for comparison, a Redis server) with a get/put workload and reports
// throughput and latency percentiles. See package ftkv/bench.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"ftkv/bench"
	"ftkv/client"
	"ftkv/internal/cli"
	"ftkv/internal/flagcheck"
	"ftkv/internal/tlsconf"
)

const usage = `usage: bench -h <coord_host> -p <coord_port> [flags]
       bench -target redis [-redis host:port] [-redis-wait 1] [flags]
       bench -mode failover|reseed|memory -h <coord_host> -p <coord_port> [flags]
       bench -mode probe -probe NAME -victim ID -h <coord_host> -p <coord_port> [flags]
       bench -mode compare [-check] RESULTS.jsonl...

Modes (-mode):
  run       (default) a get/put workload for -duration (or -n operations);
            prints throughput and latency percentiles. ctrl+c stops early and
            still reports. -csv/-chart write the per-interval time series;
            -kill-after kill -9s a primary mid-run (ftkv) and marks it.
  failover  kill -9 the primary of shard 0, 1, 2, ... -kills times; each time
            measure the write gap (kill until a write to that shard, sent
            after the process is gone, is acknowledged) and wait until the
            status shows everything serving again; print p50/p99/max.
  reseed    load -entries entries, kill -9 server -victim, time until the
            status shows it serving again; entries/s from the status and,
            with -server-log (the bin/coord -l file), from the neighbours'
            "re-seeding sent" lines.
  memory    read every server's RSS (/proc/<pid>/status), load -entries
            entries, wait -settle, read again: bytes per stored entry (each
            server holds a primary and a secondary copy) beyond key+value.
  probe     run a hostile client (-probe NAME, below) against server -victim
            for -duration while honest clients run the workload; print
            whether the server survived, failovers (epoch moves), the
            largest age of its last heartbeat, its RSS before/peak/after
            (local servers) and the honest clients' throughput, errors and
            latency. Exit 1 if the server died or a failover happened.
              slow-reader  one PUT of a 1 MiB value, then GETs of it pipelined
                           on 4 connections as fast as they go, never read
              idle-conns   20,000 idle connections to the client port
              half-frames  1,000 connections that each send half a frame
              huge-length  frames announcing 4 GiB on the client, peer and
                           control ports (20 connections each)
              unauth-big   4 MiB frames before authentication on the control
                           and peer ports (8 connections each)
              bad-seqs     writes with random client ids, and with descending
                           sequence numbers and floor 0, pipelined
              one-shot     100,000 short-lived clients, one put each (8 at a
                           time, until -duration)
              write-flood  PUTs of 1 KiB pipelined on 200 connections, 4,096
                           unanswered on each, answers read
  compare   read results of "bench -json -label L" runs (one per line) and
            print medians per label and target with ftkv/reference ratios;
            -check fails unless every row has numbers.
  Requesters (-c) keep operations in flight two ways: -P N sends batches
  of N (explicit pipelining: client.Batch, or N Redis commands written at
  once), -goroutines G shares the requester's client between G goroutines
  each calling Get or Put (the usual shape of a Go program; against Redis a
  github.com/redis/rueidis client, which pipelines concurrent calls).
  In reseed and memory modes -P defaults to 16 (a faster load) unless
  -goroutines is set.
  Only local server processes (host localhost, an ftkv server with that id)
  are ever killed.

flags:
`

func main() {
	if p := os.Getenv("FTKV_CPUPROFILE"); p != "" {
		// Profiling aid: a CPU profile of the load generator itself.
		if f, err := os.Create(p); err == nil && pprof.StartCPUProfile(f) == nil {
			code := run(os.Args[1:], os.Stdout, os.Stderr)
			pprof.StopCPUProfile()
			os.Exit(code)
		}
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses args into a bench.Command, runs it and returns the exit
// status: 0, 1 when the command failed, 2 for a bad flag or argument.
func run(args []string, stdout, stderr io.Writer) int {
	c := bench.Command{Run: bench.DefaultConfig()}
	def := c.Run
	cfg := &c.Run
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&c.Host, "h", "127.0.0.1", "coordinator host, or the coordinators' client addresses host:port,host:port,...")
	fs.IntVar(&c.Port, "p", 0, "coordinator client port (required for -target ftkv)")
	fs.StringVar(&c.Target, "target", "ftkv", "system to load: ftkv or redis")
	fs.StringVar(&c.RedisAddr, "redis", "127.0.0.1:6379", "Redis address for -target redis")
	fs.IntVar(&cfg.Connections, "c", def.Connections, "concurrent requesters (connections per server)")
	fs.Int64Var(&cfg.Ops, "n", 0, "total operations (0: run for -duration)")
	fs.DurationVar(&cfg.Duration, "duration", def.Duration, "length of the run when -n is 0")
	fs.Float64Var(&cfg.Ratio, "ratio", def.Ratio, "fraction of gets, 0..1")
	fs.IntVar(&cfg.ValueSize, "size", def.ValueSize, "value size in bytes")
	fs.IntVar(&cfg.Keys, "keys", def.Keys, "key space: keys key:00000000 .. key:<keys-1>")
	fs.IntVar(&cfg.Pipeline, "P", def.Pipeline, "pipeline depth: operations in flight per requester")
	fs.IntVar(&cfg.Goroutines, "goroutines", def.Goroutines, "goroutines sharing each requester's client, each one operation at a time (-c × this in flight; not with -P > 1); Redis: a rueidis client (auto-pipelining) per requester")
	cfg.Preload = bench.PreloadAuto
	fs.Var(&cfg.Preload, "preload", "write every key once before measuring (default: when -ratio > 0)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "random seed (0: pick one; printed in the report)")
	fs.DurationVar(&cfg.Timeout, "timeout", def.Timeout, "per-operation timeout")
	fs.Int64Var(&cfg.MaxErrors, "max-errors", def.MaxErrors, "stop after this many failures (-1: never)")
	fs.BoolVar(&c.JSON, "json", false, "print one JSON object instead of text")
	fs.StringVar(&c.Mode, "mode", "run", "run, failover, reseed, memory, probe or compare (see above)")
	fs.StringVar(&c.Label, "label", "", "name of the run in the JSON (for -mode compare)")
	fs.IntVar(&c.RedisWait, "redis-wait", 0, "Redis: send WAIT <n> <timeout> after every SET; a put counts once n replicas have it")
	fs.DurationVar(&c.RedisWaitTimeout, "redis-wait-timeout", time.Second, "Redis: the timeout of each WAIT")
	fs.StringVar(&c.CSV, "csv", "", "write the per-interval time series as CSV to this file")
	fs.StringVar(&c.Chart, "chart", "", "write the time series as a chart to this file: a self-contained HTML page, or a bare SVG image if it ends in .svg")
	fs.DurationVar(&c.Interval, "interval", time.Second, "length of an interval of the time series")
	fs.DurationVar(&c.KillAfter, "kill-after", 0, "ftkv: kill -9 the primary of -kill-shard this long into the run, mark it, measure the write gap")
	fs.IntVar(&c.KillShard, "kill-shard", 0, "ftkv: the shard whose primary -kill-after kills")
	fs.IntVar(&c.Kills, "kills", 20, "failover: number of kills")
	fs.DurationVar(&c.Recover, "recover", 60*time.Second, "failover/reseed: longest wait for the cluster to be whole again")
	fs.IntVar(&c.Entries, "entries", 1000000, "reseed/memory: entries to load")
	fs.IntVar(&c.Victim, "victim", 1, "reseed: id of the server to kill; probe: the server to aim at")
	fs.StringVar(&c.ProbeName, "probe", "", "probe: the hostile client to run (see above)")
	fs.StringVar(&c.ServerLog, "server-log", "", "reseed: the cluster's log file (bin/coord -l) to read \"re-seeding sent\" lines from")
	fs.DurationVar(&c.Settle, "settle", 2*time.Second, "memory: pause after the load before reading RSS again")
	fs.BoolVar(&c.Check, "check", false, "compare: exit 1 unless every row has throughput, latency and a ratio")
	tlsFlags := tlsconf.ClientFlags(fs)
	user := fs.String("user", "", "ftkv, every mode but probe: authenticate as this user (password: FTKV_PASSWORD, or typed at the terminal); -kill-after and the fault modes (failover, reseed, memory) need an admin")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			// Asked for: on stdout, like the other commands' -help.
			fmt.Fprint(stdout, usage)
			fs.SetOutput(stdout)
			fs.PrintDefaults()
			return 0
		}
		return usageErr(stderr, err.Error())
	}
	if empty := flagcheck.Empty(fs); empty != "" {
		// (Read as not given: -tls-ca "" spoke plaintext, -user "" logged in as nobody.)
		return usageErr(stderr, "-"+empty+" needs a value, got an empty one")
	}
	fs.Visit(func(f *flag.Flag) { c.PipelineSet = c.PipelineSet || f.Name == "P" })
	// A zero given on the command line is a mistake, not "the default"
	// (the library's zero values mean that).
	zero := ""
	fs.Visit(func(f *flag.Flag) {
		switch f.Name {
		case "c", "keys", "P", "size":
			if f.Value.String() == "0" && zero == "" {
				zero = "-" + f.Name + " 0: expected at least 1"
			}
		case "duration":
			// (-n 0 -duration 0s ran until ctrl+c: a new user's walkthrough)
			if cfg.Duration == 0 && cfg.Ops == 0 && zero == "" {
				zero = "-duration 0s: expected a positive duration (or -n operations)"
			}
		}
	})
	if zero != "" {
		return usageErr(stderr, zero)
	}
	c.Args = fs.Args()
	if tcfg, _, err := tlsFlags(); err != nil {
		return usageErr(stderr, err.Error())
	} else if tcfg != nil {
		c.ClientOptions = append(c.ClientOptions, client.WithTLS(tcfg))
	}
	if *user != "" {
		pw, err := cli.Password(*user, os.Stdin, stderr)
		if err != nil {
			return usageErr(stderr, err.Error())
		}
		c.ClientOptions = append(c.ClientOptions, client.WithAuth(*user, pw))
	}
	if err := c.Validate(); err != nil {
		return usageErr(stderr, err.Error())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }() // a second ctrl+c kills outright
	err := c.Execute(ctx, stdout, stderr)
	var ue bench.UsageError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ue):
		return usageErr(stderr, ue.Error())
	case errors.Is(err, bench.ErrCheck):
		fmt.Fprintf(stderr, "%v\n", err)
	default:
		fmt.Fprintf(stderr, "error: %v\n", err)
	}
	return 1
}

func usageErr(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "error: %s (bench -help for usage)\n", msg)
	return 2
}
