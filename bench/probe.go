package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"ftkv/bench/hostile"
)

// ProbeConfig is one run of a hostile probe (package bench/hostile)
// against a cluster, with an honest workload running beside it.
type ProbeConfig struct {
	Coord   string         // the coordinator's client address
	Probe   string         // a name from hostile.Names()
	Victim  int            // the server the probe aims at
	Hostile hostile.Config // the probe's own settings (Coord and ServerID are filled in)
	Honest  Config         // the honest workload (its Duration is the probe's)
	Log     io.Writer      // progress lines
}

// ProbeResult is what the operator checks after a probe: did the target
// survive (same pid), did a failover happen (the epoch moved), how much
// memory it took and what honest clients saw meanwhile.
type ProbeResult struct {
	Probe       string       `json:"probe"`
	Target      int          `json:"target"`
	PID         int          `json:"pid"`
	PIDAfter    int          `json:"pid_after"`
	EpochBefore uint64       `json:"epoch_before"`
	EpochAfter  uint64       `json:"epoch_after"`
	RSS         *hostile.RSS `json:"rss,omitempty"`
	// HeartbeatAgeMS is the largest age of the target's last heartbeat
	// the coordinator reported during the probe (liveness under load).
	HeartbeatAgeMS float64        `json:"heartbeat_age_max_ms"`
	Hostile        hostile.Result `json:"hostile"`
	Honest         *Result        `json:"honest,omitempty"`
	Error          string         `json:"error,omitempty"`
	// Interrupted: stopped early by ctx (ctrl+c); the figures cover
	// what ran.
	Interrupted bool `json:"interrupted"`
	// AfterUnknown: the target's pid and the epoch after the probe could
	// not be read (PIDAfter and EpochAfter are 0): nothing is claimed.
	AfterUnknown bool `json:"after_unknown,omitempty"`
}

// Failovers is how many views the coordinator published during the probe
// (0 when nothing failed over).
//
// An epoch carries the coordinators' Raft term in its high 32 bits and
// counts views within the term in its low 32: a new leader's first view
// starts a term (it moves no shard), so views are counted within terms.
func (r *ProbeResult) Failovers() uint64 {
	const low = 1<<32 - 1
	if r.AfterUnknown || r.EpochAfter < r.EpochBefore {
		return 0
	}
	if r.EpochAfter>>32 == r.EpochBefore>>32 {
		return r.EpochAfter - r.EpochBefore
	}
	return (r.EpochAfter & low) - 1 // the views of the new term after its first
}

