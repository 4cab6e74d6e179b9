package coord

import (
	"strings"
	"testing"

	"ftkv/limits"
)

// A limit line of the cluster file reaches the servers as their flag; a
// coordinator flag overrides it; a bad line names file and line.
func TestLimitLinesReachServers(t *testing.T) {
	cl, err := ParseCluster("c.txt", strings.NewReader("1\nlocalhost 0 0 0\nmax_clients 500\nsession_ttl 2s\noutput_soft_limit 1mb\n"))
	if err != nil {
		t.Fatal(err)
	}
	c := &Coordinator{opts: Options{Cluster: cl, LimitFlags: limits.Config{MaxClients: 700}}}
	args := strings.Join(serverArgs(SpawnSpec{Limits: c.limits()}, "127.0.0.1"), " ")
	for _, want := range []string{"-max-clients 700", "-session-ttl 2s", "-output-soft-limit 1048576"} {
		if !strings.Contains(args, want) {
			t.Errorf("server args %q lack %q", args, want)
		}
	}
	if strings.Contains(args, "-idle-timeout") {
		t.Errorf("a limit not set is passed: %q", args)
	}
	_, err = ParseCluster("c.txt", strings.NewReader("1\nlocalhost 0 0 0\n\nframe_timeout soon\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "c.txt:4: frame_timeout") {
		t.Fatalf("bad limit line: %v", err)
	}
}
