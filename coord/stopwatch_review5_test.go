package coord

import (
	"context"
	"errors"
	"os/exec"
	"syscall"
	"testing"
	"time"

	"ftkv/timing"
)

// TestStopSilenceSparesABusyServer: during the stop, a local server
// whose heartbeats lag (a large dump on a loaded host: gaps of 100-400
// ms were seen at -t 100ms, 3 servers on 2 CPUs) but which keeps using
// CPU is not killed undumped; one that uses none (SIGSTOP) still is,
// after StopSilence. Before, a healthy server at -t 100ms was killed
// 229 ms into the stop with 12 MB of its dump written ("server silent
// during the stop (stopped or hung): killed, not dumped").
func TestStopSilenceSparesABusyServer(t *testing.T) {
	// (The default timeout: a busy loop left without CPU time for a
	// whole StopSilence on a loaded machine would fail the first half.)
	tm := timing.New(timing.DefaultFailureTimeout)
	c := &Coordinator{opts: Options{Timing: tm}}
	run := func(stopped bool) error {
		cmd := exec.Command("sh", "-c", "while :; do :; done")
		if err := cmd.Start(); err != nil {
			t.Skip(err)
		}
		defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
		if stopped {
			_ = cmd.Process.Signal(syscall.SIGSTOP)
		}
		p := &pidProc{pid: cmd.Process.Pid, done: make(chan struct{})}
		nd := &node{lastSeen: time.Now().Add(-time.Second)} // no heartbeat since
		ctx, cancel := context.WithTimeout(context.Background(), 5*tm.StopSilence)
		defer cancel()
		octx, stop := c.watchSilence(ctx, nd, time.Now(), p)
		defer stop()
		<-octx.Done()
		return context.Cause(octx)
	}
	if err := run(false); errors.Is(err, errSilentStop) {
		t.Errorf("a server using CPU (dumping) without heartbeats was judged silent within %s: it would be killed undumped", 5*tm.StopSilence)
	}
	if err := run(true); !errors.Is(err, errSilentStop) {
		t.Errorf("a stopped server: %v, want errSilentStop", err)
	}
}
