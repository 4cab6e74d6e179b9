package e2e

import (
	"bufio"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
)

// TestRestartWithChangedN: a cluster of 2 stopped in order (ctrl+d), then
// started again from the same directories with a config announcing 3
// servers, must refuse to start — exit 2, one line naming the config and
// both counts — instead of serving (the key->shard map depends on N:
// keys written under N = 2 read as absent under N = 3). Started again with
// the config it was made with, it serves every key. Without the
// coordinator's directory, the servers refuse the data directories. Found by a black-box
// test: the new cluster said "3 servers ready" and answered (nil) for
// acknowledged keys.
func TestRestartWithChangedN(t *testing.T) {
	bin := testcluster.Bin(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "cluster.txt")
	writeN := func(n int) {
		t.Helper()
		must(t, os.WriteFile(cfg, []byte(string(rune('0'+n))+"\n"+strings.Repeat("localhost 0 0 0\n", n)+"data_dir mydata\n"), 0o644))
	}
	// start runs bin/coord; it returns the client address once it is
	// ready (ok), or its exit code and stderr when it exits first.
	type run struct {
		cmd    *exec.Cmd
		stdin  io.WriteCloser
		addr   string
		code   int
		stderr string
	}
	start := func() *run {
		t.Helper()
		cmd := exec.Command(filepath.Join(bin, "coord"), "-c", "0", "-s", "0", "-C", cfg)
		cmd.Dir = dir
		stdin, err := cmd.StdinPipe()
		must(t, err)
		stderr, err := cmd.StderrPipe()
		must(t, err)
		cmd.Stdout = io.Discard
		must(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		r := &run{cmd: cmd, stdin: stdin}
		lines := make(chan string, 64)
		go func() {
			sc := bufio.NewScanner(stderr)
			for sc.Scan() {
				lines <- sc.Text()
			}
			close(lines)
		}()
		re := regexp.MustCompile(`clients connect to (\S+)`)
		var all []string
		timeout := time.After(60 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					err := cmd.Wait()
					var ee *exec.ExitError
					if errors.As(err, &ee) {
						r.code = ee.ExitCode()
					}
					r.stderr = strings.Join(all, "\n")
					return r
				}
				all = append(all, l)
				if m := re.FindStringSubmatch(l); m != nil {
					r.addr = strings.TrimSuffix(m[1], ";")
					go func() {
						for range lines {
						}
					}()
					return r
				}
			case <-timeout:
				t.Fatalf("bin/coord neither ready nor exited in 60 s: %q", all)
			}
		}
	}
	stop := func(r *run) {
		t.Helper()
		_ = r.stdin.Close() // ctrl+d
		done := make(chan error, 1)
		go func() { done <- r.cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("bin/coord after ctrl+d: %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("bin/coord did not stop after ctrl+d")
		}
	}

	writeN(2)
	r := start()
	if r.addr == "" {
		t.Fatalf("first start: exit %d: %s", r.code, r.stderr)
	}
	keys := []string{"n-a", "n-b", "n-c", "n-d", "n-e", "n-f", "n-g", "n-h"}
	for _, k := range keys {
		if res := runCLI(t, bin, r.addr, "", "P", k, "v-"+k); res.code != 0 {
			t.Fatalf("P %s: exit %d %s", k, res.code, res.stderr)
		}
	}
	stop(r)

	writeN(3)
	r = start()
	if r.addr != "" {
		for _, k := range keys {
			res := runCLI(t, bin, r.addr, "", "G", k)
			t.Logf("G %s with N=3: exit %d %q %q", k, res.code, res.stdout, res.stderr)
		}
		t.Fatal("bin/coord started a cluster of 3 on the data of a cluster of 2")
	}
	if r.code != 2 || !strings.Contains(r.stderr, "cluster.txt") || !strings.Contains(r.stderr, "2") || !strings.Contains(r.stderr, "3") {
		t.Fatalf("start with N changed: exit %d, stderr %q; want exit 2 naming the config and both counts", r.code, r.stderr)
	}
	t.Logf("refused: %s", r.stderr[strings.LastIndex(r.stderr, "\n")+1:])

	// Without the coordinator's own directory (deleted by mistake), the
	// servers still refuse data directories of a cluster of 2.
	must(t, os.Rename(filepath.Join(dir, "ftkv-coord"), filepath.Join(dir, "ftkv-coord.saved")))
	r = start()
	if r.addr != "" || r.code == 0 || !strings.Contains(r.stderr, "belongs to a cluster of 2 servers, this one has 3") {
		t.Fatalf("start with N changed and no coordinator directory: ready %v, exit %d, stderr %q; want a refusal naming both sizes",
			r.addr != "", r.code, r.stderr)
	}
	must(t, os.RemoveAll(filepath.Join(dir, "ftkv-coord")))
	must(t, os.Rename(filepath.Join(dir, "ftkv-coord.saved"), filepath.Join(dir, "ftkv-coord")))

	writeN(2)
	r = start()
	if r.addr == "" {
		t.Fatalf("start with the original N: exit %d: %s", r.code, r.stderr)
	}
	for _, k := range keys {
		if res := runCLI(t, bin, r.addr, "", "G", k); res.code != 0 || res.stdout != "v-"+k+"\n" {
			t.Errorf("G %s after the restart: exit %d %q %s", k, res.code, res.stdout, res.stderr)
		}
	}
	stop(r)
}
