package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"ftkv/bench/chart"
	"ftkv/bench/hostile"
	"ftkv/client"
)

// Command is one invocation of bin/bench as its flags set it: a mode, a
// target and the workload. Validate it, then Execute it.
type Command struct {
	Mode      string // run, failover, reseed, memory, probe or compare
	Target    string // ftkv or redis
	Host      string // the coordinator's host
	Port      int    // the coordinator's client port (required for ftkv)
	RedisAddr string
	// RedisWait > 0 sends WAIT RedisWait RedisWaitTimeout after every SET.
	RedisWait        int
	RedisWaitTimeout time.Duration

	Run         Config // the workload (run; the load of reseed and memory)
	PipelineSet bool   // -P was given (reseed and memory default to 16)

	JSON      bool
	Label     string        // the run's name in the JSON (for compare)
	CSV       string        // file for the per-interval series as CSV
	Chart     string        // file for the chart: HTML, or SVG if it ends in .svg
	Interval  time.Duration // length of an interval of the series
	KillAfter time.Duration // ftkv: kill the primary of KillShard this long into the run
	KillShard int
	Kills     int           // failover: number of kills
	Recover   time.Duration // failover/reseed: longest wait for the cluster to be whole
	Entries   int           // reseed/memory: entries to load
	Victim    int           // reseed: the server to kill; probe: the server to aim at
	ProbeName string        // probe: which hostile probe (hostile.Names())
	ServerLog string        // reseed: the cluster's log file
	Settle    time.Duration // memory: pause before the second RSS reading
	Check     bool          // compare: fail unless every row has numbers
	Args      []string      // the arguments after the flags (compare: result files)
	// ClientOptions are given to every ftkv client of -mode run (the
	// requesters and -kill-after's), e.g. client.WithAuth from -user.
	ClientOptions []client.Option
}

// UsageError is a bad flag or argument: the command prints it with a
// pointer to -help and exits with status 2.
type UsageError string

func (e UsageError) Error() string { return string(e) }

// ErrCheck is wrapped by the error of a compare whose -check failed.
var ErrCheck = errors.New("check failed")

func usagef(format string, args ...any) error { return UsageError(fmt.Sprintf(format, args...)) }

// Validate reports the first bad flag or argument, as a UsageError.
func (c *Command) Validate() error {
	if c.Mode == "compare" {
		if len(c.Args) == 0 {
			return usagef("-mode compare needs result files (bench -json -label L output)")
		}
		return nil
	}
	if len(c.Args) > 0 {
		return usagef("unexpected argument %q", c.Args[0])
	}
	if len(c.ClientOptions) > 0 && c.Mode == "probe" {
		return usagef("-user and -tls-ca do not work with -mode probe (its hostile clients speak the protocol without them)")
	}
	if err := c.Run.Validate(); err != nil {
		return UsageError(err.Error())
	}
	switch c.Mode {
	case "run":
	case "probe":
		if _, ok := hostile.Lookup(c.ProbeName); !ok {
			return usagef("-probe must be one of %s, not %q", strings.Join(hostile.Names(), ", "), c.ProbeName)
		}
		if c.Target != "ftkv" {
			return usagef("-mode probe works on ftkv only")
		}
		return c.needPort()
	case "failover", "reseed", "memory":
		if c.Target != "ftkv" {
			return usagef("-mode %s works on ftkv only", c.Mode)
		}
		if err := c.needPort(); err != nil {
			return err
		}
		if c.Entries < 1 {
			return usagef("-entries must be >= 1")
		}
		return nil
	default:
		return usagef("-mode must be run, failover, reseed, memory, probe or compare, not %q", c.Mode)
	}
	if c.Interval < time.Millisecond {
		return usagef("-interval must be >= 1ms")
	}
	switch c.Target {
	case "ftkv":
		return c.needPort()
	case "redis":
		if c.KillAfter > 0 {
			return usagef("-kill-after works on ftkv only")
		}
		if c.RedisWait > 0 && c.Run.Goroutines > 1 {
			return usagef("-redis-wait works without -goroutines only")
		}
		return nil
	}
	return usagef("-target must be ftkv or redis, not %q", c.Target)
}

