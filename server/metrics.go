package server

import (
	"crypto/tls"
	"io"
	"net"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"ftkv/internal/auth"
	"ftkv/internal/connlimit"
	"ftkv/internal/metrics"
	"ftkv/wire"
)

// serverMetrics are one server's Prometheus metrics (served at
// Config.MetricsPort's /metrics). The hot path only increments counters
// and observes histograms; everything else is read at scrape time.
type serverMetrics struct {
	reg *metrics.Registry
	// ops[op][status]: answers to clients, by operation and outcome.
	ops [opSlots][statusSlots]*metrics.Counter
	lat [opSlots]*metrics.Histogram // arrival of the request to its answer

	syncLat    *metrics.Histogram // write-ahead log fsyncs
	seedSent   *metrics.Counter   // entries sent re-seeding secondaries
	seedRecv   *metrics.Counter   // entries received re-seeding copies
	seeds      [2]*metrics.Counter
	logins     map[string]*metrics.Counter // by auth.Logins outcome (fixed at start)
	seedTarget atomic.Int64                // entries to send in the re-seedings running
	seedDone   atomic.Int64                // entries sent in the re-seedings running

	client   *connlimit.Port   // the client port (set by Run)
	budget   *connlimit.Budget // output bytes queued on every port (set by Run)
	inflight *connlimit.Budget // bytes of clients' writes in flight (set by Run)
}

const (
	opSlots     = int(wire.OpAppend) + 1
	statusSlots = int(wire.StatusNotLeader) + 1
)

// epoch0 is the base of the monotonic timestamps stamped on requests.
var epoch0 = time.Now()

// monoNow is a monotonic timestamp (ns since epoch0) for latencies.
func monoNow() int64 { return int64(time.Since(epoch0)) }

func newServerMetrics() *serverMetrics {
	m := &serverMetrics{reg: metrics.New(true)}
	for op := wire.OpGet; int(op) < opSlots; op++ {
		name := strings.ToLower(op.String())
		for st := wire.StatusOK; int(st) < statusSlots; st++ {
			m.ops[op][st] = m.reg.Counter(`ftkv_server_ops_total{op="` + name + `",outcome="` + strings.ToLower(st.String()) + `"}`)
		}
		m.lat[op] = m.reg.Histogram(`ftkv_server_op_duration_seconds{op="` + name + `"}`)
	}
	m.syncLat = m.reg.Histogram(`ftkv_server_wal_fsync_duration_seconds`)
	m.seedSent = m.reg.Counter(`ftkv_server_reseed_sent_entries_total`)
	m.seedRecv = m.reg.Counter(`ftkv_server_reseed_received_entries_total`)
	m.seeds[0] = m.reg.Counter(`ftkv_server_reseeds_total{outcome="ok"}`)
	m.seeds[1] = m.reg.Counter(`ftkv_server_reseeds_total{outcome="failed"}`)
	m.logins = m.reg.Counters("ftkv_server_logins_total", "outcome", auth.Logins)
	return m
}

// login counts a login on the client port (auth.VerifierConfig.OnLogin).
func (m *serverMetrics) login(outcome string) {
	if c := m.logins[outcome]; c != nil {
		c.Inc()
	}
}

// answered counts n answers to op with status st.
func (m *serverMetrics) answered(op wire.Op, st wire.Status, n int) {
	op = metricOp(op)
	if int(op) < opSlots && int(st) < statusSlots && op != wire.OpInvalid && n > 0 {
		m.ops[op][st].Add(n)
	}
}

// answeredFrame counts the answer frame enc (as wire.Append wrote it) to
// a request for op, and reports whether it answered a read.
func (m *serverMetrics) answeredFrame(op wire.Op, enc []byte) bool {
	if len(enc) < wire.HeaderSize {
		return false
	}
	m.answered(op, wire.Status(enc[statusOffset]), 1)
	return op == wire.OpGet
}

// metricOp is the op a request is counted under: a compare-and-delete
// as the compare-and-swap it is.
func metricOp(op wire.Op) wire.Op {
	if op == wire.OpCAD {
		return wire.OpCAS
	}
	return op
}

// statusOffset is where wire.Append puts a frame's status (checked by
// TestMetricsStatusOffset).
const statusOffset = 6

// observe records the latency of n answers to op, for a request that
// arrived at start (monoNow).
func (m *serverMetrics) observe(op wire.Op, start int64, n int) {
	op = metricOp(op)
	if int(op) >= opSlots || op == wire.OpInvalid || start == 0 {
		return
	}
	d := float64(monoNow()-start) / 1e9
	for range n {
		m.lat[op].Update(d)
	}
}

// observeSync records one fsync of the write-ahead log (wal.Options.OnSync).
func (m *serverMetrics) observeSync(d time.Duration) { m.syncLat.Update(d.Seconds()) }

