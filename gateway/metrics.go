package gateway

import (
	"crypto/tls"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"ftkv/internal/auth"
	"ftkv/internal/metrics"
)

// Metrics are a gateway's Prometheus metrics: commands by name and
// outcome, their latency, and the RESP connections open. Its Observe is
// Config.Observe; Listen serves /metrics.
type Metrics struct {
	reg    *metrics.Registry
	mu     sync.Mutex                            // serialises adding series
	cmd    atomic.Pointer[map[string]*cmdSeries] // by command; copied on write (Observe takes no lock and allocates nothing)
	logins map[string]*metrics.Counter           // by outcome (fixed at start)
}

// cmdSeries are one command's series.
type cmdSeries struct {
	hist     *metrics.Histogram
	ok       atomic.Pointer[metrics.Counter]             // outcome "ok", once observed
	outcomes atomic.Pointer[map[string]*metrics.Counter] // the others; copied on write
}

// NewMetrics returns a gateway's metrics (with the process's go_* and
// process_* series).
func NewMetrics() *Metrics {
	m := &Metrics{reg: metrics.New(true)}
	m.logins = m.reg.Counters("ftkv_gateway_logins_total", "outcome", auth.Logins)
	return m
}

// Login counts a client's login by its outcome; it is the gateway's
// Config.OnLogin.
func (m *Metrics) Login(outcome string) {
	if c := m.logins[outcome]; c != nil {
		c.Inc()
	}
}

// Attach adds the gauges read from g at scrape time.
func (m *Metrics) Attach(g *Gateway) {
	m.reg.GaugeFunc(`ftkv_gateway_connections`, func() float64 { return float64(g.Clients()) })
	m.reg.GaugeFunc(`ftkv_gateway_queued_bytes`, func() float64 { return float64(g.Queued()) })
	m.reg.GaugeFunc(`ftkv_gateway_connections_rejected_total`, func() float64 { r, _, _ := g.Closed(); return float64(r) })
	m.reg.GaugeFunc(`ftkv_gateway_connections_limit_closed_total`, func() float64 { _, l, _ := g.Closed(); return float64(l) })
	m.reg.GaugeFunc(`ftkv_gateway_connections_output_evicted_total`, func() float64 { _, _, e := g.Closed(); return float64(e) })
	m.reg.GaugeFunc(`ftkv_gateway_uptime_seconds`, func() float64 { return time.Since(g.started).Seconds() })
}

// Listen serves /metrics on addr until the returned listener is closed:
// over HTTPS with tc (the gateway's -tls-cert, as its other ports), over
// plain HTTP with tc nil.
func (m *Metrics) Listen(addr string, tc *tls.Config) (*metrics.Listener, error) {
	return metrics.Listen(addr, m.reg, nil, tc)
}

// Observe counts one command answered after d with err (nil: success);
// it is the gateway's Config.Observe.
func (m *Metrics) Observe(cmd string, d time.Duration, err error) {
	cs := m.series(cmd)
	if err == nil {
		c := cs.ok.Load()
		if c == nil {
			c = m.counter(cs, cmd, "ok")
			cs.ok.Store(c)
		}
		c.Inc()
	} else {
		m.counter(cs, cmd, errorCode(err)).Inc()
	}
	cs.hist.Update(d.Seconds())
}

func (m *Metrics) series(cmd string) *cmdSeries {
	if p := m.cmd.Load(); p != nil {
		if cs := (*p)[cmd]; cs != nil {
			return cs
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := map[string]*cmdSeries{}
	if p := m.cmd.Load(); p != nil {
		if cs := (*p)[cmd]; cs != nil {
			return cs
		}
		old = *p
	}
	cs := &cmdSeries{
		hist: m.reg.Histogram(`ftkv_gateway_command_duration_seconds{cmd=` + strconv.Quote(cmd) + `}`),
	}
	next := make(map[string]*cmdSeries, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[cmd] = cs
	m.cmd.Store(&next)
	return cs
}

func (m *Metrics) counter(cs *cmdSeries, cmd, outcome string) *metrics.Counter {
	if p := cs.outcomes.Load(); p != nil {
		if c := (*p)[outcome]; c != nil {
			return c
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	old := map[string]*metrics.Counter{}
	if p := cs.outcomes.Load(); p != nil {
		if c := (*p)[outcome]; c != nil {
			return c
		}
		old = *p
	}
	c := m.reg.Counter(`ftkv_gateway_commands_total{cmd=` + strconv.Quote(cmd) + `,outcome=` + strconv.Quote(outcome) + `}`)
	next := make(map[string]*metrics.Counter, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	next[outcome] = c
	cs.outcomes.Store(&next)
	return c
}

// errorCodes are the outcomes a failed command is counted under: the
// RESP error's code, lowercase (anything else counts as "other", so a
// label never carries a client's bytes).
var errorCodes = map[string]bool{"err": true, "clusterdown": true, "tryagain": true, "noproto": true, "wrongtype": true}

func errorCode(err error) string {
	var e Error
	if !errors.As(err, &e) {
		e = respError(err)
	}
	code, _, _ := strings.Cut(string(e), " ")
	if code = strings.ToLower(code); errorCodes[code] {
		return code
	}
	return "other"
}
