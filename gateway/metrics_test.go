package gateway

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestMetricsObserve(t *testing.T) {
	m := NewMetrics()
	m.Observe("get", 30*time.Microsecond, nil)
	m.Observe("get", 2*time.Millisecond, nil)
	m.Observe("set", time.Millisecond, Error("CLUSTERDOWN shard 2 has no live copy"))
	m.Observe("set", time.Millisecond, errors.New("boom"))
	m.Observe("unknown", 0, Error("WEIRD\r\nthing"))
	var b bytes.Buffer
	m.reg.Write(&b)
	out := b.String()
	for _, want := range []string{
		`ftkv_gateway_commands_total{cmd="get",outcome="ok"} 2`,
		`ftkv_gateway_commands_total{cmd="set",outcome="clusterdown"} 1`,
		`ftkv_gateway_commands_total{cmd="set",outcome="err"} 1`,
		`ftkv_gateway_commands_total{cmd="unknown",outcome="other"} 1`,
		`ftkv_gateway_command_duration_seconds_bucket{cmd="get",le="5e-05"} 1`,
		`ftkv_gateway_command_duration_seconds_count{cmd="get"} 2`,
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("missing %q in:\n%s", want, out)
		}
	}
}
