package e2e

import (
	"testing"

	"ftkv/internal/testkit/testcluster"
)

// TestStatusEpochAtStart: as soon as the coordinator says the cluster is
// ready, status shows every serving server at the view's epoch (it
// confirmed the view by answering its push), not at epoch 0 until its next
// heartbeat; likewise right after a failover. Found by a black-box test.
func TestStatusEpochAtStart(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})
	check := func(what string) {
		t.Helper()
		st := c.Status(t)
		for _, s := range st.Servers {
			if s.State == "serving" && s.Epoch != st.Epoch {
				t.Errorf("%s: server %d serving at epoch %d, the view's is %d", what, s.ID, s.Epoch, st.Epoch)
			}
		}
	}
	check("at start")
	v := c.KillServer(t, 1)
	c.WaitRecovered(t, recoverTimeout, v)
	check("after recovery")
}
