package coord

import (
	"strings"
	"testing"
	"time"

	"ftkv/timing"
)

// TestOptionsTiming checks that -t reaches every duration and travels to
// the servers as one duration flag.
func TestOptionsTiming(t *testing.T) {
	cl := &Cluster{Servers: []ServerSpec{{Host: "localhost"}}}
	o, err := Options{Cluster: cl, Timeout: 2 * time.Second, Spawner: &LocalSpawner{}}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if o.Timing != timing.New(2*time.Second) {
		t.Errorf("Timing = %+v, want timing.New(2s)", o.Timing)
	}
	args := strings.Join(serverArgs(SpawnSpec{FailureTimeout: o.Timing.FailureTimeout}, "127.0.0.1"), " ")
	if !strings.Contains(args, "-failure-timeout 2s") || strings.Contains(args, "-heartbeat") || strings.Contains(args, "-lease") {
		t.Errorf("server args %q: want -failure-timeout 2s only", args)
	}
	fast := timing.Fast()
	o, err = Options{Cluster: cl, Timeout: time.Second, Timing: fast, Spawner: &LocalSpawner{}}.withDefaults()
	if err != nil || o.Timing != fast || o.Timeout != fast.FailureTimeout {
		t.Errorf("a preset: Timing %+v, Timeout %s, err %v", o.Timing, o.Timeout, err)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{ClientPort: 70000}, "-c 70000: not a port number"},
		{Options{ServersPort: -1}, "-s -1: not a port number"},
		{Options{RemoteFlags: RemoteSettings{ConnectTimeout: 601}}, "-ssh-connect-timeout 601"},
		{Options{RemoteFlags: RemoteSettings{Identity: "/no/such/key"}}, "-ssh-identity /no/such/key: no such file"},
		{Options{Timeout: 5 * time.Millisecond}, "-t 5ms: must be between 10ms and 1h"},
		{Options{Timing: timing.Config{FailureTimeout: time.Second}}, "timing: "},
	} {
		err := c.o.Validate()
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Validate(%+v) = %v, want %q", c.o, err, c.want)
		}
	}
	if err := (&Options{}).Validate(); err != nil {
		t.Errorf("zero options: %v", err)
	}
}
