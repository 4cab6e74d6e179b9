package e2e

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
)

// TestProbeInterrupted: ctrl+c (SIGINT) during `bin/bench -mode probe`
// reports what ran, with the server alive and no failover, and exits 0,
// as an interrupted bench run does. It printed "server survived: NO: pid
// N -> 0" and 2^64-1 failovers and exited 1: the status after the probe
// was read with the cancelled context. The honest clients' preload runs
// before the probe (announced on stderr), not beside it.
func TestProbeInterrupted(t *testing.T) {
	c := testcluster.Start(t, testcluster.Options{N: 3})
	c.WaitRecovered(t, 20*time.Second)
	cmd := exec.Command(filepath.Join(testcluster.Bin(t), "bench"), "-mode", "probe", "-probe", "huge-length",
		"-victim", "1", "-h", c.Addr, "-duration", "60s", "-c", "2", "-keys", "2000")
	var stdout bytes.Buffer
	var stderr syncBuf // read while bench writes it
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Interrupted once the probe runs (its preload done).
	deadline := time.Now().Add(60 * time.Second)
	for !strings.Contains(stderr.String(), "probe huge-length against server 1") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(time.Second)
	err := signalAndWait(t, cmd, os.Interrupt, 30*time.Second)
	out := stdout.String()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		t.Fatalf("bench -mode probe interrupted: exit %d, want 0\nstdout:\n%s\nstderr:\n%s", ee.ExitCode(), out, stderr.String())
	} else if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"interrupted:      yes", "server survived:  yes", "failovers:        0 "} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}
	if !strings.Contains(stderr.String(), "preloading 2000 keys") {
		t.Errorf("the preload was not announced on stderr: %q", stderr.String())
	}
}

// signalAndWait sends sig to cmd's process and returns its Wait's error;
// the test fails (and the process is killed) if it has not exited within d.
func signalAndWait(t *testing.T, cmd *exec.Cmd, sig os.Signal, d time.Duration) error {
	t.Helper()
	if err := cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("%s did not exit within %s of %v", filepath.Base(cmd.Path), d, sig)
		return nil
	}
}
