package e2e

import (
	"bytes"
	"context"
	"errors"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"ftkv/internal/testkit/testcluster"
)

// TestBadToolFlags runs bin/gateway and bin/bench with numeric flags a
// user could mistype, bin/coord with -metrics on its own -c or -s port,
// and each tool with a flag's value empty: each exits 2 at once with one line naming the flag, instead of
// running with a silent default or a nonsense value (or, for bin/coord,
// spawning the servers and then failing to bind, exit 1).
func TestBadToolFlags(t *testing.T) {
	bin := testcluster.Bin(t)
	cfg, err := filepath.Abs("../../config.txt")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		tool string
		args []string
		want string
	}{
		{"gateway", []string{"-p", "1", "-timeout", "0"}, "-timeout 0s"},
		{"gateway", []string{"-p", "1", "-timeout", "-1s"}, "-timeout -1s"},
		{"gateway", []string{"-p", "1", "-max-clients", "-1"}, "-max-clients -1"},
		{"gateway", []string{"-p", "1", "-max-inflight", "-5"}, "-max-inflight -5"},
		{"gateway", []string{"-p", "1", "-loops", "-1"}, "-loops -1"},
		{"gateway", []string{"-p", "1", "-conns", "0"}, "-conns 0"},
		{"gateway", []string{"-p", "1", "-output-budget", "banana"}, "-output-budget"},
		{"gateway", []string{"-p", "1", "-output-soft-limit", "64MiB", "-output-hard-limit", "1MiB"}, "output_hard_limit 1048576 is below output_soft_limit"},
		{"gateway", []string{"-p", "1", "-listen", "nope"}, "-listen nope"},
		{"gateway", []string{"-p", "1", "-http", "bad"}, "-http bad"},
		{"gateway", []string{"-p", "1", "-metrics", "127.0.0.1:99999"}, "-metrics 127.0.0.1:99999"},
		{"coord", []string{"-c", "7391", "-s", "7392", "-C", cfg, "-metrics", "127.0.0.1:7391"}, "-metrics 127.0.0.1:7391"},
		{"coord", []string{"-c", "7391", "-s", "7392", "-C", cfg, "-metrics", ":7392"}, "-metrics :7392"},
		{"bench", []string{"-p", "1", "-c", "0"}, "-c 0"},
		{"bench", []string{"-p", "1", "-keys", "0"}, "-keys 0"},
		{"bench", []string{"-p", "1", "-P", "0"}, "-P 0"},
		{"bench", []string{"-p", "1", "-size", "0"}, "-size 0"},
		{"bench", []string{"-p", "1", "-duration", "0s"}, "-duration 0s"},
		// Empty values (a script's unset variable) were read as not given:
		// plaintext for -tls-ca, stdin for -f, no HTTP API for -http.
		{"gateway", []string{"-p", "1", "-http", ""}, "-http needs a value"},
		{"gateway", []string{"-p", "1", "-tls-ca", ""}, "-tls-ca needs a value"},
		{"gateway", []string{"-p", "1", "-log", ""}, "-log needs a value"},
		{"coord", []string{"-c", "7391", "-s", "7392", "-C", cfg, "-metrics", ""}, "-metrics needs a value"},
		{"coord", []string{"-c", "7391", "-s", "7392", "-C", cfg, "-l", ""}, "-l needs a value"},
		{"bench", []string{"-p", "1", "-tls-ca", ""}, "-tls-ca needs a value"},
		{"bench", []string{"-p", "1", "-user", ""}, "-user needs a value"},
		{"client", []string{"-p", "1", "-tls-ca", "", "G", "k"}, "-tls-ca needs a value"},
		{"client", []string{"-p", "1", "-f", ""}, "-f needs a value"},
		{"client", []string{"-p", "1", "-user", "", "G", "k"}, "-user needs a value"},
	} {
		t.Run(c.tool+strings.Join(c.args, "_"), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(bin, c.tool), c.args...)
			cmd.Dir = t.TempDir() // (a command that wrongly runs leaves its files there)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			var ee *exec.ExitError
			if ctx.Err() != nil || !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("%s %q: %v, want exit status 2; stderr %q", c.tool, c.args, err, stderr.String())
			}
			oneErrorLine(t, c.tool, stderr.String())
			if !strings.Contains(stderr.String(), c.want) {
				t.Errorf("%s %q: error %q does not name %q", c.tool, c.args, stderr.String(), c.want)
			}
		})
	}
}

// coordExit2 runs bin/coord (path, in dir) with args, and fails unless it
// exits 2 within 10 s after one line on stderr, which it returns.
func coordExit2(t *testing.T, dir, path string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("coord %q: %v, want exit status 2; stderr %q", args, err, stderr.String())
	}
	oneErrorLine(t, "coord", stderr.String())
	return stderr.String()
}

// TestCoordGroupMetricsOnItsOwnPort: a member of a group given -metrics
// on one of its coordinator line's ports exits 2 with one line naming
// the flag; it bound its Raft and metrics ports first, then failed on its
// client port (exit 1).
func TestCoordGroupMetricsOnItsOwnPort(t *testing.T) {
	bin := testcluster.Bin(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "group.txt")
	text := "3\nlocalhost 0 0 0\nlocalhost 0 0 0\nlocalhost 0 0 0\n" +
		"coordinator 127.0.0.1:17610 17600 17601\ncoordinator 127.0.0.1:17620 17602 17603\ncoordinator 127.0.0.1:17630 17604 17605\n"
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, port := range []string{"17600", "17601", "17610"} {
		msg := coordExit2(t, dir, filepath.Join(bin, "coord"), "-C", cfg, "-id", "0", "-d", filepath.Join(dir, "raft"), "-metrics", "127.0.0.1:"+port)
		if !strings.Contains(msg, "-metrics 127.0.0.1:"+port) {
			t.Errorf("-metrics on port %s: %q does not name the flag", port, msg)
		}
	}
}

// TestServerStartErrorOneLine: a server that cannot listen (its fixed
// port taken, on a respawn) says so on one line, prefixed once with its
// id: the coordinator's stderr showed "server 1: server 1: listen: ..."
// (a black-box tester).
func TestServerStartErrorOneLine(t *testing.T) {
	held, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	_, port, _ := net.SplitHostPort(held.Addr().String())
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(testcluster.Bin(t), "server"), "-coord", "127.0.0.1:1", "-id", "1", "-client-port", port, "-secrets-stdin")
	cmd.Dir = t.TempDir()
	cmd.Args = append(cmd.Args, "-log", filepath.Join(cmd.Dir, "server.log"))
	cmd.Stdin = strings.NewReader("a-cluster-secret\n")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if ctx.Err() != nil || !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("server on a taken port: %v, want exit status 1; stderr %q", err, stderr.String())
	}
	line := strings.TrimSpace(stderr.String())
	if strings.Count(line, "\n") != 0 || !strings.HasPrefix(line, "server 1: listen") || strings.Count(line, "server 1:") != 1 {
		t.Errorf("stderr %q: want one line \"server 1: listen ...\" naming the server once", stderr.String())
	}
}
