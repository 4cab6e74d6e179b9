package server

import (
	"strconv"
	"strings"
	"testing"
	"time"

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

// TestMetricsCountLogSyncs: a server whose log syncs every write
// (`fsync always`) fills its fsync-latency histogram.
func TestMetricsCountLogSyncs(t *testing.T) {
	fc := startFakeCoord(t)
	a, _ := startDurableServer(t, fc, 0, t.TempDir(), "always", false)
	pushView(t, wire.View{Epoch: 1, Servers: []wire.Member{member(a, a.peer)},
		Shards: []wire.Placement{{Primary: 0, Secondary: -1}}}, a)
	cn := dialConn(t, a.client, false)
	for i := range 5 {
		ans, err := cn.write(&wire.Frame{Op: wire.OpPut, Key: []byte(itoa(i)), Value: []byte("v")}, 10*time.Second)
		if err != nil || ans.Status != wire.StatusOK {
			t.Fatalf("put: %v %v %s", err, ans.Status, ans.Value)
		}
	}
	var b strings.Builder
	a.met.reg.Write(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if name, v, ok := strings.Cut(line, " "); ok && name == "ftkv_server_wal_fsync_duration_seconds_count" {
			if n, _ := strconv.Atoi(v); n < 5 {
				t.Fatalf("%s: want at least one sync per acknowledged put (5)", line)
			}
			return
		}
	}
	t.Fatalf("no ftkv_server_wal_fsync_duration_seconds_count in:\n%s", b.String())
}
