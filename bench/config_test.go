package bench

import (
	"errors"
	"math"
	"strings"
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	ok := DefaultConfig()
	tests := []struct {
		name   string
		change func(*Config)
		want   string // substring of the error; "" = valid
	}{
		{"default", func(c *Config) {}, ""},
		{"zero config", func(c *Config) { *c = Config{} }, ""},
		{"count instead of time", func(c *Config) { c.Ops, c.Duration = 1000, 0 }, ""},
		{"puts only", func(c *Config) { c.Ratio = 0 }, ""},
		{"gets only", func(c *Config) { c.Ratio = 1 }, ""},
		{"negative connections", func(c *Config) { c.Connections = -1 }, "connections"},
		{"too many connections", func(c *Config) { c.Connections = MaxConnections + 1 }, "connections"},
		{"negative ops", func(c *Config) { c.Ops = -5 }, "operations"},
		{"negative duration", func(c *Config) { c.Duration = -time.Second }, "duration"},
		{"ratio above 1", func(c *Config) { c.Ratio = 1.5 }, "ratio"},
		{"ratio below 0", func(c *Config) { c.Ratio = -0.1 }, "ratio"},
		{"ratio NaN", func(c *Config) { c.Ratio = math.NaN() }, "ratio"},
		{"negative size", func(c *Config) { c.ValueSize = -1 }, "value size"},
		{"huge size", func(c *Config) { c.ValueSize = MaxValueSize + 1 }, "value size"},
		{"negative keys", func(c *Config) { c.Keys = -1 }, "key space"},
		{"negative pipeline", func(c *Config) { c.Pipeline = -1 }, "pipeline"},
		{"deep pipeline", func(c *Config) { c.Pipeline = MaxPipeline + 1 }, "pipeline"},
		{"goroutines", func(c *Config) { c.Goroutines = 16 }, ""},
		{"negative goroutines", func(c *Config) { c.Goroutines = -1 }, "goroutines"},
		{"too many goroutines", func(c *Config) { c.Goroutines = MaxGoroutines + 1 }, "goroutines"},
		{"goroutines and pipeline", func(c *Config) { c.Goroutines, c.Pipeline = 2, 16 }, "cannot both"},
		{"too much in flight", func(c *Config) { c.Connections, c.Goroutines = 1000, 101 }, "connections × goroutines"},
		{"negative timeout", func(c *Config) { c.Timeout = -time.Second }, "timeout"},
		{"bad preload", func(c *Config) { c.Preload = 7 }, "preload"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.change(&c)
			err := c.Validate()
			if tt.want == "" {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) || !errors.Is(err, ErrConfig) {
				t.Fatalf("Validate() = %v, want ErrConfig mentioning %q", err, tt.want)
			}
		})
	}
}

func TestWithDefaults(t *testing.T) {
	c := Config{}.withDefaults()
	want := DefaultConfig()
	want.Ratio = 0 // zero ratio is a valid workload, not "unset"
	if c.Connections != want.Connections || c.Duration != want.Duration || c.ValueSize != want.ValueSize ||
		c.Keys != want.Keys || c.Pipeline != want.Pipeline || c.Goroutines != want.Goroutines || c.Timeout != want.Timeout || c.MaxErrors != want.MaxErrors {
		t.Fatalf("Config{}.withDefaults() = %+v, want %+v", c, want)
	}
	if c := (Config{Ops: 10}).withDefaults(); c.Duration != 0 {
		t.Fatalf("a count-bounded run got a duration %s", c.Duration)
	}
}

func TestPreloadMode(t *testing.T) {
	tests := []struct {
		mode  PreloadMode
		ratio float64
		want  bool
	}{
		{PreloadAuto, 0.5, true},
		{PreloadAuto, 0, false},
		{PreloadOn, 0, true},
		{PreloadOff, 1, false},
	}
	for _, tt := range tests {
		if got := (Config{Preload: tt.mode, Ratio: tt.ratio}).preload(); got != tt.want {
			t.Errorf("preload(mode %d, ratio %g) = %v, want %v", tt.mode, tt.ratio, got, tt.want)
		}
	}
}
