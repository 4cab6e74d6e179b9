package coord

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// localSSH is an ssh client that runs the command (its last argument)
// here, with bash -c, as sshd runs it with the user's login shell. It
// answers once that shell has exited, without waiting for its children
// to let go of its output (sshd waits for that).
func localSSH(t *testing.T) string {
	t.Helper()
	d := t.TempDir()
	f := filepath.Join(d, "ssh")
	script := "#!/bin/bash\nfor a; do last=$a; done\nbash -c \"$last\" >" + d + "/out 2>" + d + "/err; rc=$?\ncat " + d + "/out; cat " + d + "/err >&2; exit $rc\n"
	if err := os.WriteFile(f, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return f
}

// TestRemoteStartKillableBeforeExec: the start script told the pid of
// its background child at once, maybe before setsid had exec'd the
// server there. A Kill in that instant found no marker in the pid's
// command line, took the process for gone, and the server started anyway
// and ran on (this test failed). Now the script tells the pid once the
// server's command line runs. Over ssh the window is short (sshd answers
// once the child has redirected its output, just before the exec); here
// it is forced: the ssh answers at once, and the server's log is a FIFO
// that nobody reads for a second, so the child blocks opening it, before
// the exec.
func TestRemoteStartKillableBeforeExec(t *testing.T) {
	dir := t.TempDir()
	logf := filepath.Join(dir, "server_0.log")
	if err := syscall.Mkfifo(logf, 0o644); err != nil {
		t.Fatal(err)
	}
	go func() {
		time.Sleep(time.Second)
		f, err := os.Open(logf) // (blocks until the child opens it too)
		if err == nil {
			_, _ = io.Copy(io.Discard, f)
			f.Close()
		}
	}()
	bin := filepath.Join(t.TempDir(), "server")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\nwhile :; do sleep 1; done\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	s := &SSHSpawner{SSH: localSSH(t), Binary: bin, Dir: dir, Log: zerolog.Nop()}
	sp := SpawnSpec{ID: 0, Servers: 3, Incarnation: 7, Spec: ServerSpec{Host: "u@h"}, CoordAddr: "127.0.0.1:9"}
	p, err := s.Spawn(context.Background(), sp)
	if err != nil {
		t.Fatal(err)
	}
	pid := p.PID()
	t.Cleanup(func() { _ = syscall.Kill(pid, syscall.SIGKILL); p.(*sshProc).Release() })
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	told := strings.ReplaceAll(string(b), "\x00", " ")
	t.Logf("told pid %d: %.200q", pid, told)
	if err := p.Kill(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("Kill did not end the process")
	}
	time.Sleep(1500 * time.Millisecond) // past the FIFO's second
	if alive(pid) {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		t.Fatalf("pid %d runs %q after Kill reported it gone (its command line when the pid was told: %.60q)", pid, strings.ReplaceAll(string(b), "\x00", " "), told)
	}
}

// TestOrphanedWatcherEnds: the remote side of a watcher whose ssh
// session closed as it opened (released at once) started with init as its
// parent; its check of the session ($PPID alive) always held, and it
// polled as long as the server ran (an attack counted 8 such shells after
// leaderships of half a second). Now it ends at once, and any watcher
// ends after its rounds (saying "renew"), whatever its parent.
func TestOrphanedWatcherEnds(t *testing.T) {
	srv := startFakeServer(t, 0, 1)
	p := &sshProc{s: &SSHSpawner{}, pid: srv.Process.Pid, marker: " -id 0 -inc 1 ", logFile: "server_0.log"}
	run := func(script string, orphan bool) (pid int, parent string) {
		t.Helper()
		f, err := os.CreateTemp(t.TempDir(), "out")
		if err != nil {
			t.Fatal(err)
		}
		// An orphan: its parent shell exits before it starts (as the
		// session's sshd did); it prints its parent and its pid first.
		wrap := `echo $PPID $$; exec sh -c "$0"`
		if orphan {
			wrap = `( sleep 0.3; exec sh -c 'echo $PPID $$; exec sh -c "$0"' "$0" ) & exit 0`
		}
		cmd := exec.Command("sh", "-c", wrap, script)
		cmd.Stdout, cmd.Stderr = f, f
		if err := cmd.Run(); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			b, _ := os.ReadFile(f.Name())
			if w := strings.Fields(string(b)); len(w) >= 2 {
				pid, _ := strconv.Atoi(w[1])
				t.Logf("watcher pid %d, parent %s", pid, w[0])
				return pid, w[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("the watcher did not start: %q", b)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	gone := func(pid int, within time.Duration) bool {
		deadline := time.Now().Add(within)
		for time.Now().Before(deadline) {
			if !alive(pid) {
				return true
			}
			time.Sleep(20 * time.Millisecond)
		}
		return false
	}

	pid, parent := run(p.watchScript(watchRounds), true)
	if parent != "1" {
		// (A child subreaper above this test adopted the orphan: the
		// script's check of a parent of 1 cannot tell; its renewal
		// after a minute bounds such an orphan.)
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Skipf("the orphan's parent is %s, not init: a subreaper adopted it", parent)
	}
	if !gone(pid, 3*time.Second) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
		t.Fatalf("an orphaned watcher (pid %d) still polls 3s later", pid)
	}
	if !alive(srv.Process.Pid) {
		t.Fatal("the server is gone")
	}

	// With a parent that stays (the session), the watcher renews after
	// its rounds, and says the server exited when it does.
	sh := exec.Command("sh", "-c", p.watchScript(3))
	b, err := sh.Output()
	if err != nil || strings.TrimSpace(string(b)) != "renew" {
		t.Fatalf("a watcher's session after 3 rounds: %q, %v; want renew", b, err)
	}
	sh = exec.Command("sh", "-c", p.watchScript(watchRounds))
	done := make(chan []byte, 1)
	go func() { b, _ := sh.Output(); done <- b }()
	time.Sleep(300 * time.Millisecond)
	_ = srv.Process.Kill()
	select {
	case b := <-done:
		if !strings.Contains(string(b), "exited") {
			t.Fatalf("the watcher said %q when the server exited", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the watcher did not see the server exit")
	}
}
