package e2e

import (
	"context"
	"strings"
	"syscall"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
)

// TestHole9CutWhileSecondaryComesLate: a lasting cut between a primary
// and its secondary while the secondary's heartbeats reach the coordinator
// only every ~0.6 failure timeouts (it is stopped and resumed in a cycle;
// never silent for a whole one). The secondary is failed LinkStall after
// the cut, as in TestHole9PrimarySecondaryPartition. (A review: link
// reports set aside for half a failure timeout after each late heartbeat
// held shard 0's writes 15 s.)
func TestHole9CutWhileSecondaryComesLate(t *testing.T) {
	c, cutLink, before := startCutCluster(t)
	to := testcluster.DefaultTimeout
	pid := int(before.Servers[1].PID) // secondary of shard 0, whose primary is server 0

	cls := dialClients(c, 2)
	keys := keysOfShard(0, 3, 4000)
	ctx := context.Background()
	if err := cls[0].Put(ctx, keys[0], []byte("x")); err != nil {
		t.Fatal(err)
	}

	// Server 1: stopped 0.5 FT, running 0.1 FT, in a cycle.
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer syscall.Kill(pid, syscall.SIGCONT)
		for {
			select {
			case <-stop:
				return
			default:
			}
			syscall.Kill(pid, syscall.SIGSTOP)
			time.Sleep(to / 2)
			syscall.Kill(pid, syscall.SIGCONT)
			time.Sleep(to / 10)
		}
	}()
	t.Cleanup(func() {
		select {
		case <-stop:
		default:
			close(stop)
		}
		<-done
	})
	time.Sleep(to) // (the flapping under way before the cut)

	cutAt := cutLink()

	limit := 40 * to
	var writable time.Duration
	for i := 1; ; i++ {
		if i == len(keys) {
			t.Fatal("out of probe keys")
		}
		pctx, cancel := context.WithTimeout(ctx, to)
		err := cls[0].Put(pctx, keys[i], []byte("v"))
		cancel()
		if err == nil && time.Since(cutAt) > to {
			writable = time.Since(cutAt)
			break
		}
		if time.Since(cutAt) > limit {
			break
		}
	}
	close(stop)
	<-done
	st, _ := c.TryStatus(context.Background())
	for _, line := range strings.Split(c.Log(), "\n") {
		if strings.Contains(line, "cannot replicate") || strings.Contains(line, "no heartbeat for") {
			t.Logf("coord: %.400s", line)
		}
	}
	if writable == 0 {
		t.Fatalf("shard 0 not writable %s after the cut (hole 9's limit is %s)\nstatus:\n%s",
			time.Since(cutAt).Round(time.Millisecond), 12*to, testcluster.StatusJSON(st))
	}
	t.Logf("shard 0 writable again %s after the cut (hole 9's limit %s)", writable.Round(time.Millisecond), 12*to)
	if writable > 12*to {
		t.Errorf("later than hole 9's limit")
	}
}
