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
