package e2e

// Tests from a review of the control plane on Raft: each provokes, with
// real processes, a defect the review reproduced by hand.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftkv/client"
	"ftkv/internal/testkit/testcluster"
)

// serversOf returns the pids of the server processes whose command line
// names coordAddr (the servers a coordinator on that address spawned).
func serversOf(coordAddr string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil {
			continue
		}
		args := strings.Split(strings.TrimRight(string(b), "\x00"), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "server" {
			continue
		}
		for i := 0; i+1 < len(args); i++ {
			if args[i] == "-coord" && strings.Contains(args[i+1], coordAddr) {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

// TestReviewSingleCoordKilledDuringStartFixedPorts: a single coordinator
// killed (kill -9) during its start-up, after it spawned the servers and
// before their first view, must come back when started again with the
// same flags in the same directory (SPEC §2, Restart). With fixed server
// ports it often does not: the fresh start spawns the next incarnations
// while the orphaned ones still hold the ports, one exits "port in use"
// and the whole start fails ("exited during start-up (port in use?)",
// reproduced 3 of 13 times by hand). The orphans' pids were never
// committed (spawn commits the incarnation before the process exists)
// and takeOver's fresh branch neither kills earlier incarnations nor
// retries a spawn that lost its port.
func TestReviewSingleCoordKilledDuringStartFixedPorts(t *testing.T) {
	bin := testcluster.Bin(t)
	const trials = 6
	for trial := range trials {
		dir := t.TempDir()
		ports := testcluster.FreePorts(t, 11)
		cfg := "3\n"
		for i := range 3 {
			cfg += fmt.Sprintf("localhost %d %d %d\n", ports[3*i], ports[3*i+1], ports[3*i+2])
		}
		path := filepath.Join(dir, "fixed.txt")
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		cport, sport := ports[9], ports[10]
		sAddr := fmt.Sprintf("127.0.0.1:%d", sport)
		args := []string{"-c", strconv.Itoa(cport), "-s", strconv.Itoa(sport), "-C", path,
			"-t", testcluster.DefaultTimeout.String(), "-no-stdin", "-l", filepath.Join(dir, "coord.log")}
		t.Cleanup(func() {
			for _, pid := range serversOf(sAddr) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		})

		// First start: killed as soon as every server process exists.
		first := exec.Command(filepath.Join(bin, "coord"), args...)
		first.Dir = dir
		if err := first.Start(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Second)
		for len(serversOf(sAddr)) < 3 && time.Now().Before(deadline) {
			time.Sleep(2 * time.Millisecond)
		}
		_ = first.Process.Kill()
		_ = first.Wait()
		orphans := serversOf(sAddr)

		// Second start, same flags, same directory: must serve.
		var out bytes.Buffer
		second := exec.Command(filepath.Join(bin, "coord"), args...)
		second.Dir = dir
		second.Stdout, second.Stderr = &out, &out
		second.WaitDelay = 2 * time.Second
		if err := second.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- second.Wait() }()
		addr := fmt.Sprintf("127.0.0.1:%d", cport)
		var served bool
		var werr error
		deadline = time.Now().Add(30 * time.Second)
	wait:
		for time.Now().Before(deadline) {
			select {
			case err := <-exited:
				t.Fatalf("trial %d: the coordinator killed during start-up (%d orphaned servers) did not come back: "+
					"restarted with the same flags in the same directory, it exited (%v): %s",
					trial, len(orphans), err, strings.TrimSpace(out.String()))
			case <-time.After(200 * time.Millisecond):
			}
			werr = reviewPut(addr, fmt.Sprintf("restart-%d", trial))
			if werr == nil {
				served = true
				break wait
			}
		}
		_ = second.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			_ = second.Process.Kill()
			<-exited
		}
		if !served {
			t.Fatalf("trial %d: the restarted coordinator never served a write within 30 s: %v", trial, werr)
		}
		t.Logf("trial %d: %d orphaned servers; the restart served", trial, len(orphans))
	}
}

// reviewPut writes one key through the coordinator at addr.
func reviewPut(addr, key string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, addr)
	if err != nil {
		return err
	}
	defer cl.Close()
	return cl.Put(ctx, key, []byte("v"))
}

// TestReviewGroupEditedConfigLeaderWedges: a coordinator of a group
// restarted with an edited config (one more server line) starts without
// a word, and once it is elected leader its takeover fails ("the
// committed cluster has 3 servers, the config 4") but it keeps the Raft
// leadership for good: its heartbeats answer UNAVAILABLE (still
// "adopting"), nothing is ever failed over, status shows epoch 0 and
// four servers "starting". Reproduced by hand: a server killed then left
// two shards unwritable for as long as the bad coordinator led, while
// two healthy coordinators (a quorum) were up. A coordinator whose
// config does not match the committed cluster must refuse to start (one
// line, exit 2) or never keep a leadership it cannot use; either way a
// server killed while it is in the group must be failed over and
// recovered.
func TestReviewGroupEditedConfigLeaderWedges(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3, Coordinators: 3})
	healthy := c.WaitRecovered(t, recoverTimeout)
	raw, err := os.ReadFile(c.ConfigPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitN(string(raw), "\n", 2)
	bad := "4\nlocalhost 0 0 0\n" + lines[1]
	badPath := filepath.Join(c.Dir, "edited.txt")
	if err := os.WriteFile(badPath, []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}

	leader := c.LeaderIndex(t)
	k := (leader + 1) % 3 // a follower gets the edited config
	info := c.Coord(k)
	c.KillCoordK(t, k)
	var out bytes.Buffer
	cmd := exec.Command(filepath.Join(c.Bin, "coord"), "-C", badPath, "-t", testcluster.DefaultTimeout.String(),
		"-id", strconv.Itoa(k), "-d", info.DataDir, "-l", info.Log+".edited", "-no-stdin")
	cmd.Dir = c.Dir
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	gone := make(chan struct{})
	go func() { exited <- cmd.Wait(); close(gone) }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-gone
	})
	select {
	case err := <-exited:
		// Refused at start: the fix this test accepts first.
		t.Logf("coordinator %d with the edited config exited: %v: %s", k, err, strings.TrimSpace(out.String()))
		if err == nil {
			t.Errorf("coordinator with an edited config exited 0")
		}
	case <-time.After(3 * time.Second):
		t.Logf("coordinator %d runs with the edited config (%d servers); giving it the leadership", k, 4)
		// Kill the healthy leader until the edited one is elected (each
		// election between it and one healthy coordinator is a coin toss).
		for round := 0; round < 8; round++ {
			st, err := c.CoordStatus(k)
			if err == nil && st.Leader == k {
				break
			}
			if err != nil || st.Leader < 0 {
				time.Sleep(200 * time.Millisecond)
				continue
			}
			l := st.Leader
			c.KillCoordK(t, l)
			testcluster.Eventually(t, electionBound+5*time.Second, "a new leader after the kill", func() bool {
				st, err := c.CoordStatus(k)
				return err == nil && st.Leader >= 0 && st.Leader != l
			})
			c.RestartCoordK(t, l)
		}
		if st, err := c.CoordStatus(k); err == nil && st.Leader == k {
			t.Logf("coordinator %d (edited config) leads, term %d, epoch %d", k, st.Term, st.Epoch)
		}
	}

	// A server killed now must be failed over and recovered (its pid from
	// the healthy status: a wedged leader reports none).
	s1 := healthy.Servers[1]
	v := testcluster.Victim{ID: 1, PID: s1.PID, Incarnation: s1.Incarnation}
	if !c.Owns(v.PID) {
		t.Fatalf("server 1: pid %d is not a server of this cluster", v.PID)
	}
	if err := syscall.Kill(v.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Poll(recoverTimeout+electionBound, 100*time.Millisecond, func(st *client.ClusterStatus) error {
		return testcluster.Recovered(st, v)
	}); err != nil {
		st, _ := c.CoordStatus(k)
		t.Fatalf("server 1 killed while a coordinator with an edited config is in the group: not recovered: %v\n"+
			"coordinator %d's report: %s\nits output: %s", err, k, testcluster.StatusJSON(st), strings.TrimSpace(out.String()))
	}
}