// seedStarted, seedProgress and seedEnded follow one re-seeding sent by
// a primary: total entries, then n more sent, then the end.
// Each is a no-op on a nil m (a primary built by a test).
func (m *serverMetrics) seedStarted(ss *seedSender) {
	if m != nil {
		m.seedTarget.Add(int64(ss.total))
	}
}

func (m *serverMetrics) seedProgress(ss *seedSender) {
	if n := ss.entries - ss.reported; m != nil && n > 0 {
		m.seedSent.Add(n)
		m.seedDone.Add(int64(n))
	}
	ss.reported = ss.entries
}

func (m *serverMetrics) seedEnded(ss *seedSender) {
	if m != nil {
		m.seedTarget.Add(-int64(ss.total))
		m.seedDone.Add(-int64(ss.reported))
	}
}

// seedResult counts a finished re-seeding (sent or resynced).
func (m *serverMetrics) seedResult(err error) {
	if m == nil {
		return
	}
	if err != nil {
		m.seeds[1].Inc()
	} else {
		m.seeds[0].Inc()
	}
}

// metrics is p's server's (nil for a primary built by a test).
func (p *primary) metrics() *serverMetrics {
	if p.env.srv == nil {
		return nil
	}
	return p.env.srv.met
}

// registerGauges adds the metrics read at scrape time from s.
func (s *Server) registerGauges() {
	m, r := s.met, s.met.reg
	b2f := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	r.GaugeFunc(`ftkv_server_view_epoch`, func() float64 { return float64(s.appliedEpoch.Load()) })
	r.GaugeFunc(`ftkv_server_client_connections`, func() float64 {
		if m.client == nil {
			return 0
		}
		return float64(m.client.Open())
	})
	r.GaugeFunc(`ftkv_server_output_buffered_bytes`, func() float64 {
		if m.budget == nil {
			return 0
		}
		return float64(m.budget.Used())
	})
	r.GaugeFunc(`ftkv_server_inflight_bytes`, func() float64 {
		if m.inflight == nil {
			return 0
		}
		return float64(m.inflight.Used())
	})
	r.GaugeFunc(`ftkv_server_client_connections_rejected_total`, func() float64 {
		if m.client == nil {
			return 0
		}
		return float64(m.client.Rejected())
	})
	r.GaugeFunc(`ftkv_server_client_connections_limit_closed_total`, func() float64 {
		if m.client == nil {
			return 0
		}
		return float64(m.client.LimitClosed() + m.client.Evicted())
	})
	r.GaugeFunc(`ftkv_server_client_connections_output_evicted_total`, func() float64 {
		if m.client == nil {
			return 0
		}
		return float64(m.client.OutputEvicted())
	})
	r.GaugeFunc(`ftkv_server_dedup_sessions`, func() float64 { n, _ := s.dd.stats(); return float64(n) })
	r.GaugeFunc(`ftkv_server_dedup_records`, func() float64 { _, n := s.dd.stats(); return float64(n) })
	r.GaugeFunc(`ftkv_server_dedup_held_bytes`, func() float64 { return float64(max(s.dd.held.Load(), 0)) })
	r.GaugeFunc(`ftkv_server_reseed_pending_entries`, func() float64 {
		return float64(max(m.seedTarget.Load()-m.seedDone.Load(), 0))
	})
	r.GaugeFunc(`ftkv_server_reseed_progress_ratio`, func() float64 {
		t := m.seedTarget.Load()
		if t <= 0 {
			return 1
		}
		return float64(m.seedDone.Load()) / float64(t)
	})
	r.GaugeFunc(`ftkv_server_wal_bytes`, func() float64 {
		if s.dur == nil {
			return 0
		}
		return float64(s.dur.report().LogBytes)
	})
	r.GaugeFunc(`ftkv_server_snapshot_bytes`, func() float64 {
		if s.dur == nil {
			return 0
		}
		return float64(s.dur.report().SnapshotBytes)
	})
	r.GaugeFunc(`ftkv_server_wal_failed`, func() float64 { return b2f(s.dur != nil && s.dur.report().Failed) })
	r.Writer(s.writeShardMetrics)
}

