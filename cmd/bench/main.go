// Command bench is ftkv's load generator: it drives an ftkv cluster (or,
// for comparison, a Redis server) with a get/put workload and reports
// throughput and latency percentiles. See package ftkv/bench.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"ftkv/bench"
)

const usage = `usage: bench -h <coord_host> -p <coord_port> [flags]
       bench -target redis [-redis host:port] [-redis-wait 1] [flags]
       bench -mode failover|reseed|memory -h <coord_host> -p <coord_port> [flags]
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
  compare   read results of "bench -json -label L" runs (one per line) and
            print medians per label and target with ftkv/reference ratios;
            -check fails unless every row has numbers.
  In reseed and memory modes -P defaults to 16 (a faster load).
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
	mode := fs.String("mode", "run", "run, failover, reseed, memory or compare (see above)")
	label := fs.String("label", "", "name of the run in the JSON (for -mode compare)")
	redisWait := fs.Int("redis-wait", 0, "Redis: send WAIT <n> <timeout> after every SET; a put counts once n replicas have it")
	redisWaitTimeout := fs.Duration("redis-wait-timeout", time.Second, "Redis: the timeout of each WAIT")
	csvFile := fs.String("csv", "", "write the per-interval time series as CSV to this file")
	chartFile := fs.String("chart", "", "write the time series as a chart to this file: a self-contained HTML page, or a bare SVG image if it ends in .svg")
	interval := fs.Duration("interval", time.Second, "length of an interval of the time series")
	killAfter := fs.Duration("kill-after", 0, "ftkv: kill -9 the primary of -kill-shard this long into the run, mark it, measure the write gap")
	killShard := fs.Int("kill-shard", 0, "ftkv: the shard whose primary -kill-after kills")
	kills := fs.Int("kills", 20, "failover: number of kills")
	recoverWait := fs.Duration("recover", 60*time.Second, "failover/reseed: longest wait for the cluster to be whole again")
	entries := fs.Int("entries", 1000000, "reseed/memory: entries to load")
	victim := fs.Int("victim", 1, "reseed: id of the server to kill")
	serverLog := fs.String("server-log", "", "reseed: the cluster's log file (bin/coord -l) to read \"re-seeding sent\" lines from")
	settle := fs.Duration("settle", 2*time.Second, "memory: pause after the load before reading RSS again")
	check := fs.Bool("check", false, "compare: exit 1 unless every row has throughput, latency and a ratio")

	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(stderr, usage)
			fs.SetOutput(stderr)
			fs.PrintDefaults()
			return 0
		}
		return usageErr(stderr, err.Error())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if *mode == "compare" {
		return compare(fs.Args(), *check, *asJSON, stdout, stderr)
	}
	if fs.NArg() > 0 {
		return usageErr(stderr, fmt.Sprintf("unexpected argument %q", fs.Arg(0)))
	}
	if err := cfg.Validate(); err != nil {
		return usageErr(stderr, err.Error())
	}
	coordAddr := net.JoinHostPort(*host, strconv.Itoa(*port))
	needPort := func() int {
		if *port <= 0 || *port > 65535 {
			return usageErr(stderr, "-p <coord_port> (1..65535) is required")
		}
		return 0
	}
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		cfg.Progress = bench.NewProgressBar(stderr)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); stop() }() // a second ctrl+c kills outright

	switch *mode {
	case "run":
	case "failover", "reseed", "memory":
		if *target != "ftkv" {
			return usageErr(stderr, fmt.Sprintf("-mode %s works on ftkv only", *mode))
		}
		if code := needPort(); code != 0 {
			return code
		}
		if *entries < 1 {
			return usageErr(stderr, "-entries must be >= 1")
		}
		load := cfg
		load.Keys = *entries
		if !set["P"] {
			load.Pipeline = 16
		}
		return faultMode(ctx, *mode, modeArgs{
			coord: coordAddr, load: load, kills: *kills, recover: *recoverWait, victim: *victim,
			serverLog: *serverLog, settle: *settle, json: *asJSON,
		}, stdout, stderr)
	default:
		return usageErr(stderr, fmt.Sprintf("-mode must be run, failover, reseed, memory or compare, not %q", *mode))
	}

	if *interval < time.Millisecond {
		return usageErr(stderr, "-interval must be >= 1ms")
	}
	if *csvFile != "" || *chartFile != "" {
		cfg.SeriesInterval = *interval
	}
	var killer *bench.KillAfter
	var t bench.Target
	switch *target {
	case "ftkv":
		if code := needPort(); code != 0 {
			return code
		}
		t = bench.FTKV(coordAddr)
		if *killAfter > 0 {
			killer = &bench.KillAfter{Coord: coordAddr, After: *killAfter, Shard: *killShard, Recover: *recoverWait}
			cfg.Fault = killer.Fault()
			cfg.SeriesInterval = *interval
		}
	case "redis":
		if *killAfter > 0 {
			return usageErr(stderr, "-kill-after works on ftkv only")
		}
		var opts []bench.RedisOption
		if *redisWait > 0 {
			opts = append(opts, bench.RedisWait(*redisWait, *redisWaitTimeout))
		}
		t = bench.Redis(*redisAddr, opts...)
	default:
		return usageErr(stderr, fmt.Sprintf("-target must be ftkv or redis, not %q", *target))
	}

	res, err := bench.Run(ctx, cfg, t)
	if res != nil {
		res.Label = *label
		if killer != nil {
			res.Kill = killer.Report()
		}
		if werr := writeSeries(res, *csvFile, *chartFile); werr != nil {
			fmt.Fprintf(stderr, "error: %v\n", werr)
			if err == nil {
				err = werr
			}
		}
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
	if res != nil && res.Kill != nil && res.Kill.Error != "" {
		fmt.Fprintf(stderr, "error: kill: %s\n", res.Kill.Error)
		return 1
	}
	return 0
}

// writeSeries writes the CSV and the chart of res, when asked for.
func writeSeries(res *bench.Result, csvFile, chartFile string) error {
	write := func(name string, f func(io.Writer) error) error {
		if name == "" {
			return nil
		}
		out, err := os.Create(name)
		if err != nil {
			return err
		}
		if err := f(out); err != nil {
			out.Close()
			return fmt.Errorf("%s: %w", name, err)
		}
		return out.Close()
	}
	if err := write(csvFile, func(w io.Writer) error { return bench.WriteCSV(w, res.Series, res.Events) }); err != nil {
		return err
	}
	return write(chartFile, func(w io.Writer) error {
		title := fmt.Sprintf("%s throughput over time", res.Target)
		if res.Label != "" {
			title += " — " + res.Label
		}
		if strings.HasSuffix(strings.ToLower(chartFile), ".svg") {
			return bench.WriteChartSVG(w, title, bench.ChartNotes(res), res.Series, res.Events)
		}
		return bench.WriteChart(w, title, bench.ChartNotes(res), res.Series, res.Events)
	})
}

type modeArgs struct {
	coord     string
	load      bench.Config
	kills     int
	recover   time.Duration
	victim    int
	serverLog string
	settle    time.Duration
	json      bool
}

// faultMode runs the failover, reseed or memory measurement.
func faultMode(ctx context.Context, mode string, a modeArgs, stdout, stderr io.Writer) int {
	type texter interface{ WriteText(io.Writer) error }
	var (
		res texter
		err error
	)
	progress := stderr // progress lines; stdout is the result
	switch mode {
	case "failover":
		var r *bench.FailoverResult
		r, err = bench.Failover(ctx, bench.FailoverConfig{Coord: a.coord, Kills: a.kills, Recover: a.recover, Log: progress})
		if r != nil {
			res = r
		}
	case "reseed":
		var r *bench.ReseedResult
		r, err = bench.Reseed(ctx, bench.ReseedConfig{Coord: a.coord, Load: a.load, Server: a.victim, Recover: a.recover,
			ServerLog: a.serverLog, Log: progress})
		if r != nil {
			if err != nil {
				r.Error = err.Error()
			}
			res = r
		}
	case "memory":
		var r *bench.MemoryResult
		r, err = bench.Memory(ctx, bench.MemoryConfig{Coord: a.coord, Load: a.load, Settle: a.settle, Log: progress})
		if r != nil {
			res = r
		}
	}
	if res != nil {
		if a.json {
			b, _ := json.Marshal(res)
			fmt.Fprintf(stdout, "%s\n", b)
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

// compare prints the comparison table of result files.
func compare(files []string, check, asJSON bool, stdout, stderr io.Writer) int {
	if len(files) == 0 {
		return usageErr(stderr, "-mode compare needs result files (bench -json -label L output)")
	}
	var all []bench.Result
	for _, name := range files {
		f, err := os.Open(name)
		if err != nil {
			fmt.Fprintf(stderr, "error: %v\n", err)
			return 1
		}
		rs, err := bench.ReadResults(f)
		f.Close()
		if err != nil {
			fmt.Fprintf(stderr, "error: %s: %v\n", name, err)
			return 1
		}
		all = append(all, rs...)
	}
	rows := bench.Compare(all)
	if asJSON {
		b, _ := json.Marshal(rows)
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		bench.WriteCompareTable(stdout, rows)
	}
	if check {
		if err := bench.CheckCompare(rows); err != nil {
			fmt.Fprintf(stderr, "check failed: %v\n", err)
			return 1
		}
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
