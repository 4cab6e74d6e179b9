package coord

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	"ftkv/coord/decide"
	"ftkv/internal/auth"
	"ftkv/internal/metrics"
	"ftkv/status"
	"ftkv/wire"
)

// coordMetrics are the coordinator's Prometheus metrics, served with the
// service-discovery document /sd on Options.MetricsAddr (-metrics).
type coordMetrics struct {
	reg        *metrics.Registry
	heartbeats *metrics.Counter
	handoffs   *metrics.Counter // leads handed to a coordinator the servers reach
	mu         sync.Mutex
	views      map[string]*metrics.Counter // by the core's reason
	actions    map[string]*metrics.Counter // by kind
	logins     map[string]*metrics.Counter // by auth.Logins outcome (fixed at start)
}

func newCoordMetrics() *coordMetrics {
	m := &coordMetrics{reg: metrics.New(true), views: map[string]*metrics.Counter{}, actions: map[string]*metrics.Counter{}}
	m.heartbeats = m.reg.Counter(`ftkv_coord_heartbeats_total`)
	m.handoffs = m.reg.Counter(`ftkv_coord_leader_handoffs_total`)
	// Failovers are published views whose reason is "failover"; the
	// series exist from the start so that rate() sees the first one.
	// The first view of a start and a leader's takeover are views too.
	for _, why := range []string{"failover", "re-seed", "seeded", "hand-back", "start", "takeover"} {
		m.viewCounter(why)
	}
	for _, kind := range []string{"publish", "push", "kill", "spawn", "ask_seed", "freeze"} {
		m.actionCounter(kind)
	}
	m.logins = m.reg.Counters("ftkv_coord_logins_total", "outcome", auth.Logins)
	return m
}

// login counts a login on the client port (auth.VerifierConfig.OnLogin).
func (m *coordMetrics) login(outcome string) {
	if c := m.logins[outcome]; c != nil {
		c.Inc()
	}
}

// published counts a view published for the core's reason why.
func (m *coordMetrics) published(why string) {
	if m != nil {
		m.viewCounter(why).Inc()
	}
}

// heartbeat counts a heartbeat received.
func (m *coordMetrics) heartbeat() {
	if m != nil {
		m.heartbeats.Inc()
	}
}

// handedOff counts a lead handed off by a leader that heard no server.
func (m *coordMetrics) handedOff() {
	if m != nil {
		m.handoffs.Inc()
	}
}

func (m *coordMetrics) viewCounter(why string) *metrics.Counter {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.views[why]
	if c == nil {
		c = m.reg.Counter(`ftkv_coord_views_published_total{why=` + strconv.Quote(why) + `}`)
		m.views[why] = c
	}
	return c
}

func (m *coordMetrics) actionCounter(kind string) *metrics.Counter {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.actions[kind]
	if c == nil {
		c = m.reg.Counter(`ftkv_coord_actions_total{action=` + strconv.Quote(kind) + `}`)
		m.actions[kind] = c
	}
	return c
}

// spawnedAtStart counts a spawn of the start-up, which the core does
// not decide, with the core's spawns.
func (m *coordMetrics) spawnedAtStart() {
	if m != nil {
		m.actionCounter("spawn").Inc()
	}
}

// acted counts the core's actions as the shell starts them. Each
// method is a no-op on a nil m (a Coordinator built by a test).
func (m *coordMetrics) acted(acts []decide.Action) {
	if m == nil {
		return
	}
	for _, a := range acts {
		kind := "other"
		switch a.(type) {
		case decide.Publish:
			kind = "publish"
		case decide.Push:
			kind = "push"
		case decide.Kill:
			kind = "kill"
		case decide.Spawn:
			kind = "spawn"
		case decide.AskSeed:
			kind = "ask_seed"
		case decide.Freeze:
			kind = "freeze"
		}
		m.actionCounter(kind).Inc()
	}
}

// registerGauges adds what is read from the coordinator at scrape time.
func (c *Coordinator) registerGauges() {
	r := c.met.reg
	r.GaugeFunc(`ftkv_coord_view_epoch`, func() float64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		return float64(c.view.Epoch)
	})
	r.GaugeFunc(`ftkv_coord_leader`, func() float64 {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.leading {
			return 1
		}
		return 0
	})
	r.GaugeFunc(`ftkv_coord_raft_term`, func() float64 {
		if c.rn == nil {
			return 0
		}
		return float64(c.rn.r.CurrentTerm())
	})
	r.GaugeFunc(`ftkv_coord_output_buffered_bytes`, func() float64 { return float64(c.budget.Used()) })
	r.Writer(c.writeClusterMetrics)
}

// writeClusterMetrics writes the cluster as status shows it: servers by
// state, shards by state, and per server its keys, sessions, log size
// and heartbeat age as the last heartbeat reported them.
func (c *Coordinator) writeClusterMetrics(w io.Writer) {
	if !c.isStarted() {
		return
	}
	st := c.Status()
	states := map[string]int{"serving": 0, "degraded": 0, "re-seeding": 0, "unavailable": 0, "down": 0, "starting": 0, "silent": 0}
	for _, s := range st.Servers {
		states[s.State]++
		id := strconv.Itoa(s.ID)
		metrics.Sample(w, "ftkv_coord_server_keys", float64(s.PrimaryKeys), "server", id, "role", "primary")
		metrics.Sample(w, "ftkv_coord_server_keys", float64(s.SecondaryKeys), "server", id, "role", "secondary")
		metrics.Sample(w, "ftkv_coord_server_log_bytes", float64(s.LogBytes), "server", id)
		metrics.Sample(w, "ftkv_coord_server_incarnation", float64(s.Incarnation), "server", id)
	}
	for _, name := range sortedKeys(states) {
		metrics.Sample(w, "ftkv_coord_servers", float64(states[name]), "state", name)
	}
	shards := map[string]int{"serving": 0, "degraded": 0, "starting": 0, "unavailable": 0}
	for _, s := range st.Shards {
		shards[s.State]++
	}
	for _, name := range sortedKeys(shards) {
		metrics.Sample(w, "ftkv_coord_shards", float64(shards[name]), "state", name)
	}
}

