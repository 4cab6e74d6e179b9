package coord

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// fakeSSH is an ssh client that runs the remote script here, in home.
func fakeSSH(t *testing.T, home string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "fakessh")
	script := "#!/bin/sh\nfor a; do last=$a; done\ncd " + shq(home) + " || exit 255\nexec sh -c \"$last\"\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// exitedPID returns the pid of a process that has exited.
func exitedPID(t *testing.T) int {
	t.Helper()
	c := exec.Command("true")
	if err := c.Run(); err != nil {
		t.Fatal(err)
	}
	return c.Process.Pid
}

// TestSSHWatcherReadsRefusal: the watcher of a server on an ssh host
// reports exit status 3 when the server's log (in remote_dir) ends with
// its refusal line, and -1 otherwise. A review found a relative
// remote_dir looked up twice (never found), and an earlier run's line of
// the same id and incarnation counted for a server that failed otherwise
// (the line now carries the pid).
func TestSSHWatcherReadsRefusal(t *testing.T) {
	home := t.TempDir()
	if err := os.MkdirAll(filepath.Join(home, "rdir"), 0o755); err != nil {
		t.Fatal(err)
	}
	logPath := filepath.Join(home, "rdir", "server_0.log")
	pid := exitedPID(t)
	code := func(dir string) int {
		s := &SSHSpawner{SSH: fakeSSH(t, home), Dir: dir}
		p := s.Adopt("h", pid, 0, 5).(*sshProc)
		select {
		case <-p.Done():
		case <-time.After(10 * time.Second):
			t.Fatal("the exit was not detected")
		}
		return p.ExitCode()
	}
	refused := "{\"level\":\"info\"}\nserver 0: data directory refused: belongs to a cluster of 3 servers\n" + refusedLine(0, 5, pid) + "\n"
	earlier := refusedLine(0, 5, pid+100000) + "\nserver 0: listen tcp 0.0.0.0:7000: bind: address already in use\n"
	for _, c := range []struct {
		name, log, dir string
		want           int
	}{
		{"refused, absolute remote_dir", refused, filepath.Join(home, "rdir"), serverRefused},
		{"refused, relative remote_dir", refused, "rdir", serverRefused},
		{"an earlier run's line, then another failure", earlier, filepath.Join(home, "rdir"), -1},
		{"no log", "", filepath.Join(home, "rdir"), -1},
	} {
		if c.log == "" {
			_ = os.Remove(logPath)
		} else if err := os.WriteFile(logPath, []byte(c.log), 0o644); err != nil {
			t.Fatal(err)
		}
		if got := code(c.dir); got != c.want {
			t.Errorf("%s: exit code %d, want %d", c.name, got, c.want)
		}
	}
}
