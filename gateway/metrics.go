package gateway

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"ftkv/internal/metrics"
)

// Metrics are a gateway's Prometheus metrics: commands by name and
// outcome, their latency, and the RESP connections open. Its Observe is
// Config.Observe; Listen serves /metrics.
type Metrics struct {
	reg    *metrics.Registry
	mu     sync.Mutex
	series sync.Map // "cmd\x00outcome" -> *metrics.Counter, "cmd" -> *metrics.Histogram
}

// NewMetrics returns a gateway's metrics (with the process's go_* and
// process_* series).
func NewMetrics() *Metrics {
	return &Metrics{reg: metrics.New(true)}
}

// Attach adds the gauges read from g at scrape time.
func (m *Metrics) Attach(g *Gateway) {
	m.reg.GaugeFunc(`ftkv_gateway_connections`, func() float64 { return float64(g.Clients()) })
	m.reg.GaugeFunc(`ftkv_gateway_uptime_seconds`, func() float64 { return time.Since(g.started).Seconds() })
}

// Listen serves /metrics on addr until the returned listener is closed.
func (m *Metrics) Listen(addr string) (*metrics.Listener, error) {
	return metrics.Listen(addr, m.reg, nil)
}

// Observe counts one command answered after d with err (nil: success);
// it is the gateway's Config.Observe.
func (m *Metrics) Observe(cmd string, d time.Duration, err error) {
	outcome := "ok"
	if err != nil {
		outcome = errorCode(err)
	}
	m.counter(cmd, outcome).Inc()
	m.histogram(cmd).Update(d.Seconds())
}

func (m *Metrics) counter(cmd, outcome string) *metrics.Counter {
	key := cmd + "\x00" + outcome
	if c, ok := m.series.Load(key); ok {
		return c.(*metrics.Counter)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if c, ok := m.series.Load(key); ok {
		return c.(*metrics.Counter)
	}
	c := m.reg.Counter(`ftkv_gateway_commands_total{cmd=` + strconv.Quote(cmd) + `,outcome=` + strconv.Quote(outcome) + `}`)
	m.series.Store(key, c)
	return c
}

func (m *Metrics) histogram(cmd string) *metrics.Histogram {
	if h, ok := m.series.Load(cmd); ok {
		return h.(*metrics.Histogram)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if h, ok := m.series.Load(cmd); ok {
		return h.(*metrics.Histogram)
	}
	h := m.reg.Histogram(`ftkv_gateway_command_duration_seconds{cmd=` + strconv.Quote(cmd) + `}`)
	m.series.Store(cmd, h)
	return h
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
