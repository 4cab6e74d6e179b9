package bench

import (
	"errors"
	"fmt"
	"strconv"
	"time"
)

// PreloadMode says whether Run writes every key once before measuring.
type PreloadMode int

const (
	// PreloadAuto preloads when Ratio > 0, so that gets hit.
	PreloadAuto PreloadMode = iota
	// PreloadOn always preloads.
	PreloadOn
	// PreloadOff never preloads; gets of absent keys count as misses.
	PreloadOff
)

// PreloadMode is a boolean flag (-preload, -preload=false) whose unset
// state is PreloadAuto.

// IsBoolFlag lets -preload stand alone.
func (m *PreloadMode) IsBoolFlag() bool { return true }

// String is "auto", "true" or "false".
func (m *PreloadMode) String() string {
	if m == nil || *m == PreloadAuto {
		return "auto"
	}
	return strconv.FormatBool(*m == PreloadOn)
}

// Set reads a boolean.
func (m *PreloadMode) Set(s string) error {
	on, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*m = PreloadOff
	if on {
		*m = PreloadOn
	}
	return nil
}

// Defaults applied by Config for zero fields.
const (
	DefaultConnections = 50
	DefaultDuration    = 10 * time.Second
	DefaultValueSize   = 100
	DefaultKeys        = 100000
	DefaultPipeline    = 1
	DefaultGoroutines  = 1
	DefaultTimeout     = 5 * time.Second
	DefaultMaxErrors   = 1000
)

// Limits on a Config; a value past them is a mistake, not a workload.
const (
	MaxConnections = 10000
	MaxPipeline    = 4096
	MaxGoroutines  = 4096    // per requester
	MaxInFlight    = 100000  // Connections × Goroutines
	MaxValueSize   = 1 << 20 // ftkv's default value limit
)

// ErrConfig is wrapped by every error of Config.Validate.
var ErrConfig = errors.New("bench: bad config")

// Config describes one run. Zero fields mean their default, except Ratio,
// whose zero is a valid "puts only" workload: start from DefaultConfig to
// get the command's default of 0.5.
type Config struct {
	// Connections is the number of concurrent requesters (default 50).
	Connections int
	// Ops is the total number of operations, errors included; 0 runs for
	// Duration instead.
	Ops int64
	// Duration of the measured phase when Ops is 0 (default 10s).
	Duration time.Duration
	// Ratio is the fraction of gets, 0..1; the rest are puts.
	Ratio float64
	// ValueSize is the size of every put's value in bytes (default 100).
	ValueSize int
	// Keys is the size of the key space (default 100000).
	Keys int
	// Pipeline is the number of operations a requester has in flight at
	// once (default 1).
	Pipeline int
	// Goroutines is the number of goroutines sharing each requester (one
	// client.Client, or one Redis connection), each issuing one operation
	// at a time, so Connections × Goroutines operations are in flight
	// (default 1: one goroutine per requester). Above 1 it needs Pipeline 1
	// (explicit pipelining is the other way of having many operations in
	// flight) and a SharedTarget.
	Goroutines int
	// Preload chooses whether every key is written once before measuring.
	Preload PreloadMode
	// Seed makes the key and value sequences reproducible; 0 picks one,
	// reported in Result.Seed.
	Seed uint64
	// Timeout bounds every batch of operations (default 5s); an operation
	// that has no answer by then counts as an error.
	Timeout time.Duration
	// MaxErrors stops the run early once that many operations have failed
	// (default 1000; negative: never), so a dead target cannot keep a run
	// going for Ops × Timeout.
	MaxErrors int64
	// Progress, when set, is called about ten times a second from one
	// goroutine, and once more at the end of every phase with Done set.
	Progress func(Progress)
	// SeriesInterval, when > 0, records a time series of the measured
	// phase in intervals of that length (Result.Series).
	SeriesInterval time.Duration
	// Fault, when set, runs alongside the measured phase (e.g. kills a
	// server); the events it marks go into Result.Events and the series,
	// which is then recorded at 1s intervals unless SeriesInterval says
	// otherwise.
	Fault Fault
}

