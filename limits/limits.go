// Package limits names the bounds every ftkv server puts on its clients
// (connections, queued output, unprocessed input, work in flight, half-sent frames, idle
// connections, remembered exactly-once sessions), with their defaults, the
// cluster file's line for each and the flag of bin/coord and bin/server.
//
// The coordinator reads the lines and its own flags (a flag wins) and
// passes every limit set to the servers it spawns as the same flag; a
// limit left at zero means the server's default.
package limits

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"ftkv/wire"
)

// Config holds the limits; zero means the default.
type Config struct {
	MaxClients        int           // max_clients: open client connections per server
	OutputSoftLimit   int64         // output_soft_limit: queued answers at which a connection's reading pauses
	OutputHardLimit   int64         // output_hard_limit: queued answers at which a connection is closed
	OutputGrace       time.Duration // output_grace: how long a connection may stay over the soft limit
	OutputBudget      int64         // output_budget: queued answers of all connections together
	InputBudget       int64         // input_budget: unprocessed input (half-sent frames, paused connections) of all connections together
	MaxInflight       int           // max_inflight: requests read but not answered per connection
	InflightBudget    int64         // inflight_budget: bytes of requests read but not answered, all connections together
	FrameTimeout      time.Duration // frame_timeout: how long a half-sent frame may wait for its rest
	IdleTimeout       time.Duration // idle_timeout: idle connections are closed after this (0: never)
	SessionTTL        time.Duration // session_ttl: a silent client's exactly-once records expire after this
	MaxSessions       int           // max_sessions: clients remembered for exactly-once
	MaxSessionRecords int           // max_session_records: remembered writes per client

	// explicit marks the limits set by a line or a flag, zero included
	// (one bit per Settings index), so a flag "0" still wins over a line.
	explicit uint32
}

// Defaults. IdleTimeout's default is 0: idle connections stay open, as in Redis.
const (
	DefaultMaxClients        = 10000
	DefaultOutputSoftLimit   = 2 << 20
	DefaultOutputHardLimit   = 32 << 20
	DefaultOutputGrace       = 10 * time.Second
	DefaultOutputBudget      = 32 << 20
	DefaultInputBudget       = 64 << 20
	DefaultMaxInflight       = 4096
	DefaultInflightBudget    = 4 << 20
	DefaultFrameTimeout      = 10 * time.Second
	DefaultSessionTTL        = 10 * time.Minute // long enough for any sane retry
	DefaultMaxSessions       = 100000
	DefaultMaxSessionRecords = 65536
)

// MaxClientFrame is the largest valid request on the client port, length
// prefix included: a CAS of a maximal key, value and expected value.
const MaxClientFrame = wire.HeaderSize + wire.MaxKey + 2*wire.MaxValue

type kind int

const (
	count kind = iota
	bytes
	duration
)

// Setting describes one limit.
type Setting struct {
	Line string // the cluster file's line name
	Flag string // the flag of bin/coord and bin/server
	Doc  string // one line for help texts
	kind kind
	def  string // the default, as the README prints it
	get  func(*Config) any
}

// Settings lists every limit in the README's order.
var Settings = []Setting{
	{"max_clients", "max-clients", "open client connections per server", count, "10000", func(c *Config) any { return &c.MaxClients }},
	{"output_soft_limit", "output-soft-limit", "queued answers at which a connection's reading pauses", bytes, "2MiB", func(c *Config) any { return &c.OutputSoftLimit }},
	{"output_hard_limit", "output-hard-limit", "queued answers at which a connection is closed", bytes, "32MiB", func(c *Config) any { return &c.OutputHardLimit }},
	{"output_grace", "output-grace", "how long a connection may stay over the soft limit", duration, "10s", func(c *Config) any { return &c.OutputGrace }},
	{"output_budget", "output-budget", "queued answers of all connections of a server", bytes, "32MiB", func(c *Config) any { return &c.OutputBudget }},
	{"input_budget", "input-budget", "unprocessed input of all connections of a server", bytes, "64MiB", func(c *Config) any { return &c.InputBudget }},
	{"max_inflight", "max-inflight", "requests read but not answered per connection", count, "4096", func(c *Config) any { return &c.MaxInflight }},
	{"inflight_budget", "inflight-budget", "bytes of requests read but not answered, all connections of a server (or gateway)", bytes, "4MiB", func(c *Config) any { return &c.InflightBudget }},
	{"frame_timeout", "frame-timeout", "how long a half-sent frame may wait for its rest", duration, "10s", func(c *Config) any { return &c.FrameTimeout }},
	{"idle_timeout", "idle-timeout", "idle connections are closed after this (0: never)", duration, "0", func(c *Config) any { return &c.IdleTimeout }},
	{"session_ttl", "session-ttl", "a silent client's exactly-once records expire after this", duration, "10m", func(c *Config) any { return &c.SessionTTL }},
	{"max_sessions", "max-sessions", "clients remembered for exactly-once per server", count, "100000", func(c *Config) any { return &c.MaxSessions }},
	{"max_session_records", "max-session-records", "remembered writes per client", count, "65536", func(c *Config) any { return &c.MaxSessionRecords }},
}

// Default is the value a zero limit stands for, as printed in help texts.
func (s Setting) Default() string { return s.def }

// Lookup finds the setting of a cluster file line.
func Lookup(line string) (Setting, bool) {
	for _, s := range Settings {
		if s.Line == line {
			return s, true
		}
	}
	return Setting{}, false
}

