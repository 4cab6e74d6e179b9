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
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"syscall"

	"golang.org/x/term"

	"ftkv/bench"
)

const usage = `usage: bench -h <coord_host> -p <coord_port> [flags]
       bench -target redis [-redis host:port] [flags]

Runs a get/put workload for -duration (or -n operations) and prints
throughput and latency percentiles. ctrl+c stops early and still reports.

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

func run(args []string, stdout, stderr io.Writer) int {
	def := bench.DefaultConfig()
	cfg := def
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	host := fs.String("h", "127.0.0.1", "coordinator host")
	port := fs.Int("p", 0, "coordinator client port (required for -target ftkv)")
	target := fs.String("target", "ftkv", "system to load: ftkv or redis")
	redisAddr := fs.String("redis", "127.0.0.1:6379", "Redis address for -target redis")
	fs.IntVar(&cfg.Connections, "c", def.Connections, "concurrent requesters (connections per server)")
	fs.Int64Var(&cfg.Ops, "n", 0, "total operations (0: run for -duration)")
	fs.DurationVar(&cfg.Duration, "duration", def.Duration, "length of the run when -n is 0")
	fs.Float64Var(&cfg.Ratio, "ratio", def.Ratio, "fraction of gets, 0..1")
	fs.IntVar(&cfg.ValueSize, "size", def.ValueSize, "value size in bytes")
	fs.IntVar(&cfg.Keys, "keys", def.Keys, "key space: keys key:00000000 .. key:<keys-1>")
	fs.IntVar(&cfg.Pipeline, "P", def.Pipeline, "pipeline depth: operations in flight per requester")
	cfg.Preload = bench.PreloadAuto
	fs.Var(preloadFlag{&cfg.Preload}, "preload", "write every key once before measuring (default: when -ratio > 0)")
	fs.Uint64Var(&cfg.Seed, "seed", 0, "random seed (0: pick one; printed in the report)")
	fs.DurationVar(&cfg.Timeout, "timeout", def.Timeout, "per-operation timeout")
	fs.Int64Var(&cfg.MaxErrors, "max-errors", def.MaxErrors, "stop after this many failures (-1: never)")
	asJSON := fs.Bool("json", false, "print one JSON object instead of text")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usage)
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return 0
		}
		return usageErr(stderr, err.Error())
	}
	if fs.NArg() > 0 {
		return usageErr(stderr, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if err := cfg.Validate(); err != nil {
		return usageErr(stderr, err.Error())
	}
	var t bench.Target
	switch *target {
	case "ftkv":
		if *port <= 0 || *port > 65535 {
			return usageErr(stderr, "-p <coord_port> (1..65535) is required")
		}
		t = bench.FTKV(net.JoinHostPort(*host, strconv.Itoa(*port)))
	case "redis":
		t = bench.Redis(*redisAddr)
	default:
		return usageErr(stderr, fmt.Sprintf("-target must be ftkv or redis, not %q", *target))
	}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		cfg.Progress = bench.NewProgressBar(stderr)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }() // a second ctrl+c kills outright

	res, err := bench.Run(ctx, cfg, t)
	if res != nil {
		if *asJSON {
			fmt.Fprintf(stdout, "%s\n", res.JSON())
		} else {
			res.WriteText(stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "error: %v\n", err)
		return 1
	}
	return 0
}

func usageErr(stderr io.Writer, msg string) int {
	fmt.Fprintf(stderr, "error: %s (bench -help for usage)\n", msg)
	return 2
}

// preloadFlag is a boolean flag whose unset state is "auto".
type preloadFlag struct{ mode *bench.PreloadMode }

func (p preloadFlag) IsBoolFlag() bool { return true }

func (p preloadFlag) String() string {
	if p.mode == nil || *p.mode == bench.PreloadAuto {
		return "auto"
	}
	return strconv.FormatBool(*p.mode == bench.PreloadOn)
}

func (p preloadFlag) Set(s string) error {
	on, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*p.mode = map[bool]bench.PreloadMode{true: bench.PreloadOn, false: bench.PreloadOff}[on]
	return nil
}
