package e2e

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"

	"ftkv/internal/testkit/testcluster"
)

// TestCoordGroupSecret: a group without TLS but with group_secret_file
// elects, serves and fails over as any; a stray sender's TimeoutNow to
// each follower's Raft port (raft's own transport, no secret) changes
// nothing. Without the secret each such message started an election at
// once (the term grew by one for each).
func TestCoordGroupSecret(t *testing.T) {
	dir := t.TempDir()
	secret := filepath.Join(dir, "group.secret")
	if err := os.WriteFile(secret, []byte("a-group-secret-of-some-length\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := "3\nlocalhost 0 0 0\nlocalhost 0 0 0\nlocalhost 0 0 0\ngroup_secret_file " + secret + "\n"
	c := testcluster.Start(t, testcluster.Options{Config: cfg, Coordinators: groupCoords})
	before := c.WaitRecovered(t, recoverTimeout)
	cls := dialClients(c, 1)
	if r := runCLI(t, c.Bin, "", "", "-h", c.ClientAddrs(), "P", "group-secret", "x"); r.code != 0 || r.stdout != "OK\n" {
		t.Fatalf("bin/client P: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	leader := c.LeaderIndex(t)

	stray, err := raft.NewTCPTransportWithLogger("127.0.0.1:0", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}, 3, 2*time.Second, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer stray.Close()
	for k := 0; k < groupCoords; k++ {
		if k == leader {
			continue
		}
		var resp raft.TimeoutNowResponse
		err := stray.TimeoutNow(raft.ServerID("x"), raft.ServerAddress(c.Coord(k).RaftAddr),
			&raft.TimeoutNowRequest{RPCHeader: raft.RPCHeader{ProtocolVersion: raft.ProtocolVersionMax}}, &resp)
		if err == nil {
			t.Errorf("coordinator %d answered a stray TimeoutNow", k)
		}
	}
	time.Sleep(2 * time.Second) // an election it started would be over
	after := c.WaitRecovered(t, recoverTimeout)
	if after.Term != before.Term || c.LeaderIndex(t) != leader {
		t.Errorf("term %d -> %d, leader %d -> %d after stray TimeoutNow messages: want both unchanged", before.Term, after.Term, leader, c.LeaderIndex(t))
	}
	refused := 0
	for k := 0; k < groupCoords; k++ {
		b, _ := os.ReadFile(c.Coord(k).Log)
		refused += strings.Count(string(b), "did not prove the group secret")
	}
	if refused == 0 {
		t.Errorf("no coordinator logged a refused Raft connection")
	}

	// The group still works with the secret: a new leader after a kill.
	killed := time.Now()
	c.KillCoordK(t, leader)
	newLeader(t, c, leader, after.Term, killed)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if v, err := cls[0].Get(ctx, "group-secret"); err != nil || string(v) != "x" {
		t.Errorf("get after the leader's kill: %q, %v", v, err)
	}
}