// needPort checks that every coordinator has a port: from -h's list
// (host:port,host:port,...) or -p.
func (c *Command) needPort() error {
	for _, h := range strings.Split(c.Host, ",") {
		if _, _, err := net.SplitHostPort(strings.TrimSpace(h)); err == nil {
			continue
		}
		if c.Port <= 0 || c.Port > 65535 {
			return usagef("-p <coord_port> (1..65535) is required (or -h host:port,host:port,...)")
		}
	}
	return nil
}

// coord is the coordinators' address for client.Dial: -h with -p's port
// added to each entry that has none.
func (c *Command) coord() string {
	var out []string
	for _, h := range strings.Split(c.Host, ",") {
		h = strings.TrimSpace(h)
		if _, _, err := net.SplitHostPort(h); err != nil {
			h = net.JoinHostPort(h, strconv.Itoa(c.Port))
		}
		out = append(out, h)
	}
	return strings.Join(out, ",")
}

// Execute runs the validated command: results go to stdout, progress and
// errors met on the way to stderr. The error it returns is the command's
// outcome (a failed run, a failed check).
func (c *Command) Execute(ctx context.Context, stdout, stderr io.Writer) error {
	if c.Mode == "compare" {
		return c.compare(stdout)
	}
	cfg := c.Run
	if f, ok := stderr.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		cfg.Progress = NewProgressBar(stderr)
	}
	if c.Mode == "probe" {
		return c.probe(ctx, stdout, stderr)
	}
	if c.Mode != "run" {
		load := cfg
		load.Keys = c.Entries
		if !c.PipelineSet && load.Goroutines <= 1 {
			load.Pipeline = 16
		}
		return c.faultMode(ctx, load, stdout, stderr)
	}
	if c.CSV != "" || c.Chart != "" {
		cfg.SeriesInterval = c.Interval
	}
	var killer *KillAfter
	var t Target
	if c.Target == "ftkv" {
		t = FTKV(c.coord(), c.ClientOptions...)
		if c.KillAfter > 0 {
			killer = &KillAfter{Coord: c.coord(), After: c.KillAfter, Shard: c.KillShard, Recover: c.Recover,
				Options: c.ClientOptions}
			cfg.Fault = killer.Fault()
			cfg.SeriesInterval = c.Interval
		}
	} else if cfg.Goroutines > 1 {
		t = RedisRueidis(c.RedisAddr) // goroutines share a Go client's connection
	} else {
		var opts []RedisOption
		if c.RedisWait > 0 {
			opts = append(opts, RedisWait(c.RedisWait, c.RedisWaitTimeout))
		}
		t = Redis(c.RedisAddr, opts...)
	}
	res, err := Run(ctx, cfg, t)
	if res != nil {
		res.Label = c.Label
		if killer != nil {
			res.Kill = killer.Report()
		}
		if werr := WriteSeries(res, c.CSV, c.Chart); werr != nil {
			fmt.Fprintf(stderr, "error: %v\n", werr)
			if err == nil {
				err = werr
			}
		}
		if c.JSON {
			fmt.Fprintf(stdout, "%s\n", res.JSON())
		} else {
			res.WriteText(stdout)
		}
	}
	if err != nil {
		return err
	}
	if res != nil && res.Kill != nil && res.Kill.Error != "" {
		return fmt.Errorf("kill: %s", res.Kill.Error)
	}
	return nil
}

// WriteSeries writes the CSV and the chart of res, when asked for: the
// chart is an HTML page, or a bare SVG image if its name ends in .svg.
func WriteSeries(res *Result, csvFile, chartFile string) error {
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
	if err := write(csvFile, func(w io.Writer) error { return WriteCSV(w, res.Series, res.Events) }); err != nil {
		return err
	}
	return write(chartFile, func(w io.Writer) error {
		return WriteChart(w, res, strings.HasSuffix(strings.ToLower(chartFile), ".svg"))
	})
}