func (c *Coordinator) isStarted() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.started || c.leading
}

// sdGroup is one entry of Prometheus' HTTP service-discovery document.
type sdGroup struct {
	Targets []string          `json:"targets"`
	Labels  map[string]string `json:"labels"`
}

// serviceDiscovery lists every process's metrics target it knows: this
// coordinator and each server (gateways do not register with the
// coordinator: scrape them from their own -metrics address).
func (c *Coordinator) serviceDiscovery() []sdGroup {
	out := []sdGroup{}
	labels := func(kv ...string) map[string]string {
		m := map[string]string{"job": "ftkv"}
		if c.opts.tls != nil {
			// Every process serves its metrics over HTTPS (Prometheus
			// takes the scheme from this label).
			m["__scheme__"] = "https"
		}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return m
	}
	if c.metricsLn != nil {
		out = append(out, sdGroup{Targets: []string{c.metricsAddr()}, Labels: labels("ftkv_role", "coordinator", "ftkv_coordinator", strconv.Itoa(max(c.opts.ID, 0)))})
	}
	var st *status.Cluster
	switch {
	case c.isLeading():
		st = c.Status()
	case c.isStarted():
		// A follower has no heartbeats: it asks the servers the
		// committed view names.
		st = c.followerTargets()
	}
	if st == nil {
		return out
	}
	for _, s := range st.Servers {
		if s.MetricsAddr == "" {
			continue
		}
		out = append(out, sdGroup{Targets: []string{s.MetricsAddr}, Labels: labels(
			"ftkv_role", "server", "ftkv_server", strconv.Itoa(s.ID), "ftkv_host", s.Host)})
	}
	return out
}

// followerTargets is the status of a follower with each live server's
// metrics address, asked on its control port (for a failure timeout at
// most; one that does not answer is left out). One asking at a time, and
// its answer serves the next failure timeout's requests too: /sd is
// unauthenticated, and each asking dials every server.
func (c *Coordinator) followerTargets() *status.Cluster {
	c.sdAsked.mu.Lock()
	defer c.sdAsked.mu.Unlock()
	if a := &c.sdAsked; a.st != nil && time.Since(a.at) < c.opts.Timing.FailureTimeout {
		return a.st
	}
	st := c.Status()
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timing.FailureTimeout)
	defer cancel()
	var wg sync.WaitGroup
	for i := range st.Servers {
		s := &st.Servers[i]
		if s.CtlAddr == "" {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			cc, err := c.dialCtl(ctx, s.CtlAddr)
			if err != nil {
				return
			}
			defer cc.close()
			if ans, err := cc.roundTrip(ctx, &wire.Frame{Op: wire.OpStatus}); replyErr(ans, err) == nil {
				s.MetricsAddr = string(ans.Key)
			}
		}()
	}
	wg.Wait()
	c.sdAsked.st, c.sdAsked.at = st, time.Now()
	return st
}

// sdAsked is a follower's last asking of the servers for /sd.
type sdAsked struct {
	mu sync.Mutex
	at time.Time
	st *status.Cluster
}

// startMetrics serves /metrics and /sd on Options.MetricsAddr, if set.
func (c *Coordinator) startMetrics() error {
	if c.opts.MetricsAddr == "" {
		return nil
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /sd", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c.serviceDiscovery())
	})
	var tc *tls.Config
	if c.opts.tls != nil {
		tc = c.opts.tls.clients
	}
	l, err := metrics.Listen(c.opts.MetricsAddr, c.met.reg, mux, tc)
	if err != nil {
		return err
	}
	c.metricsLn = l
	c.log.Info().Str("addr", l.Addr()).Msg("metrics listening (/metrics, /sd)")
	return nil
}

// metricsAddr is the address to advertise for /metrics: the bound one,
// with the coordinator's bind address for an unspecified host.
func (c *Coordinator) metricsAddr() string {
	if c.metricsLn == nil {
		return ""
	}
	a := c.metricsLn.Addr()
	host, port, err := net.SplitHostPort(a)
	if err != nil {
		return a
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
		host = c.opts.Bind
		if ip2 := net.ParseIP(host); host == "" || (ip2 != nil && ip2.IsUnspecified()) {
			host = "127.0.0.1"
		}
	}
	return net.JoinHostPort(host, port)
}

// MetricsAddr is where /metrics and /sd are served ("" when off).
func (c *Coordinator) MetricsAddr() string { return c.metricsAddr() }

func sortedKeys(m map[string]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// closeMetrics stops serving /metrics and /sd.
func (c *Coordinator) closeMetrics() {
	if c.metricsLn != nil {
		_ = c.metricsLn.Close()
	}
}