// WriteText prints r for a terminal.
func (r *ProbeResult) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "probe %s against server %d (pid %d)\n", r.Probe, r.Target, r.PID)
	if r.Interrupted {
		b.WriteString("  interrupted:      yes (the figures cover what ran)\n")
	}
	if r.AfterUnknown {
		b.WriteString("  server survived:  unknown (the cluster's status could not be read after the probe)\n")
	} else {
		survived := "yes"
		if r.PIDAfter != r.PID {
			survived = fmt.Sprintf("NO: pid %d -> %d", r.PID, r.PIDAfter)
		}
		fmt.Fprintf(&b, "  server survived:  %s\n", survived)
		fmt.Fprintf(&b, "  failovers:        %d (epoch %d -> %d)\n", r.Failovers(), r.EpochBefore, r.EpochAfter)
	}
	fmt.Fprintf(&b, "  heartbeats:       last one at most %.0fms old during the probe\n", r.HeartbeatAgeMS)
	if r.RSS != nil {
		fmt.Fprintf(&b, "  server RSS:       %s\n", r.RSS)
	} else {
		b.WriteString("  server RSS:       not read (not a local server)\n")
	}
	if h := r.Honest; h != nil {
		fmt.Fprintf(&b, "  honest clients:   %s ops/s, %d errors, p50 %s, p99 %s, max %s\n",
			FormatRate(h.OpsPerSec), h.Errors, FormatMicros(h.Latency.P50), FormatMicros(h.Latency.P99), FormatMicros(h.Latency.Max))
	}
	b.WriteString("  probe:\n")
	for _, l := range strings.Split(strings.TrimRight(r.Hostile.String(), "\n"), "\n") {
		b.WriteString("    " + l + "\n")
	}
	if r.Error != "" {
		fmt.Fprintf(&b, "  error: %s\n", r.Error)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// Probe runs the probe and the honest workload side by side and reports.
func Probe(ctx context.Context, pc ProbeConfig) (*ProbeResult, error) {
	hc := pc.Hostile
	hc.Coord, hc.ServerID = pc.Coord, pc.Victim
	if hc.Duration <= 0 {
		hc.Duration = pc.Honest.Duration
	}
	if pc.Log != nil {
		hc.Logf = func(format string, args ...any) { fmt.Fprintf(pc.Log, format+"\n", args...) }
	}
	before, err := hostile.Resolve(ctx, hc)
	if errors.Is(err, hostile.ErrNoServer) {
		return nil, UsageError(fmt.Sprintf("-victim %d: the cluster has no such server", pc.Victim))
	}
	if err != nil {
		return nil, err
	}
	r := &ProbeResult{Probe: pc.Probe, Target: pc.Victim, PID: before.PID, EpochBefore: before.Epoch}
	honest := pc.Honest
	honest.Ops = 0
	honest.Duration = hc.Duration
	honest.MaxErrors = -1
	if honest.preload() {
		// Before the probe, not beside it: the probe and the honest
		// clients' measurement then cover the same seconds (the
		// preload of 100,000 keys ran silently beside the probe, and
		// the probe's report waited for it).
		if pc.Log != nil {
			fmt.Fprintf(pc.Log, "preloading %d keys for the honest clients (-keys)\n", honest.withDefaults().Keys)
		}
		p, err := Preload(ctx, honest, FTKV(pc.Coord))
		if err != nil {
			return nil, err
		}
		if p.Interrupted {
			return nil, errors.New("interrupted during the honest clients' preload; no probe ran")
		}
		honest.Preload = PreloadOff
	}
	// The target's memory from here: the preload's entries are not the
	// probe's doing.
	var watch *hostile.RSSWatch
	if before.PID > 0 {
		if w, err := hostile.WatchRSS(before.PID, 50*time.Millisecond); err == nil {
			watch = w
		}
	}
	if pc.Log != nil {
		fmt.Fprintf(pc.Log, "probe %s against server %d for %s\n", pc.Probe, pc.Victim, hc.Duration)
	}
	hb := hostile.WatchHeartbeats(pc.Coord, pc.Victim, 0)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		res, err := Run(ctx, honest, FTKV(pc.Coord))
		r.Honest = res
		if err != nil && r.Honest == nil {
			r.Error = "honest load: " + err.Error()
		}
	}()
	r.Hostile, err = hostile.Run(ctx, pc.Probe, hc)
	if err != nil {
		r.Error = err.Error()
	}
	wg.Wait()
	maxAge, _ := hb.Stop()
	r.HeartbeatAgeMS = float64(maxAge) / float64(time.Millisecond)
	if watch != nil {
		rss := watch.Stop()
		r.RSS = &rss
	}
	r.Interrupted = ctx.Err() != nil
	if r.Interrupted && err != nil {
		err, r.Error = nil, "" // ctrl+c is not a failure of the probe
	}
	// The state after is read even when ctx was cancelled (ctrl+c): an
	// interrupted probe reported a dead server and a wrapped epoch.
	actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), afterTimeout)
	defer cancel()
	after, aerr := hostile.Resolve(actx, hc)
	if aerr != nil {
		r.AfterUnknown = true
		return r, fmt.Errorf("the cluster's status after the probe: %w", aerr)
	}
	r.PIDAfter, r.EpochAfter = after.PID, after.Epoch
	return r, err
}

// afterTimeout bounds reading the cluster's status after a probe.
// timing: exception — a command-line tool's patience, not the cluster's.
const afterTimeout = 5 * time.Second

func (c *Command) probe(ctx context.Context, stdout, stderr io.Writer) error {
	r, err := Probe(ctx, ProbeConfig{Coord: c.coord(), Probe: c.ProbeName, Victim: c.Victim, Honest: c.Run, Log: stderr,
		Hostile: hostile.Config{Duration: c.Run.Duration}})
	if r != nil {
		if c.JSON {
			b, _ := json.Marshal(r)
			fmt.Fprintf(stdout, "%s\n", b)
		} else {
			_ = r.WriteText(stdout)
		}
		if err == nil && !r.AfterUnknown && (r.PIDAfter != r.PID || r.Failovers() > 0) {
			err = fmt.Errorf("the probe took server %d down or caused a failover", c.Victim)
		}
	}
	return err
}
