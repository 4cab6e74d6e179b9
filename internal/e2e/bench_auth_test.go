package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ftkv/bench"
)

// TestBenchFaultModesWithUsers: bin/bench's fault modes work on a cluster
// with users, as an admin (they read the servers' pids from the status,
// which only admins see): -mode memory loads and reads every server's RSS,
// -mode failover kills a primary and measures the gap. Another user gets
// one clear line and exit 1, not a failed kill.
func TestBenchFaultModesWithUsers(t *testing.T) {
	us := newAuthUsers(t)
	c := startAuthCluster(t, 3, us)
	run := func(u authUser, args ...string) (string, string, int) {
		r := runBin(t, 90*time.Second, filepath.Join(c.Bin, "bench"), []string{"FTKV_PASSWORD=" + u.password},
			append([]string{"-h", c.Addr, "-user", u.name, "-json"}, args...)...)
		return r.stdout, r.stderr, r.code
	}

	out, errs, code := run(us.admin, "-mode", "memory", "-entries", "3000", "-settle", "100ms")
	var mem bench.MemoryResult
	if code != 0 || json.Unmarshal([]byte(out), &mem) != nil || len(mem.Servers) != 3 {
		t.Fatalf("bench -mode memory as admin: exit %d, %q, stderr %q", code, out, errs)
	}
	for _, s := range mem.Servers {
		if s.PID <= 0 || s.RSSAfter <= 0 {
			t.Errorf("memory: server %+v has no pid or RSS", s)
		}
	}

	out, errs, code = run(us.admin, "-mode", "failover", "-kills", "1", "-recover", "60s")
	var fo bench.FailoverResult
	if code != 0 || json.Unmarshal([]byte(out), &fo) != nil || len(fo.Kills) != 1 {
		t.Fatalf("bench -mode failover as admin: exit %d, %q, stderr %q", code, out, errs)
	}
	t.Logf("failover as admin: %+v", fo.Kills[0])

	_, errs, code = run(us.writer, "-mode", "memory", "-entries", "10")
	if code != 1 || !strings.Contains(errs, "need an admin user") || strings.Count(strings.TrimSpace(errs), "\n") > 0 {
		t.Errorf("bench -mode memory as a readwrite user: exit %d, stderr %q; want exit 1 and one line naming the admin role", code, errs)
	}
	_, errs, code = run(us.admin, "-mode", "probe", "-probe", "nonreader")
	if code != 2 || !strings.Contains(errs, "-mode probe") {
		t.Errorf("bench -mode probe -user: exit %d, stderr %q; want a usage error", code, errs)
	}
}
