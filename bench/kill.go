package bench

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"ftkv/bench/proc"
	"ftkv/client"
	"ftkv/hashring"
	"ftkv/status"
)

// Fault injection against a running ftkv cluster: kill -9 the primary of a
// shard, measure how long until a write to that shard is acknowledged
// again, and how long until the cluster is whole again. Only servers that
// run on this machine (host "localhost", a pid that is an ftkv server with
// that id) are ever killed.

// KillReport is the outcome of one kill.
type KillReport struct {
	Server int `json:"server"`  // id of the killed server
	PID    int `json:"pid"`     // its process
	Shard  int `json:"shard"`   // the shard it was primary of
	NewPID int `json:"new_pid"` // the respawned process, 0 if not seen
	// At is when the kill happened, in seconds from the start of the
	// measured phase (bench -kill-after), else 0.
	At float64 `json:"t_s"`
	// WriteGapMs runs from the kill to the acknowledgement of the first
	// write to the shard sent after the process was gone; -1: not measured.
	WriteGapMs float64 `json:"write_gap_ms"`
	// RecoveredS runs from the kill until the status shows every server
	// and shard serving, with the victim respawned and primary of its
	// shard again; -1: not seen.
	RecoveredS float64 `json:"recovered_s"`
	Error      string  `json:"error,omitempty"`
}

// Text describes the kill in one line.
func (k *KillReport) Text() string {
	if k.PID == 0 {
		return "no server killed: " + k.Error
	}
	s := fmt.Sprintf("server %d (pid %d, primary of shard %d) at %.2fs: writable again after %s, whole again after %s",
		k.Server, k.PID, k.Shard, k.At, msText(k.WriteGapMs), secText(k.RecoveredS))
	if k.Error != "" {
		s += "; " + k.Error
	}
	return s
}

// ErrNotHealthy is returned when the cluster is not fully serving before a kill.
var ErrNotHealthy = errors.New("cluster not fully serving")

// probeAttempt bounds one probe write: the client retries inside it with a
// growing backoff, so a short attempt keeps the measurement fine-grained.
const probeAttempt = 50 * time.Millisecond

// statusPoll is how often recovery is polled.
const statusPoll = 20 * time.Millisecond

// KeyInShard returns the first key prefix+"0", prefix+"1", … that a ring
// of n shards places on shard.
func KeyInShard(n, shard int, prefix string) string {
	r := hashring.New(n)
	for i := 0; ; i++ {
		k := prefix + strconv.Itoa(i)
		if r.Shard(k) == shard {
			return k
		}
	}
}

// PrimaryOf returns the server that the status names as shard's primary.
func PrimaryOf(st *status.Cluster, shard int) (status.Server, error) {
	if shard < 0 || shard >= len(st.Shards) {
		return status.Server{}, fmt.Errorf("no shard %d (the cluster has %d)", shard, len(st.Shards))
	}
	id := st.Shards[shard].Primary
	for _, s := range st.Servers {
		if s.ID == id {
			return s, nil
		}
	}
	return status.Server{}, fmt.Errorf("shard %d: primary %d not in the status", shard, id)
}

// Healthy reports whether every server and shard of st is serving; the
// reason when not.
func Healthy(st *status.Cluster) (bool, string) {
	if len(st.Servers) == 0 || len(st.Shards) == 0 {
		return false, "empty status"
	}
	for _, s := range st.Servers {
		if s.State != "serving" {
			return false, fmt.Sprintf("server %d is %s", s.ID, s.State)
		}
	}
	for _, sh := range st.Shards {
		if sh.State != "serving" {
			return false, fmt.Sprintf("shard %d is %s", sh.Shard, sh.State)
		}
	}
	return true, ""
}

// Recovered reports whether st shows the cluster whole again after server
// id (pid oldPID, primary of shard) was killed: healthy, id running as
// another process and primary of its shard again. It returns the new pid.
func Recovered(st *status.Cluster, id, oldPID, shard int) (int, bool) {
	if ok, _ := Healthy(st); !ok {
		return 0, false
	}
	for _, s := range st.Servers {
		if s.ID != id {
			continue
		}
		if s.PID == oldPID || s.PID <= 0 {
			return 0, false
		}
		if shard >= 0 && shard < len(st.Shards) && st.Shards[shard].Primary != id {
			return 0, false
		}
		return s.PID, true
	}
	return 0, false
}

// statusOf asks for the status with its own short deadline.
func statusOf(ctx context.Context, c *client.Client) (*status.Cluster, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.Status(ctx)
}

// waitHealthy polls the status until the cluster is fully serving.
// ErrNotAdmin: the fault modes read the servers' pids from the status,
// which a cluster with users shows only to an admin.
var ErrNotAdmin = errors.New("the fault modes need an admin user (-user with role admin): the status shows the servers' pids only to admins")

func waitHealthy(ctx context.Context, c *client.Client, timeout time.Duration) (*status.Cluster, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	why := "no status"
	for {
		st, err := statusOf(ctx, c)
		if err == nil && st.Redacted {
			return nil, ErrNotAdmin
		}
		if err == nil {
			var ok bool
			if ok, why = Healthy(st); ok {
				return st, nil
			}
		} else {
			why = err.Error()
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w within %s: %s", ErrNotHealthy, timeout, why)
		case <-time.After(statusPoll):
		}
	}
}

// probeWritable writes key until a write is acknowledged, each attempt
// bounded by probeAttempt, and returns the time of the acknowledgement.
func probeWritable(ctx context.Context, c *client.Client, key string, value []byte) (time.Time, error) {
	for {
		actx, cancel := context.WithTimeout(ctx, probeAttempt)
		err := c.Put(actx, key, value)
		cancel()
		if err == nil {
			return time.Now(), nil
		}
		if ctx.Err() != nil {
			return time.Time{}, fmt.Errorf("no write acknowledged: %w (last: %v)", ctx.Err(), err)
		}
		if errors.Is(err, client.ErrClosed) || errors.Is(err, client.ErrTooLarge) {
			return time.Time{}, err
		}
	}
}

