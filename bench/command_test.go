package bench

import (
	"reflect"
	"strings"
	"testing"
)

func TestChartNotes(t *testing.T) {
	r := &Result{Target: "ftkv", Addr: "a", Connections: 50, Pipeline: 1, ValueSize: 100, Keys: 10, OpsPerSec: 1234,
		Kill: &KillReport{Server: 1, PID: 9, Shard: 1, At: 5, WriteGapMs: 612.5, RecoveredS: 2.5}}
	got := ChartNotes(r)
	if len(got) != 3 || !strings.Contains(got[1], "1,234 ops/s") || !strings.Contains(got[2], "writable again after 612ms") {
		t.Errorf("notes = %q", got)
	}
	r.Kill = nil
	if got := ChartNotes(r); !reflect.DeepEqual(len(got), 2) {
		t.Errorf("notes without kill = %q", got)
	}
}

func TestValidateProbe(t *testing.T) {
	for _, tc := range []struct {
		probe, target string
		port          int
		ok            bool
	}{
		{"slow-reader", "ftkv", 7000, true},
		{"one-shot", "ftkv", 7000, true},
		{"", "ftkv", 7000, false},
		{"fast-reader", "ftkv", 7000, false},
		{"slow-reader", "redis", 7000, false},
		{"slow-reader", "ftkv", 0, false},
	} {
		c := Command{Mode: "probe", ProbeName: tc.probe, Target: tc.target, Port: tc.port, Run: DefaultConfig()}
		if err := c.Validate(); (err == nil) != tc.ok {
			t.Errorf("probe %q target %s port %d: %v", tc.probe, tc.target, tc.port, err)
		}
	}
}
