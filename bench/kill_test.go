package bench

import (
	"strings"
	"testing"

	"ftkv/hashring"
	"ftkv/status"
)

func TestKeyInShard(t *testing.T) {
	for n := 1; n <= 7; n++ {
		for s := 0; s < n; s++ {
			k := KeyInShard(n, s, "probe:")
			if !strings.HasPrefix(k, "probe:") || hashring.New(n).Shard(k) != s {
				t.Errorf("KeyInShard(%d, %d) = %q on shard %d", n, s, k, hashring.New(n).Shard(k))
			}
		}
	}
}

func statusOf3() *status.Cluster {
	return &status.Cluster{
		Epoch: 3,
		Servers: []status.Server{
			{ID: 0, PID: 100, State: "serving"}, {ID: 1, PID: 101, State: "serving"}, {ID: 2, PID: 102, State: "serving"},
		},
		Shards: []status.Shard{
			{Shard: 0, Primary: 0, Secondary: 1, State: "serving"},
			{Shard: 1, Primary: 1, Secondary: 2, State: "serving"},
			{Shard: 2, Primary: 2, Secondary: 0, State: "serving"},
		},
	}
}

func TestPrimaryOfAndHealthy(t *testing.T) {
	st := statusOf3()
	st.Shards[1].Primary = 2 // promoted
	if s, err := PrimaryOf(st, 1); err != nil || s.ID != 2 || s.PID != 102 {
		t.Errorf("PrimaryOf(1) = %+v, %v", s, err)
	}
	if _, err := PrimaryOf(st, 3); err == nil {
		t.Error("PrimaryOf(3) of 3 shards succeeded")
	}
	st.Shards[0].Primary = 9
	if _, err := PrimaryOf(st, 0); err == nil {
		t.Error("PrimaryOf a server not in the status succeeded")
	}

	st = statusOf3()
	if ok, why := Healthy(st); !ok {
		t.Errorf("healthy status: %s", why)
	}
	st.Servers[2].State = "re-seeding"
	if ok, why := Healthy(st); ok || !strings.Contains(why, "server 2 is re-seeding") {
		t.Errorf("Healthy = %v %q", ok, why)
	}
	st = statusOf3()
	st.Shards[1].State = "degraded"
	if ok, why := Healthy(st); ok || !strings.Contains(why, "shard 1") {
		t.Errorf("Healthy = %v %q", ok, why)
	}
	if ok, _ := Healthy(&status.Cluster{}); ok {
		t.Error("an empty status is healthy")
	}
}

func TestRecovered(t *testing.T) {
	st := statusOf3()
	if _, ok := Recovered(st, 1, 101, 1); ok {
		t.Error("recovered with the killed pid still listed")
	}
	st.Servers[1].PID = 555
	if pid, ok := Recovered(st, 1, 101, 1); !ok || pid != 555 {
		t.Errorf("Recovered = %d %v", pid, ok)
	}
	st.Shards[1].Primary = 2 // not handed back yet
	if _, ok := Recovered(st, 1, 101, 1); ok {
		t.Error("recovered before the hand-back")
	}
	st = statusOf3()
	st.Servers[1].PID, st.Servers[1].State = 555, "re-seeding"
	if _, ok := Recovered(st, 1, 101, 1); ok {
		t.Error("recovered while re-seeding")
	}
	if _, ok := Recovered(statusOf3(), 7, 1, 0); ok {
		t.Error("recovered a server not in the status")
	}
}

func TestKillReportText(t *testing.T) {
	k := &KillReport{Server: 1, PID: 42, Shard: 1, At: 5, WriteGapMs: 612.4, RecoveredS: -1, Error: "boom"}
	got := k.Text()
	for _, want := range []string{"server 1 (pid 42, primary of shard 1) at 5.00s", "writable again after 612ms", "whole again after -", "; boom"} {
		if !strings.Contains(got, want) {
			t.Errorf("Text() = %q lacks %q", got, want)
		}
	}
	if got := (&KillReport{Error: "not local"}).Text(); got != "no server killed: not local" {
		t.Errorf("Text() = %q", got)
	}
}