// Set parses val into c's field for s.
func (s Setting) Set(c *Config, val string) error {
	switch p := s.get(c).(type) {
	case *int:
		n, err := strconv.Atoi(val)
		if err != nil || n < 0 {
			return fmt.Errorf("%s must be a whole number, got %q", s.Line, val)
		}
		*p = n
	case *int64:
		n, err := ParseBytes(val)
		if err != nil {
			return fmt.Errorf("%s: %v", s.Line, err)
		}
		*p = n
	case *time.Duration:
		d, err := time.ParseDuration(val)
		if err != nil || d < 0 {
			if val == "0" {
				d, err = 0, nil
			} else {
				return fmt.Errorf("%s must be a duration such as 10s or 500ms, got %q", s.Line, val)
			}
		}
		*p = d
	}
	for i := range Settings {
		if Settings[i].Line == s.Line {
			c.explicit |= 1 << i
		}
	}
	return nil
}

func (s Setting) value(c *Config) string {
	switch p := s.get(c).(type) {
	case *int:
		return strconv.Itoa(*p)
	case *int64:
		return strconv.FormatInt(*p, 10)
	case *time.Duration:
		return p.String()
	}
	return ""
}

func (s Setting) isZero(c *Config) bool {
	switch p := s.get(c).(type) {
	case *int:
		return *p == 0
	case *int64:
		return *p == 0
	case *time.Duration:
		return *p == 0
	}
	return true
}

// Flags registers one flag per limit on fs, parsed into c; with lines,
// only those limits (named by their cluster file lines).
func Flags(fs *flag.FlagSet, c *Config, lines ...string) {
	for _, s := range Settings {
		if len(lines) > 0 && !slices.Contains(lines, s.Line) {
			continue
		}
		fs.Func(s.Flag, s.Doc+" (default "+s.def+")", func(v string) error { return s.Set(c, v) })
	}
}

// Override copies every limit o sets into c (flags win over the file),
// a limit set to zero included (zero: the default; for idle_timeout, off).
func (c *Config) Override(o Config) {
	for i, s := range Settings {
		if o.explicit&(1<<i) != 0 || !s.isZero(&o) {
			_ = s.Set(c, s.value(&o))
		}
	}
}

// Args are the flags that pass every limit c sets to a server.
func (c Config) Args() []string {
	var args []string
	for _, s := range Settings {
		if !s.isZero(&c) {
			args = append(args, "-"+s.Flag, s.value(&c))
		}
	}
	return args
}

// WithDefaults returns c with every zero limit replaced by its default
// (IdleTimeout stays 0: off).
func (c Config) WithDefaults() Config {
	def := Config{
		MaxClients: DefaultMaxClients, OutputSoftLimit: DefaultOutputSoftLimit, OutputHardLimit: DefaultOutputHardLimit,
		OutputGrace: DefaultOutputGrace, OutputBudget: DefaultOutputBudget, InputBudget: DefaultInputBudget, MaxInflight: DefaultMaxInflight,
		InflightBudget: DefaultInflightBudget,
		FrameTimeout:   DefaultFrameTimeout, SessionTTL: DefaultSessionTTL, MaxSessions: DefaultMaxSessions,
		MaxSessionRecords: DefaultMaxSessionRecords,
	}
	for _, s := range Settings {
		if !s.isZero(&c) {
			_ = s.Set(&def, s.value(&c))
		}
	}
	return def
}

// Validate reports limits that contradict each other.
func (c Config) Validate() error {
	d := c.WithDefaults()
	var errs []string
	if d.OutputHardLimit < d.OutputSoftLimit {
		errs = append(errs, fmt.Sprintf("output_hard_limit %d is below output_soft_limit %d", d.OutputHardLimit, d.OutputSoftLimit))
	}
	if d.OutputBudget < d.OutputSoftLimit {
		errs = append(errs, fmt.Sprintf("output_budget %d is below output_soft_limit %d", d.OutputBudget, d.OutputSoftLimit))
	}
	if d.InputBudget < MaxClientFrame {
		errs = append(errs, fmt.Sprintf("input_budget %d is below the largest request, %d bytes", d.InputBudget, MaxClientFrame))
	}
	if d.InflightBudget < MaxClientFrame {
		errs = append(errs, fmt.Sprintf("inflight_budget %d is below the largest request, %d bytes", d.InflightBudget, MaxClientFrame))
	}
	if len(errs) == 0 {
		return nil
	}
	return errors.New(strings.Join(errs, "; "))
}

// ParseBytes reads a byte count: a whole number, optionally followed by
// k, kb, kib, m, mb, mib, g, gb or gib (all powers of 1024, any case).
func ParseBytes(s string) (int64, error) {
	t := strings.ToLower(strings.TrimSpace(s))
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		m      int64
	}{{"kib", 1 << 10}, {"mib", 1 << 20}, {"gib", 1 << 30}, {"kb", 1 << 10}, {"mb", 1 << 20}, {"gb", 1 << 30},
		{"k", 1 << 10}, {"m", 1 << 20}, {"g", 1 << 30}, {"b", 1}} {
		if rest, ok := strings.CutSuffix(t, u.suffix); ok {
			t, mult = rest, u.m
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(t), 10, 64)
	if err != nil || n < 0 || n > (1<<50)/mult {
		return 0, fmt.Errorf("expected a byte count such as 4194304, 4mb or 4MiB, got %q", s)
	}
	return n * mult, nil
}