// DefaultConfig is the configuration of a bare `bin/bench`.
func DefaultConfig() Config {
	return Config{
		Connections: DefaultConnections,
		Duration:    DefaultDuration,
		Ratio:       0.5,
		ValueSize:   DefaultValueSize,
		Keys:        DefaultKeys,
		Pipeline:    DefaultPipeline,
		Goroutines:  DefaultGoroutines,
		Timeout:     DefaultTimeout,
		MaxErrors:   DefaultMaxErrors,
	}
}

// withDefaults fills zero fields.
func (c Config) withDefaults() Config {
	if c.Connections == 0 {
		c.Connections = DefaultConnections
	}
	if c.Ops == 0 && c.Duration == 0 {
		c.Duration = DefaultDuration
	}
	if c.ValueSize == 0 {
		c.ValueSize = DefaultValueSize
	}
	if c.Keys == 0 {
		c.Keys = DefaultKeys
	}
	if c.Pipeline == 0 {
		c.Pipeline = DefaultPipeline
	}
	if c.Goroutines == 0 {
		c.Goroutines = DefaultGoroutines
	}
	if c.Timeout == 0 {
		c.Timeout = DefaultTimeout
	}
	if c.MaxErrors == 0 {
		c.MaxErrors = DefaultMaxErrors
	}
	if c.Fault != nil && c.SeriesInterval == 0 {
		c.SeriesInterval = time.Second
	}
	return c
}

// Validate reports the first problem of c (after defaults), wrapping ErrConfig.
func (c Config) Validate() error {
	c = c.withDefaults()
	switch {
	case c.Connections < 1 || c.Connections > MaxConnections:
		return fmt.Errorf("%w: connections must be 1..%d, got %d", ErrConfig, MaxConnections, c.Connections)
	case c.Ops < 0:
		return fmt.Errorf("%w: operations must be >= 0, got %d", ErrConfig, c.Ops)
	case c.Ops == 0 && c.Duration < 0:
		return fmt.Errorf("%w: duration must be > 0, got %s", ErrConfig, c.Duration)
	case !(c.Ratio >= 0 && c.Ratio <= 1): // also catches NaN
		return fmt.Errorf("%w: ratio must be 0..1, got %g", ErrConfig, c.Ratio)
	case c.ValueSize < 1 || c.ValueSize > MaxValueSize:
		return fmt.Errorf("%w: value size must be 1..%d bytes, got %d", ErrConfig, MaxValueSize, c.ValueSize)
	case c.Keys < 1:
		return fmt.Errorf("%w: key space must be >= 1, got %d", ErrConfig, c.Keys)
	case c.Pipeline < 1 || c.Pipeline > MaxPipeline:
		return fmt.Errorf("%w: pipeline depth must be 1..%d, got %d", ErrConfig, MaxPipeline, c.Pipeline)
	case c.Goroutines < 1 || c.Goroutines > MaxGoroutines:
		return fmt.Errorf("%w: goroutines per requester must be 1..%d, got %d", ErrConfig, MaxGoroutines, c.Goroutines)
	case c.Goroutines > 1 && c.Pipeline > 1:
		return fmt.Errorf("%w: goroutines (%d) and pipeline depth (%d) cannot both be above 1: "+
			"pipelining sends batches from one goroutine, goroutines share a requester with one operation each", ErrConfig, c.Goroutines, c.Pipeline)
	case c.Connections*c.Goroutines > MaxInFlight:
		return fmt.Errorf("%w: connections × goroutines must be <= %d, got %d", ErrConfig, MaxInFlight, c.Connections*c.Goroutines)
	case c.Timeout < 0:
		return fmt.Errorf("%w: timeout must be > 0, got %s", ErrConfig, c.Timeout)
	case c.SeriesInterval < 0 || (c.SeriesInterval > 0 && c.SeriesInterval < time.Millisecond):
		return fmt.Errorf("%w: series interval must be >= 1ms, got %s", ErrConfig, c.SeriesInterval)
	case c.Preload < PreloadAuto || c.Preload > PreloadOff:
		return fmt.Errorf("%w: unknown preload mode %d", ErrConfig, c.Preload)
	}
	return nil
}

// preload reports whether the run writes every key first.
func (c Config) preload() bool {
	switch c.Preload {
	case PreloadOn:
		return true
	case PreloadOff:
		return false
	}
	return c.Ratio > 0
}