// WriteChart draws res's series: an HTML page, or a bare SVG image.
func WriteChart(w io.Writer, res *Result, svg bool) error {
	title := fmt.Sprintf("%s throughput over time", res.Target)
	if res.Label != "" {
		title += " — " + res.Label
	}
	pts := make([]chart.Point, len(res.Series))
	for i, p := range res.Series {
		pts[i] = chart.Point{Start: p.Start, Seconds: p.Seconds, Ops: p.Ops, OpsPerSec: p.OpsPerSec, P99: p.P99}
	}
	evs := make([]chart.Event, len(res.Events))
	for i, e := range res.Events {
		evs[i] = chart.Event{At: e.At, Kind: e.Kind, Detail: e.Detail}
	}
	if svg {
		return chart.WriteSVG(w, title, ChartNotes(res), pts, evs)
	}
	return chart.WriteHTML(w, title, ChartNotes(res), pts, evs)
}

// ChartNotes are the lines printed under a run's chart: the workload, the
// outcome and the kill, if any.
func ChartNotes(r *Result) []string {
	notes := []string{
		fmt.Sprintf("%s %s: %d connections, %s, %d B values, %d keys, %.0f%% gets",
			r.Target, r.Addr, r.Connections, r.concurrency(), r.ValueSize, r.Keys, r.Ratio*100),
		fmt.Sprintf("%s ops/s over %.1fs, %d errors; p50 %s, p99 %s, max %s",
			FormatRate(r.OpsPerSec), r.Seconds, r.Errors, FormatMicros(r.Latency.P50), FormatMicros(r.Latency.P99), FormatMicros(r.Latency.Max)),
	}
	if k := r.Kill; k != nil {
		notes = append(notes, "kill: "+k.Text())
	}
	return notes
}

// faultMode runs the failover, reseed or memory measurement.
func (c *Command) faultMode(ctx context.Context, load Config, stdout, stderr io.Writer) error {
	type texter interface{ WriteText(io.Writer) error }
	var (
		res texter
		err error
	)
	progress := stderr // progress lines; stdout is the result
	switch c.Mode {
	case "failover":
		var r *FailoverResult
		r, err = Failover(ctx, FailoverConfig{Coord: c.coord(), Kills: c.Kills, Recover: c.Recover, Log: progress,
			Options: c.ClientOptions})
		if r != nil {
			res = r
		}
	case "reseed":
		var r *ReseedResult
		r, err = Reseed(ctx, ReseedConfig{Coord: c.coord(), Load: load, Server: c.Victim, Recover: c.Recover,
			ServerLog: c.ServerLog, Log: progress, Options: c.ClientOptions})
		if r != nil {
			if err != nil {
				r.Error = err.Error()
			}
			res = r
		}
	case "memory":
		var r *MemoryResult
		r, err = Memory(ctx, MemoryConfig{Coord: c.coord(), Load: load, Settle: c.Settle, Log: progress,
			Options: c.ClientOptions})
		if r != nil {
			res = r
		}
	}
	if res != nil {
		if c.JSON {
			b, _ := json.Marshal(res)
			fmt.Fprintf(stdout, "%s\n", b)
		} else {
			res.WriteText(stdout)
		}
	}
	return err
}

// compare prints the comparison table of the result files in c.Args.
func (c *Command) compare(stdout io.Writer) error {
	var all []Result
	for _, name := range c.Args {
		f, err := os.Open(name)
		if err != nil {
			return err
		}
		rs, err := ReadResults(f)
		f.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		all = append(all, rs...)
	}
	rows := Compare(all)
	if c.JSON {
		b, _ := json.Marshal(rows)
		fmt.Fprintf(stdout, "%s\n", b)
	} else {
		WriteCompareTable(stdout, rows)
	}
	if c.Check {
		if err := CheckCompare(rows); err != nil {
			return fmt.Errorf("%w: %v", ErrCheck, err)
		}
	}
	return nil
}
