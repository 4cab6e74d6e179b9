package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ftkv/client"
	"ftkv/hashring"
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

// ErrNotLocal refuses to kill a server that does not run on this machine
// as an ftkv server process.
var ErrNotLocal = errors.New("not a local ftkv server process")

// ErrNotHealthy is returned when the cluster is not fully serving before a kill.
var ErrNotHealthy = errors.New("cluster not fully serving")

// probeAttempt bounds one probe write: the client retries inside it with a
// growing backoff, so a short attempt keeps the measurement fine-grained.
const probeAttempt = 50 * time.Millisecond

// statusPoll is how often recovery is polled.
const statusPoll = 20 * time.Millisecond

// IsLocalHost reports whether a server's host (from the status) is this machine.
func IsLocalHost(host string) bool {
	switch host {
	case "", "localhost", "::1":
		return true
	}
	return strings.HasPrefix(host, "127.")
}

// IsServerCmdline reports whether args (a process's command line) is an
// ftkv server with the given id, as the coordinator spawns it: "-id <id>"
// and a "-coord" flag.
func IsServerCmdline(args []string, id int) bool {
	want := strconv.Itoa(id)
	hasID, hasCoord := false, false
	for i, a := range args {
		switch a {
		case "-id", "--id":
			hasID = hasID || (i+1 < len(args) && args[i+1] == want)
		case "-coord", "--coord":
			hasCoord = true
		}
		if a == "-id="+want || a == "--id="+want {
			hasID = true
		}
	}
	return hasID && hasCoord
}

// CheckLocalServer returns nil when s runs here as the ftkv server with
// its id, so that its pid may be signalled.
func CheckLocalServer(s client.ServerStatus) error {
	if !IsLocalHost(s.Host) {
		return fmt.Errorf("server %d on host %q: %w", s.ID, s.Host, ErrNotLocal)
	}
	if s.PID <= 0 {
		return fmt.Errorf("server %d has no pid in the status: %w", s.ID, ErrNotLocal)
	}
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", s.PID))
	if err != nil {
		return fmt.Errorf("server %d pid %d: %v: %w", s.ID, s.PID, err, ErrNotLocal)
	}
	args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
	if !IsServerCmdline(args, s.ID) {
		return fmt.Errorf("server %d pid %d runs %q: %w", s.ID, s.PID, strings.Join(args, " "), ErrNotLocal)
	}
	return nil
}

// kill9 sends SIGKILL to pid (checked with CheckLocalServer first).
func kill9(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return fmt.Errorf("kill -9 %d: %w", pid, err)
	}
	return nil
}

// procGone reports whether pid has exited (gone or a zombie).
func procGone(pid int) bool {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// pid (comm) S ...: the state follows the last ')'.
	i := bytes.LastIndexByte(raw, ')')
	return i < 0 || i+2 >= len(raw) || raw[i+2] == 'Z' || raw[i+2] == 'X'
}

// waitGone waits until pid has exited.
func waitGone(ctx context.Context, pid int) error {
	for !procGone(pid) {
		select {
		case <-ctx.Done():
			return fmt.Errorf("pid %d still running after SIGKILL: %w", pid, ctx.Err())
		case <-time.After(time.Millisecond):
		}
	}
	return nil
}

// ParseVmRSS returns the VmRSS of a /proc/<pid>/status text, in bytes.
func ParseVmRSS(status []byte) (int64, error) {
	for _, line := range strings.Split(string(status), "\n") {
		rest, ok := strings.CutPrefix(line, "VmRSS:")
		if !ok {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return 0, fmt.Errorf("bad VmRSS line %q", line)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("bad VmRSS line %q", line)
		}
		return kb << 10, nil
	}
	return 0, errors.New("no VmRSS line")
}

// ReadRSS returns the resident set size of a local process in bytes.
func ReadRSS(pid int) (int64, error) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	return ParseVmRSS(raw)
}

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
func PrimaryOf(st *client.ClusterStatus, shard int) (client.ServerStatus, error) {
	if shard < 0 || shard >= len(st.Shards) {
		return client.ServerStatus{}, fmt.Errorf("no shard %d (the cluster has %d)", shard, len(st.Shards))
	}
	id := st.Shards[shard].Primary
	for _, s := range st.Servers {
		if s.ID == id {
			return s, nil
		}
	}
	return client.ServerStatus{}, fmt.Errorf("shard %d: primary %d not in the status", shard, id)
}

// Healthy reports whether every server and shard of st is serving; the
// reason when not.
func Healthy(st *client.ClusterStatus) (bool, string) {
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
func Recovered(st *client.ClusterStatus, id, oldPID, shard int) (int, bool) {
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
func statusOf(ctx context.Context, c *client.Client) (*client.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return c.Status(ctx)
}

// waitHealthy polls the status until the cluster is fully serving.
func waitHealthy(ctx context.Context, c *client.Client, timeout time.Duration) (*client.ClusterStatus, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	why := "no status"
	for {
		st, err := statusOf(ctx, c)
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
	if err := CheckLocalServer(victim); err != nil {
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
	if err := kill9(victim.PID); err != nil {
		return rep, err
	}
	mark("kill", fmt.Sprintf("kill -9 server %d (pid %d), primary of shard %d", victim.ID, victim.PID, spec.shard))
	gctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	err = waitGone(gctx, victim.PID)
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

	report KillReport
	done   bool
}

// Fault returns the Config.Fault that performs the kill.
func (k *KillAfter) Fault() Fault {
	return func(ctx context.Context, mark func(kind, detail string)) {
		start := time.Now()
		k.report = KillReport{Shard: k.Shard, WriteGapMs: -1, RecoveredS: -1}
		k.done = true
		c, err := client.Dial(ctx, k.Coord)
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
