package testcluster

import (
	"syscall"
	"testing"
)

// KillEverything sends SIGKILL to the coordinator and to every server of
// the current view in one go, as a power cut would, and waits until the
// coordinator is gone. The servers' pids become the cluster's own (Owns,
// cleanup). RestartCoord starts the cluster again on the same directory.
func (c *Cluster) KillEverything(t testing.TB) []Victim {
	t.Helper()
	c.single(t)
	st := c.Status(t)
	vs := make([]Victim, 0, len(st.Servers))
	for _, s := range st.Servers {
		if s.PID > 0 && c.Owns(s.PID) {
			vs = append(vs, Victim{ID: s.ID, PID: s.PID, Incarnation: s.Incarnation})
		}
	}
	c.rememberServers()
	_ = c.main.cmd.Process.Signal(syscall.SIGKILL)
	for _, v := range vs {
		_ = syscall.Kill(v.PID, syscall.SIGKILL)
	}
	<-c.main.exited
	return vs
}
