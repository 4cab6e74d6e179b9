package server

import (
	"testing"

	"ftkv/wire"
)

// answeredFrame reads the status of an encoded answer where wire.Append
// puts it.
func TestMetricsStatusOffset(t *testing.T) {
	for st := wire.StatusOK; int(st) < statusSlots; st++ {
		enc := wire.Append(nil, &wire.Frame{Op: wire.OpGet, Status: st, ID: 9, Value: []byte("v")})
		if got := wire.Status(enc[statusOffset]); got != st {
			t.Fatalf("status at offset %d is %s, want %s", statusOffset, got, st)
		}
	}
	m := newServerMetrics()
	if !m.answeredFrame(wire.OpGet, wire.Append(nil, &wire.Frame{Op: wire.OpGet, Status: wire.StatusNotFound})) {
		t.Fatal("a GET answer is a read")
	}
	if got := m.ops[wire.OpGet][wire.StatusNotFound].Get(); got != 1 {
		t.Fatalf("get/not_found = %d, want 1", got)
	}
}
