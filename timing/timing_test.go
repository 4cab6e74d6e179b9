package timing

import (
	"testing"
	"time"
)

// Every derived duration follows the failure timeout: none is a constant
// hiding in the configuration.
func TestEveryDurationFollowsTheFailureTimeout(t *testing.T) {
	a, b := New(500*time.Millisecond).Fields(), New(2*time.Second).Fields()
	if len(a) < 30 {
		t.Fatalf("only %d fields listed", len(a))
	}
	for i := range a {
		t.Logf("%-18s %10s (-t 500ms)  %10s (-t 2s)", a[i].Name, a[i].D, b[i].D)
		if a[i].D >= b[i].D {
			t.Errorf("%s: %s at -t 500ms, %s at -t 2s: does not grow with -t", a[i].Name, a[i].D, b[i].D)
		}
	}
}

// The defaults are the durations ftkv shipped with before they were derived.
func TestDefaults(t *testing.T) {
	c := Default()
	for _, w := range []struct {
		name      string
		got, want time.Duration
	}{
		{"Heartbeat", c.Heartbeat, 100 * time.Millisecond},
		{"Lease", c.Lease, 400 * time.Millisecond},
		{"Freeze", c.Freeze, 2 * time.Second},
		{"FreezeHold", c.FreezeHold, 3 * time.Second},
		{"FreezeAsk", c.FreezeAsk, 5 * time.Second},
		{"SeedLimit", c.SeedLimit, 2 * time.Minute},
		{"SeedAsk", c.SeedAsk, 3 * time.Minute},
		{"Start", c.Start, 15 * time.Second},
		{"Dial", c.Dial, time.Second},
	} {
		if w.got != w.want {
			t.Errorf("%s = %s, want %s", w.name, w.got, w.want)
		}
	}
}

func TestValidate(t *testing.T) {
	for _, to := range []time.Duration{MinFailureTimeout, 200 * time.Millisecond, time.Second, MaxFailureTimeout} {
		if err := New(to).Validate(); err != nil {
			t.Errorf("New(%s): %v", to, err)
		}
	}
	if err := Fast().Validate(); err != nil {
		t.Errorf("Fast: %v", err)
	}
	bad := map[string]func(*Config){
		"lease beyond timeout": func(c *Config) { c.Lease = c.FailureTimeout + 1 },
		"heartbeat >= lease":   func(c *Config) { c.Heartbeat = c.Lease },
		"freeze ask too short": func(c *Config) { c.FreezeAsk = c.Freeze },
		"seed ask too short":   func(c *Config) { c.SeedAsk = c.SeedLimit },
		"zero dial":            func(c *Config) { c.Dial = 0 },
		"timeout too small":    func(c *Config) { *c = New(time.Millisecond) },
	}
	for name, f := range bad {
		c := Default()
		f(&c)
		if c.Validate() == nil {
			t.Errorf("%s: Validate accepted it", name)
		}
	}
}