// writeShardMetrics writes the per-shard series: keys held, and for each
// shard led, the replication lag (log indexes sequenced here and not yet
// acknowledged by the secondary) and the writes in flight; for each copy
// kept, its last applied index and whether it is being re-seeded.
func (s *Server) writeShardMetrics(w io.Writer) {
	vs := s.view.Load()
	type tab struct {
		shard int
		role  string
		keys  int
	}
	var tabs []tab
	s.mu.Lock()
	for shard, t := range s.tables {
		role := "secondary"
		if vs != nil && shard < len(vs.v.Shards) && int(vs.v.Shards[shard].Primary) == vs.me {
			role = "primary"
		}
		tabs = append(tabs, tab{shard, role, t.len()})
	}
	prims := make(map[int]*primary, len(s.prims))
	for shard, p := range s.prims {
		prims[shard] = p
	}
	s.mu.Unlock()
	sort.Slice(tabs, func(i, j int) bool { return tabs[i].shard < tabs[j].shard })
	for _, t := range tabs {
		metrics.Sample(w, "ftkv_server_keys", float64(t.keys), "shard", strconv.Itoa(t.shard), "role", t.role)
	}
	shards := make([]int, 0, len(prims))
	for shard := range prims {
		shards = append(shards, shard)
	}
	sort.Ints(shards)
	for _, shard := range shards {
		p := prims[shard]
		p.mu.Lock()
		lag, inflight, next := p.nextIndex-min(p.committed, p.nextIndex), len(p.inflight), p.nextIndex
		linked := p.link != nil
		p.mu.Unlock()
		sh := strconv.Itoa(shard)
		metrics.Sample(w, "ftkv_server_replication_lag_entries", float64(lag), "shard", sh)
		metrics.Sample(w, "ftkv_server_inflight_writes", float64(inflight), "shard", sh)
		metrics.Sample(w, "ftkv_server_log_index", float64(next), "shard", sh, "role", "primary")
		if linked {
			metrics.Sample(w, "ftkv_server_replication_linked", 1, "shard", sh)
		} else {
			metrics.Sample(w, "ftkv_server_replication_linked", 0, "shard", sh)
		}
	}
	s.secMu.Lock()
	secs := make([]*secState, 0, len(s.sec))
	for _, st := range s.sec {
		secs = append(secs, st)
	}
	s.secMu.Unlock()
	sort.Slice(secs, func(i, j int) bool { return secs[i].shard < secs[j].shard })
	for _, st := range secs {
		st.mu.Lock()
		last, seeding := st.last, st.seeding || st.resync
		st.mu.Unlock()
		sh := strconv.Itoa(st.shard)
		metrics.Sample(w, "ftkv_server_log_index", float64(last), "shard", sh, "role", "secondary")
		v := 0.0
		if seeding {
			v = 1
		}
		metrics.Sample(w, "ftkv_server_reseeding", v, "shard", sh)
	}
}

// startMetrics serves /metrics on the client port's host at
// Config.MetricsPort (negative: not at all) and records the address to
// advertise.
func (s *Server) startMetrics() error {
	if s.cfg.MetricsPort < 0 {
		return nil
	}
	var tc *tls.Config
	if s.tls != nil {
		tc = s.tls.client
	}
	l, err := metrics.Listen(net.JoinHostPort(s.cfg.BindHost, strconv.Itoa(s.cfg.MetricsPort)), s.met.reg, nil, tc)
	if err != nil {
		return err
	}
	s.metricsLn = l
	port := 0
	if _, p, err := net.SplitHostPort(l.Addr()); err == nil {
		port, _ = strconv.Atoi(p)
	}
	s.addrs.metrics = net.JoinHostPort(s.cfg.AdvertiseHost, strconv.Itoa(port))
	return nil
}

// MetricsAddr is the advertised address of /metrics ("" when off).
func (s *Server) MetricsAddr() string { return s.addrs.metrics }

// answerWrite counts the n answers answerWaiters gave to the write e
// (refused with refuse, or its outcome) and the latency of the first
// attempt's.
func (m *serverMetrics) answerWrite(e *entry, refuse string, n int) {
	st := wire.StatusUnavailable
	if refuse == "" && e.out != nil {
		st = e.out.status
	}
	m.answered(e.op, st, n)
	if e.c != nil {
		m.observe(e.op, e.start, 1)
	}
}

// refused counts a write answered st before it was sequenced. m may be
// nil (a request built by a test).
func (m *serverMetrics) refused(r *wreq, st wire.Status) {
	if m != nil {
		m.answered(r.op, st, 1)
		m.observe(r.op, r.start, 1)
	}
}

// claimed counts the writes the dedup records answer at once: a retry
// of a finished write, or one refused (below the floor, too many in
// flight, session expired). m may be nil.
func (m *serverMetrics) claimed(r *wreq, cl claim, o *outcome) {
	if m == nil {
		return
	}
	switch cl {
	case claimStale:
		m.refused(r, wire.StatusBadRequest)
	case claimTooMany:
		m.refused(r, wire.StatusUnavailable)
	case claimExpired:
		m.refused(r, wire.StatusSessionExpired)
	case claimDone:
		m.refused(r, o.status)
	}
}

// seedReceived counts n entries of a re-seeding applied here.
func (m *serverMetrics) seedReceived(n int) {
	if m != nil && n > 0 {
		m.seedRecv.Add(n)
	}
}
