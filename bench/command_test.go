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

// -h may list the coordinators of a group (host:port,...); entries without
// a port take -p's, and -p is needed only for those.
func TestCoordList(t *testing.T) {
	for _, tc := range []struct {
		host string
		port int
		want string
		ok   bool
	}{
		{"127.0.0.1", 7000, "127.0.0.1:7000", true},
		{"h1:7000,h2:7010,h3:7020", 0, "h1:7000,h2:7010,h3:7020", true},
		{"h1,h2:7010", 7000, "h1:7000,h2:7010", true},
		{"h1,h2:7010", 0, "", false},
		{"127.0.0.1", 0, "", false},
	} {
		c := Command{Mode: "run", Target: "ftkv", Host: tc.host, Port: tc.port}
		err := c.needPort()
		if (err == nil) != tc.ok {
			t.Errorf("-h %s -p %d: %v", tc.host, tc.port, err)
		}
		if tc.ok && c.coord() != tc.want {
			t.Errorf("-h %s -p %d: coord %q, want %q", tc.host, tc.port, c.coord(), tc.want)
		}
	}
}
