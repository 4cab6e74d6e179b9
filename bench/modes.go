package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"ftkv/bench/proc"
	"ftkv/client"
	"ftkv/status"
)

// The fault and capacity measurements that are not a load run:
// Failover (kill -9 a primary again and again, time until its shard takes
// writes), Reseed (time a respawned server takes to be re-seeded) and
// Memory (RSS per stored entry). Each drives a running cluster through its
// coordinator and only ever signals local server processes.

// Percentile returns the nearest-rank p-th percentile (0 < p <= 100) of
// vs; 0 for none. vs is not modified.
func Percentile(vs []float64, p float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Median returns the median of vs (the mean of the middle two for an even
// count); 0 for none.
func Median(vs []float64) float64 {
	if len(vs) == 0 {
		return 0
	}
	s := append([]float64(nil), vs...)
	sort.Float64s(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// FailoverConfig configures Failover.
type FailoverConfig struct {
	Coord   string        // coordinator client address
	Kills   int           // how many kills (default 20)
	Recover time.Duration // bound on each recovery (default 60s)
	// Log, when set, gets one line per kill as it happens.
	Log io.Writer
	// Options are given to its client (client.WithAuth, WithTLS).
	Options []client.Option
}

// FailoverResult is the outcome of Failover. Gaps are in milliseconds.
type FailoverResult struct {
	Mode        string       `json:"mode"` // "failover"
	Kills       []KillReport `json:"kills"`
	GapP50Ms    float64      `json:"write_gap_p50_ms"`
	GapP99Ms    float64      `json:"write_gap_p99_ms"`
	GapMaxMs    float64      `json:"write_gap_max_ms"`
	RecoverP50S float64      `json:"recovered_p50_s"`
	RecoverMaxS float64      `json:"recovered_max_s"`
	Error       string       `json:"error,omitempty"`
}

// Failover kills the primary of shard 0, 1, 2, … in turn, Kills times:
// each time it measures the write gap (kill -9 until a write to that
// shard, sent after the process is gone, is acknowledged) and waits for the
// cluster to be whole again before the next kill.
func Failover(ctx context.Context, cfg FailoverConfig) (*FailoverResult, error) {
	if cfg.Kills <= 0 {
		cfg.Kills = 20
	}
	if cfg.Recover <= 0 {
		cfg.Recover = 60 * time.Second
	}
	res := &FailoverResult{Mode: "failover"}
	c, err := client.Dial(ctx, cfg.Coord, cfg.Options...)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	st, err := waitHealthy(ctx, c, cfg.Recover)
	if err != nil {
		return nil, err
	}
	n := len(st.Shards)
	var gaps, recs []float64
	for i := 0; i < cfg.Kills; i++ {
		rep, err := killPrimary(ctx, c, killSpec{shard: i % n, gapTimeout: cfg.Recover, recover: true, recoverWait: cfg.Recover})
		if rep.WriteGapMs >= 0 {
			res.Kills = append(res.Kills, rep)
			gaps = append(gaps, rep.WriteGapMs)
		}
		if rep.RecoveredS >= 0 {
			recs = append(recs, rep.RecoveredS)
		}
		if cfg.Log != nil && err == nil {
			fmt.Fprintf(cfg.Log, "kill %2d/%d: server %d (pid %d, shard %d): writable after %s, whole again after %s (pid %d)\n",
				i+1, cfg.Kills, rep.Server, rep.PID, rep.Shard, msText(rep.WriteGapMs), secText(rep.RecoveredS), rep.NewPID)
		}
		if err != nil {
			res.Error = fmt.Sprintf("kill %d: %v", i+1, err)
			break
		}
	}
	res.GapP50Ms, res.GapP99Ms, res.GapMaxMs = Percentile(gaps, 50), Percentile(gaps, 99), Percentile(gaps, 100)
	res.RecoverP50S, res.RecoverMaxS = Percentile(recs, 50), Percentile(recs, 100)
	if res.Error != "" {
		return res, fmt.Errorf("%s", res.Error)
	}
	return res, nil
}

// WriteText prints the failover result for a human.
func (r *FailoverResult) WriteText(w io.Writer) error {
	_, err := fmt.Fprintf(w, "failover    %d kills: write gap p50 %s  p99 %s  max %s; whole again p50 %s  max %s\n",
		len(r.Kills), msText(r.GapP50Ms), msText(r.GapP99Ms), msText(r.GapMaxMs), secText(r.RecoverP50S), secText(r.RecoverMaxS))
	return err
}

func msText(ms float64) string {
	if ms < 0 {
		return "-"
	}
	return FormatMicros(int64(ms * 1000))
}

func secText(s float64) string {
	if s < 0 {
		return "-"
	}
	return FormatMicros(int64(s * 1e6))
}

// ReseedConfig configures Reseed.
type ReseedConfig struct {
	Coord   string
	Load    Config // the preload: Keys entries of ValueSize bytes (Connections, Pipeline)
	Server  int    // the server to kill
	Recover time.Duration
	// ServerLog, when set, is the cluster's log file (bin/coord -l); the
	// "re-seeding sent" lines the neighbours write after the kill are
	// read from it.
	ServerLog string
	Log       io.Writer       // progress lines; may be nil
	Options   []client.Option // given to its clients (client.WithAuth, WithTLS)
}

// ReseedResult is the outcome of Reseed.
type ReseedResult struct {
	Mode         string         `json:"mode"` // "reseed"
	Preload      *PreloadResult `json:"preload,omitempty"`
	Server       int            `json:"server"`
	PID          int            `json:"pid"`
	NewPID       int            `json:"new_pid"`
	Entries      uint64         `json:"entries"`       // primary + secondary keys of the server before the kill: what it gets back
	EntriesAfter uint64         `json:"entries_after"` // the same once serving again (status counts lag by a heartbeat)
	RespawnS     float64        `json:"respawn_s"`     // kill -> the new process first seen in the status
	SeedingS     float64        `json:"seeding_s"`     // first seen -> serving (polled every 10ms; heartbeat-bound)
	// CatchUpS is the first status that showed the new process past
	// "starting" (spawned, recovering its own log, not yet reported) ->
	// serving: the re-seeding or partial resync alone, without the
	// respawn and the server's own recovery. When no status caught it
	// re-seeding, from the last one that showed it starting (an upper
	// bound, by one poll).
	CatchUpS  float64    `json:"catch_up_s"`
	ServingS  float64    `json:"serving_s"`    // kill -> serving
	StatusEPS float64    `json:"status_eps"`   // Entries / SeedingS: a lower bound
	Sent      []SeedSent `json:"seeding_sent"` // from the log, when given
	LogEPS    float64    `json:"log_eps"`      // sum of entries sent / longest send
	// With data directories, from the log: the respawned server's
	// recovery from its own log, and the partial resyncs its primaries
	// sent instead of full re-seedings.
	Recovered  []SeedSent `json:"recovered,omitempty"`      // "log recovered": entries replayed
	RecoverEPS float64    `json:"recovery_eps"`             // entries replayed per second
	Resynced   []SeedSent `json:"partial_resync,omitempty"` // "partial resync done": entries sent
	ResyncEPS  float64    `json:"resync_eps"`               // sum of entries resent / longest resync
	Error      string     `json:"error,omitempty"`
}

// SeedSent is one "re-seeding sent" line of a server's log.
type SeedSent struct {
	Node          int     `json:"node"`
	Entries       int64   `json:"entries"`
	TookMs        float64 `json:"took_ms"`
	EntriesPerSec float64 `json:"entries_per_sec"`
}

// ParseSeedSent reads the "re-seeding sent" lines of a zerolog JSON log.
func ParseSeedSent(r io.Reader) ([]SeedSent, error) {
	return parseLogRates(r, "re-seeding sent")
}

// Log lines of servers with data directories that -mode reseed reads.
const (
	msgRecovered = "log recovered"       // a server replayed its log at start
	msgResynced  = "partial resync done" // a primary caught a secondary up from its log
)

// parseLogRates reads the lines with message msg (entries, took_ms) of a
// zerolog JSON log.
func parseLogRates(r io.Reader, msg string) ([]SeedSent, error) {
	var out []SeedSent
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Bytes()
		if !strings.Contains(string(line), `"`+msg+`"`) {
			continue
		}
		var l struct {
			Node    int     `json:"node"`
			Entries int64   `json:"entries"`
			TookMs  float64 `json:"took_ms"`
			Took    float64 `json:"took"` // older servers: zerolog's Dur, in ms
			EPS     float64 `json:"entries_per_sec"`
			Message string  `json:"message"`
		}
		if err := json.Unmarshal(line, &l); err != nil || l.Message != msg {
			continue
		}
		took := l.TookMs
		if took == 0 {
			took = l.Took
		}
		eps := l.EPS
		if eps == 0 && took > 0 {
			eps = float64(l.Entries) / (took / 1000)
		}
		out = append(out, SeedSent{Node: l.Node, Entries: l.Entries, TookMs: took, EntriesPerSec: eps})
	}
	return out, sc.Err()
}

// SeedRate is the combined rate of sends that ran in parallel: all their
// entries over the longest of them.
func SeedRate(sent []SeedSent) float64 {
	var entries int64
	var longest float64
	for _, s := range sent {
		entries += s.Entries
		longest = max(longest, s.TookMs)
	}
	if longest <= 0 {
		return 0
	}
	return float64(entries) / (longest / 1000)
}

// Reseed loads cfg.Load.Keys entries, kill -9s cfg.Server and times its
// respawn and re-seeding until the status shows it serving.
func Reseed(ctx context.Context, cfg ReseedConfig) (*ReseedResult, error) {
	if cfg.Recover <= 0 {
		cfg.Recover = 120 * time.Second
	}
	res := &ReseedResult{Mode: "reseed", Server: cfg.Server}
	c, err := client.Dial(ctx, cfg.Coord, cfg.Options...)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	if _, err := waitHealthy(ctx, c, cfg.Recover); err != nil {
		return nil, err
	}
	logf(cfg.Log, "loading %d entries of %d bytes", cfg.Load.Keys, cfg.Load.ValueSize)
	p, err := Preload(ctx, cfg.Load, FTKV(cfg.Coord, cfg.Options...))
	res.Preload = p
	if err != nil {
		return res, err
	}
	st, err := waitHealthy(ctx, c, cfg.Recover) // never kill into a recovery under way
	if err != nil {
		return res, err
	}
	var victim *status.Server
	for i := range st.Servers {
		if st.Servers[i].ID == cfg.Server {
			victim = &st.Servers[i]
		}
	}
	if victim == nil {
		return res, fmt.Errorf("no server %d in the status", cfg.Server)
	}
	res.PID = victim.PID
	if err := proc.CheckLocalServer(*victim); err != nil {
		return res, err
	}
	var logOffset int64 = -1
	if cfg.ServerLog != "" {
		if fi, err := os.Stat(cfg.ServerLog); err == nil {
			logOffset = fi.Size()
		} else {
			return res, fmt.Errorf("server log: %w", err)
		}
	}
	res.Entries = victim.PrimaryKeys + victim.SecondaryKeys
	logf(cfg.Log, "kill -9 server %d (pid %d: %d primary + %d secondary entries)", victim.ID, victim.PID, victim.PrimaryKeys, victim.SecondaryKeys)
	killed := time.Now()
	if err := proc.Kill9(victim.PID); err != nil {
		return res, err
	}
	rctx, cancel := context.WithTimeout(ctx, cfg.Recover)
	defer cancel()
	var seen, starting, reported time.Time
	for {
		st, err := statusOf(rctx, c)
		now := time.Now()
		if err == nil {
			for _, s := range st.Servers {
				if s.ID != victim.ID || s.PID == victim.PID || s.PID <= 0 {
					continue
				}
				if seen.IsZero() {
					seen = now
					res.NewPID = s.PID
					res.RespawnS = now.Sub(killed).Seconds()
				}
				switch {
				case !reported.IsZero():
				case s.State == "starting" || s.State == "down":
					starting = now
				default:
					reported = now
				}
				if s.State == "serving" {
					res.EntriesAfter = s.PrimaryKeys + s.SecondaryKeys
					res.ServingS = now.Sub(killed).Seconds()
					res.SeedingS = now.Sub(seen).Seconds()
					switch {
					case !reported.IsZero() && reported.Before(now):
						res.CatchUpS = now.Sub(reported).Seconds()
					case !starting.IsZero():
						res.CatchUpS = now.Sub(starting).Seconds()
					default:
						res.CatchUpS = res.SeedingS
					}
					if res.SeedingS > 0 {
						res.StatusEPS = float64(res.Entries) / res.SeedingS
					}
				}
			}
		}
		if res.ServingS > 0 {
			break
		}
		select {
		case <-rctx.Done():
			return res, fmt.Errorf("server %d not serving within %s of the kill", victim.ID, cfg.Recover)
		case <-time.After(10 * time.Millisecond):
		}
	}
	if logOffset >= 0 {
		// The neighbours log their sends when the last ack is in; give the
		// lines a moment to reach the file.
		time.Sleep(200 * time.Millisecond)
		f, err := os.Open(cfg.ServerLog)
		if err != nil {
			return res, err
		}
		defer f.Close()
		if _, err := f.Seek(logOffset, io.SeekStart); err != nil {
			return res, err
		}
		b, err := io.ReadAll(f)
		if err != nil {
			return res, err
		}
		if res.Sent, err = ParseSeedSent(bytes.NewReader(b)); err != nil {
			return res, err
		}
		res.LogEPS = SeedRate(res.Sent)
		if res.Recovered, err = parseLogRates(bytes.NewReader(b), msgRecovered); err != nil {
			return res, err
		}
		res.RecoverEPS = SeedRate(res.Recovered)
		if res.Resynced, err = parseLogRates(bytes.NewReader(b), msgResynced); err != nil {
			return res, err
		}
		res.ResyncEPS = SeedRate(res.Resynced)
	}
	return res, nil
}

// WriteText prints the re-seed result for a human.
func (r *ReseedResult) WriteText(w io.Writer) error {
	var b strings.Builder
	if p := r.Preload; p != nil {
		fmt.Fprintf(&b, "preload     %d entries in %.2fs (%s puts/s)\n", p.Keys, p.Seconds, FormatRate(p.PutsPerSec))
	}
	fmt.Fprintf(&b, "killed      server %d (pid %d); respawned as pid %d, seen %s after the kill\n",
		r.Server, r.PID, r.NewPID, secText(r.RespawnS))
	fmt.Fprintf(&b, "serving     %s after the kill, %s after the respawn was seen; held %d entries before the kill (%d in the first status after)\n",
		secText(r.ServingS), secText(r.SeedingS), r.Entries, r.EntriesAfter)
	fmt.Fprintf(&b, "catch-up    %s from the first status showing it past starting (its own log recovered) to serving\n", secText(r.CatchUpS))
	fmt.Fprintf(&b, "status rate %s entries/s (entries / time from respawn seen to serving; status polled every 10ms)\n",
		FormatRate(r.StatusEPS))
	for _, s := range r.Sent {
		fmt.Fprintf(&b, "  node %d sent %d entries in %s (%s entries/s)\n", s.Node, s.Entries, msText(s.TookMs), FormatRate(s.EntriesPerSec))
	}
	if len(r.Sent) > 0 {
		fmt.Fprintf(&b, "log rate    %s entries/s (entries sent by both neighbours / the longer send)\n", FormatRate(r.LogEPS))
	}
	for _, s := range r.Recovered {
		fmt.Fprintf(&b, "recovery    node %d replayed %d entries from its log in %s (%s entries/s)\n", s.Node, s.Entries, msText(s.TookMs), FormatRate(s.EntriesPerSec))
	}
	for _, s := range r.Resynced {
		fmt.Fprintf(&b, "resync      node %d sent %d entries from its log in %s (partial resync instead of a full re-seeding)\n", s.Node, s.Entries, msText(s.TookMs))
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// MemoryConfig configures Memory.
type MemoryConfig struct {
	Coord   string
	Load    Config        // Keys entries of ValueSize bytes
	Settle  time.Duration // pause between the load and the second reading
	Log     io.Writer
	Options []client.Option // given to its clients (client.WithAuth, WithTLS)
}

// MemoryServer is one server's reading.
type MemoryServer struct {
	ID          int     `json:"id"`
	PID         int     `json:"pid"`
	RSSBefore   int64   `json:"rss_before"`
	RSSAfter    int64   `json:"rss_after"`
	Entries     int64   `json:"entries"` // primary + secondary entries added
	BytesPerEnt float64 `json:"bytes_per_entry"`
	Overhead    float64 `json:"overhead_per_entry"` // beyond key+value bytes
}

// MemoryResult is the outcome of Memory.
type MemoryResult struct {
	Mode     string         `json:"mode"` // "memory"
	Preload  *PreloadResult `json:"preload,omitempty"`
	KeyBytes int            `json:"key_bytes"`
	ValBytes int            `json:"value_bytes"`
	Servers  []MemoryServer `json:"servers"`
	Overhead float64        `json:"overhead_per_entry"` // all servers: sum ΔRSS / sum entries − key − value
}

// Overhead returns the memory per entry beyond key and value bytes:
// ΔRSS / entries − (keyBytes + valueBytes).
func Overhead(rssDelta, entries int64, keyBytes, valueBytes int) float64 {
	if entries <= 0 {
		return 0
	}
	return float64(rssDelta)/float64(entries) - float64(keyBytes+valueBytes)
}

// Memory reads every server's RSS, loads cfg.Load.Keys entries (each
// stored twice: primary and secondary), waits cfg.Settle and reads the RSS
// again: the growth per entry held, beyond the key and value bytes, is the
// overhead.
func Memory(ctx context.Context, cfg MemoryConfig) (*MemoryResult, error) {
	c, err := client.Dial(ctx, cfg.Coord, cfg.Options...)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	before, err := waitHealthy(ctx, c, 30*time.Second)
	if err != nil {
		return nil, err
	}
	res := &MemoryResult{Mode: "memory", KeyBytes: len(AppendKey(nil, max(cfg.Load.Keys-1, 0))), ValBytes: cfg.Load.ValueSize}
	for _, s := range before.Servers {
		if err := proc.CheckLocalServer(s); err != nil {
			return nil, err
		}
		rss, err := proc.ReadRSS(s.PID)
		if err != nil {
			return nil, err
		}
		res.Servers = append(res.Servers, MemoryServer{ID: s.ID, PID: s.PID, RSSBefore: rss,
			Entries: -int64(s.PrimaryKeys + s.SecondaryKeys)})
	}
	logf(cfg.Log, "loading %d entries of %d bytes", cfg.Load.Keys, cfg.Load.ValueSize)
	p, err := Preload(ctx, cfg.Load, FTKV(cfg.Coord, cfg.Options...))
	res.Preload = p
	if err != nil {
		return res, err
	}
	// The status counts come with heartbeats: wait for them to show the load.
	var held0 int64
	for _, m := range res.Servers {
		held0 -= m.Entries
	}
	after, err := waitCounts(ctx, c, held0+2*int64(cfg.Load.Keys), 10*time.Second)
	if err != nil {
		return res, err
	}
	select {
	case <-ctx.Done():
		return res, ctx.Err()
	case <-time.After(cfg.Settle):
	}
	var delta, entries int64
	for i := range res.Servers {
		m := &res.Servers[i]
		for _, s := range after.Servers {
			if s.ID != m.ID {
				continue
			}
			if s.PID != m.PID {
				return res, fmt.Errorf("server %d restarted during the load (pid %d, was %d)", s.ID, s.PID, m.PID)
			}
			m.Entries += int64(s.PrimaryKeys + s.SecondaryKeys)
		}
		if m.RSSAfter, err = proc.ReadRSS(m.PID); err != nil {
			return res, err
		}
		d := m.RSSAfter - m.RSSBefore
		if m.Entries > 0 {
			m.BytesPerEnt = float64(d) / float64(m.Entries)
		}
		m.Overhead = Overhead(d, m.Entries, res.KeyBytes, res.ValBytes)
		delta += d
		entries += m.Entries
	}
	res.Overhead = Overhead(delta, entries, res.KeyBytes, res.ValBytes)
	if entries < int64(cfg.Load.Keys) { // two copies of each new key expected
		return res, fmt.Errorf("the servers hold only %d more entries after loading %d keys: run memory mode on a fresh cluster (these keys were there already)",
			entries, cfg.Load.Keys)
	}
	return res, nil
}

// waitCounts polls the status until the servers' primary and secondary
// counts add up to at least want, or timeout passes; it returns the last
// status either way (nil only with an error).
func waitCounts(ctx context.Context, c *client.Client, want int64, timeout time.Duration) (*status.Cluster, error) {
	deadline := time.Now().Add(timeout)
	for {
		st, err := statusOf(ctx, c)
		if err != nil {
			return nil, err
		}
		var held int64
		for _, s := range st.Servers {
			held += int64(s.PrimaryKeys + s.SecondaryKeys)
		}
		if held >= want || time.Now().After(deadline) {
			return st, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// WriteText prints the memory result for a human.
func (r *MemoryResult) WriteText(w io.Writer) error {
	var b strings.Builder
	if p := r.Preload; p != nil {
		fmt.Fprintf(&b, "preload     %d entries in %.2fs (%s puts/s)\n", p.Keys, p.Seconds, FormatRate(p.PutsPerSec))
	}
	fmt.Fprintf(&b, "entry       %d B key + %d B value\n", r.KeyBytes, r.ValBytes)
	for _, s := range r.Servers {
		fmt.Fprintf(&b, "server %d    pid %d: RSS %s -> %s for %d entries (primary+secondary): %.1f B/entry, overhead %.1f B\n",
			s.ID, s.PID, mib(s.RSSBefore), mib(s.RSSAfter), s.Entries, s.BytesPerEnt, s.Overhead)
	}
	fmt.Fprintf(&b, "overhead    %.1f B per entry beyond key+value (all servers)\n", r.Overhead)
	_, err := io.WriteString(w, b.String())
	return err
}

func mib(b int64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }

func logf(w io.Writer, format string, args ...any) {
	if w != nil {
		fmt.Fprintf(w, format+"\n", args...)
	}
}