// killSpec says what killPrimary does.
type killSpec struct {
	shard       int           // the shard whose primary dies
	gapTimeout  time.Duration // give up the write probe after this
	recover     bool          // also wait for the cluster to be whole again
	recoverWait time.Duration
	mark        func(kind, detail string) // may be nil
}

// killPrimary kill -9s the primary of spec.shard and measures the write
// gap (and the recovery). The report is filled as far as it got; the
// error says why it stopped.
func killPrimary(ctx context.Context, c *client.Client, spec killSpec) (KillReport, error) {
	rep := KillReport{Shard: spec.shard, WriteGapMs: -1, RecoveredS: -1}
	mark := spec.mark
	if mark == nil {
		mark = func(string, string) {}
	}
	st, err := statusOf(ctx, c)
	if err != nil {
		return rep, err
	}
	if ok, why := Healthy(st); !ok {
		return rep, fmt.Errorf("%w: %s", ErrNotHealthy, why)
	}
	victim, err := PrimaryOf(st, spec.shard)
	if err != nil {
		return rep, err
	}
	rep.Server, rep.PID = victim.ID, victim.PID
	if err := proc.CheckLocalServer(victim); err != nil {
		return rep, err
	}
	key := KeyInShard(len(st.Shards), spec.shard, "bench-probe:")
	value := []byte("probe")
	// One write first, so the probe's client has its connection to the
	// victim open, like every client of a running service.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = c.Put(wctx, key, value)
	cancel()
	if err != nil {
		return rep, fmt.Errorf("write to shard %d before the kill: %w", spec.shard, err)
	}

	killed := time.Now()
	if err := proc.Kill9(victim.PID); err != nil {
		return rep, err
	}
	mark("kill", fmt.Sprintf("kill -9 server %d (pid %d), primary of shard %d", victim.ID, victim.PID, spec.shard))
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = proc.WaitGone(gctx, victim.PID)
	cancel()
	if err != nil {
		return rep, err
	}
	pctx, cancel := context.WithTimeout(ctx, spec.gapTimeout)
	acked, err := probeWritable(pctx, c, key, value)
	cancel()
	if err != nil {
		return rep, fmt.Errorf("shard %d not writable within %s of the kill: %w", spec.shard, spec.gapTimeout, err)
	}
	gap := acked.Sub(killed)
	rep.WriteGapMs = float64(gap.Microseconds()) / 1000
	mark("writable", fmt.Sprintf("shard %d writable again %s after the kill", spec.shard, gap.Round(time.Millisecond)))
	if !spec.recover {
		return rep, nil
	}
	rctx, cancel := context.WithTimeout(ctx, spec.recoverWait)
	defer cancel()
	for {
		if st, err := statusOf(rctx, c); err == nil {
			if pid, ok := Recovered(st, victim.ID, victim.PID, spec.shard); ok {
				took := time.Since(killed)
				rep.NewPID, rep.RecoveredS = pid, took.Seconds()
				mark("recovered", fmt.Sprintf("server %d serving again (pid %d) %s after the kill", victim.ID, pid, took.Round(time.Millisecond)))
				return rep, nil
			}
		}
		select {
		case <-rctx.Done():
			return rep, fmt.Errorf("cluster not whole again within %s of the kill: %w", spec.recoverWait, rctx.Err())
		case <-time.After(statusPoll):
		}
	}
}

// KillAfter is the fault of bench -kill-after: after After, kill -9 the
// primary of Shard of the cluster at Coord, then measure the write gap and
// the recovery while the load goes on.
type KillAfter struct {
	Coord string
	After time.Duration
	Shard int
	// Recover bounds the wait for the cluster to be whole again (0: 30s);
	// it also ends with the run.
	Recover time.Duration
	// Options are the status client's (e.g. an admin's client.WithAuth:
	// the kill needs the servers' pids).
	Options []client.Option

	report KillReport
	done   bool
}

// Fault returns the Config.Fault that performs the kill.
func (k *KillAfter) Fault() Fault {
	return func(ctx context.Context, mark func(kind, detail string)) {
		start := time.Now()
		k.report = KillReport{Shard: k.Shard, WriteGapMs: -1, RecoveredS: -1}
		k.done = true
		c, err := client.Dial(ctx, k.Coord, k.Options...)
		if err != nil {
			k.fail(mark, err)
			return
		}
		defer c.Close()
		select {
		case <-ctx.Done():
			k.report.Error = "the run ended before the kill"
			return
		case <-time.After(k.After - time.Since(start)):
		}
		wait := k.Recover
		if wait <= 0 {
			wait = 30 * time.Second
		}
		var at time.Time
		rep, err := killPrimary(ctx, c, killSpec{
			shard: k.Shard, gapTimeout: wait, recover: true, recoverWait: wait,
			mark: func(kind, detail string) {
				if kind == "kill" {
					at = time.Now()
				}
				mark(kind, detail)
			},
		})
		if !at.IsZero() {
			rep.At = at.Sub(start).Seconds()
		}
		k.report = rep
		if err != nil {
			k.fail(mark, err)
		}
	}
}

func (k *KillAfter) fail(mark func(kind, detail string), err error) {
	k.report.Error = err.Error()
	mark("error", err.Error())
}

// Report returns the outcome once the run is over; nil if the fault never ran.
func (k *KillAfter) Report() *KillReport {
	if !k.done {
		return nil
	}
	r := k.report
	return &r
}
