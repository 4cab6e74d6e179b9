package e2e

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"ftkv/client"
	"ftkv/internal/auth"
	"ftkv/internal/testkit/testcluster"
)

// TestCoordConfigErrors runs bin/coord as a user would with a setting
// line holding the wrong number of values, or with a port given twice
// (-c and -s, a flag and a server line, two server lines on one host):
// each must exit 2 after one line on stderr naming the real problem,
// before anything starts — not "more server lines than announced", not a
// bind error after start-up.
func TestCoordConfigErrors(t *testing.T) {
	bin := testcluster.Bin(t)
	p := freePort(t)
	ps := strconv.Itoa(p)
	tlsDir := t.TempDir()
	if out, err := exec.Command(filepath.Join(bin, "coord"), "-gen-certs", tlsDir).CombinedOutput(); err != nil {
		t.Fatalf("coord -gen-certs: %v: %s", err, out)
	}
	hash, err := auth.HashPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		config string
		args   []string // after -C FILE -l LOG; the default is -c 0 -s 0
		want   []string // substrings of the error line; "FILE" is the config path
	}{
		{name: "fsync without value", config: "1\nlocalhost 0 0 0\nfsync\n",
			want: []string{"FILE:3: fsync needs one value (always, everysec or no)"}},
		{name: "fsync with two values", config: "1\nlocalhost 0 0 0\nfsync always no\n",
			want: []string{"FILE:3: fsync needs one value"}},
		{name: "spare without value", config: "1\nlocalhost 0 0 0\nspare\n", want: []string{"FILE:3: spare needs one value"}},
		{name: "spare with two values", config: "1\nlocalhost 0 0 0\nspare a b\n", want: []string{"FILE:3: spare needs one value"}},
		{name: "data_dir without value", config: "1\nlocalhost 0 0 0\ndata_dir\n", want: []string{"FILE:3: data_dir needs one value"}},
		{name: "max_clients between server lines", config: "2\nlocalhost 0 0 0\nmax_clients\nlocalhost 0 0 0\n",
			want: []string{"FILE:3: max_clients needs one value"}},
		{name: "-c and -s the same", config: "1\nlocalhost 0 0 0\n", args: []string{"-c", ps, "-s", ps},
			want: []string{"-c and -s are both " + ps, "each port needs its own number"}},
		{name: "-c is a server's client_port", config: "1\nlocalhost " + ps + " 0 0\n", args: []string{"-c", ps, "-s", "0"},
			want: []string{"FILE:2: client_port " + ps + " on localhost is also -c", "each port needs its own number"}},
		{name: "-s is a server's coord_port", config: "1\n127.0.0.1 0 0 " + ps + "\n", args: []string{"-c", "0", "-s", ps},
			want: []string{"FILE:2: coord_port " + ps + " on 127.0.0.1 is also -s"}},
		{name: "-c left at its default", config: "1\nlocalhost 7000 0 0\n", args: []string{"-s", "0"},
			want: []string{"FILE:2: client_port 7000 on localhost is also -c (not given: default 7000)"}},
		{name: "output_hard_limit below output_soft_limit", config: "1\nlocalhost 0 0 0\noutput_soft_limit 2m\n\noutput_hard_limit 1m\n",
			want: []string{"FILE:5: output_hard_limit 1048576 is below output_soft_limit 2097152"}},
		{name: "TLS files incomplete", config: "1\nlocalhost 0 0 0\ntls_ca ca.pem\ntls_cert server.pem\n",
			want: []string{"FILE:4: TLS needs", "missing: tls_key ("}},
		{name: "a TLS file that is not there", config: "1\nlocalhost 0 0 0\n# TLS\ntls_ca /nonexistent/ca.pem\ntls_cert " + tlsDir + "/server.pem\n" +
			"tls_key " + tlsDir + "/server-key.pem\ntls_coord_cert " + tlsDir + "/coordinator.pem\ntls_coord_key " + tlsDir + "/coordinator-key.pem\n",
			want: []string{"FILE:4: tls_ca: open /nonexistent/ca.pem: no such file or directory"}},
		{name: "a server binary that is not there", config: "1\nlocalhost 0 0 0\n", args: []string{"-c", "0", "-s", "0", "-server-bin", "/nonexistent/server"},
			want: []string{"coord: server binary /nonexistent/server: no such file or directory"}},
		{name: "users without TLS", config: "1\nlocalhost 0 0 0\n\nuser ops admin " + hash + "\nuser app readwrite " + hash + "\n",
			want: []string{"FILE:4: user lines need TLS"}},
		{name: "-c and -s with coordinator lines", config: "1\nlocalhost 0 0 0\ncoordinator 127.0.0.1:" + strconv.Itoa(freePort(t)) + " " +
			strconv.Itoa(freePort(t)) + " " + strconv.Itoa(freePort(t)) + "\n",
			want: []string{"FILE has coordinator lines", "-c and -s are not used"}},
		{name: "coordinator lines without -id", config: "1\nlocalhost 0 0 0\ncoordinator 127.0.0.1:" + strconv.Itoa(freePort(t)) + " " +
			strconv.Itoa(freePort(t)) + " " + strconv.Itoa(freePort(t)) + "\n", args: []string{},
			// (It said "-id -1: …": a value nobody gave.)
			want: []string{"coord: FILE has 1 coordinator line: start each coordinator with -id <k> (k from 0 to 0)"}},
		{name: "-id without coordinator lines", config: "1\nlocalhost 0 0 0\n", args: []string{"-c", "0", "-s", "0", "-id", "1"},
			want: []string{"-id 1: FILE has no coordinator lines"}},
		{name: "two server lines on one port", config: "2\nlocalhost " + ps + " 0 0\n127.0.0.1 0 " + ps + " 0\n",
			want: []string{"FILE:3: port " + ps + " on 127.0.0.1 is already used on line 2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := filepath.Join(dir, "c.txt")
			if err := os.WriteFile(cfg, []byte(tc.config), 0o644); err != nil {
				t.Fatal(err)
			}
			args := []string{"-C", cfg, "-l", filepath.Join(dir, "ftkv.log")}
			if tc.args == nil {
				args = append(args, "-c", "0", "-s", "0")
			}
			args = append(args, tc.args...)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, filepath.Join(bin, "coord"), args...)
			cmd.Dir = dir
			cmd.Stdin = strings.NewReader("") // a coordinator that does start stops at once
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if ctx.Err() != nil {
				t.Fatalf("coord %q did not exit within 30s", args)
			}
			code := 0
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				code = ee.ExitCode()
			}
			msg := stderr.String()
			if code != 2 {
				t.Fatalf("coord %q: exit %d, want 2; stderr %q", args, code, msg)
			}
			oneErrorLine(t, "coord", msg)
			for _, w := range tc.want {
				w = strings.ReplaceAll(w, "FILE", cfg)
				if !strings.Contains(msg, w) {
					t.Errorf("error %q does not contain %q", msg, w)
				}
			}
			for _, w := range []string{"more server lines", "address already in use", "coord: coord:"} {
				if strings.Contains(msg, w) {
					t.Errorf("error %q says %q", msg, w)
				}
			}
			if b, _ := os.ReadFile(filepath.Join(dir, "ftkv.log")); bytes.Contains(b, []byte("spawn")) {
				t.Errorf("coord spawned servers despite the bad input:\n%s", b)
			}
		})
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t *testing.T) int { t.Helper(); return testcluster.FreePorts(t, 1)[0] }

// TestCoordClientPortBusy: a client port another program holds is found
// before any server is spawned: exit 1, one line naming the port, no
// server started (it was found once the cluster was up, after spawning
// every server and creating their data directories).
func TestCoordClientPortBusy(t *testing.T) {
	bin := testcluster.Bin(t)
	hold, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer hold.Close()
	port := strconv.Itoa(hold.Addr().(*net.TCPAddr).Port)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.txt")
	if err := os.WriteFile(cfg, []byte("3\nlocalhost 0 0 0\nlocalhost 0 0 0\nlocalhost 0 0 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "coord"), "-C", cfg, "-l", filepath.Join(dir, "ftkv.log"), "-c", port, "-s", "0")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader("")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err = cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("coord -c %s (a port in use): %v, want exit 1; stderr %q", port, err, stderr.String())
	}
	msg := stderr.String()
	oneErrorLine(t, "coord", msg)
	if !strings.Contains(msg, "client port "+port) || !strings.Contains(msg, "address already in use") {
		t.Errorf("error %q does not name the busy client port", msg)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, "ftkv.log")); bytes.Contains(b, []byte("spawn")) {
		t.Errorf("coord spawned servers before finding its client port busy:\n%s", b)
	}
	for _, made := range []string{"ftkv-data", "ftkv-coord"} {
		if _, err := os.Stat(filepath.Join(dir, made)); err == nil {
			t.Errorf("%s was created before the busy client port was found", made)
		}
	}
}

// TestCoordSignalDuringSlowStart: SIGINT or SIGTERM while bin/coord reads
// its config and makes the coordinator (slowed by a test hook, as on a
// loaded machine) stops it in order: exit 1, "during start-up". It was
// killed by the signal: the handler came only after that step.
func TestCoordSignalDuringSlowStart(t *testing.T) {
	bin := testcluster.Bin(t)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "c.txt")
	if err := os.WriteFile(cfg, []byte("1\nlocalhost 0 0 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	for i, sig := range []os.Signal{os.Interrupt, syscall.SIGTERM} {
		sub := filepath.Join(dir, strconv.Itoa(i))
		if err := os.Mkdir(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(filepath.Join(bin, "coord"), "-C", cfg, "-l", filepath.Join(sub, "ftkv.log"), "-c", "0", "-s", "0", "-no-stdin")
		cmd.Dir = sub
		cmd.Env = append(os.Environ(), "FTKV_TEST_COORD_START_DELAY=3s")
		var stderr syncBuf
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Inside the delay: after its line (a fixed sleep could come
		// before the process got that far on a loaded machine).
		for deadline := time.Now().Add(20 * time.Second); !strings.Contains(stderr.String(), "start delayed") && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
		err := signalAndWait(t, cmd, sig, 30*time.Second)
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			t.Fatalf("coord sent %v during start-up: %v, want exit 1; stderr %q", sig, err, stderr.String())
		}
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			t.Fatalf("coord was killed by %v during start-up; stderr %q", ws.Signal(), stderr.String())
		}
		if ee.ExitCode() != 1 || !strings.Contains(stderr.String(), "during start-up") {
			// (stderr: the hook's line, then the interruption's.)
			t.Fatalf("coord sent %v during start-up: exit %d, stderr %q; want exit 1, \"during start-up\"", sig, ee.ExitCode(), stderr.String())
		}
	}
}

// TestCoordDataDirOfAnotherCluster: a data directory written by a cluster
// of 3 servers, a config of 1 and no coordinator state (its Raft
// directory gone): the server refuses the directory, and the coordinator
// says so and exits 2 at once, a config that does not match its data. It
// started the server five times over seconds and exited 1 with "port in
// use? data_dir unusable?".
func TestCoordDataDirOfAnotherCluster(t *testing.T) {
	bin := testcluster.Bin(t)
	dir, cfg, _ := oneServerWithFile(t, "IDENTITY", "ftkv server 0 of 3\n")
	coordRefusesDataDir(t, bin, dir, cfg)
	logb, _ := os.ReadFile(filepath.Join(dir, "ftkv.log"))
	if !bytes.Contains(logb, []byte("belongs to a cluster of 3 servers, this one has 1")) {
		t.Errorf("the log lacks the server's own reason:\n%s", logb)
	}
	if bytes.Contains(logb, []byte("starting it again")) {
		t.Errorf("the coordinator started the refusing server again:\n%s", logb)
	}
}

// TestCoordDataDirOfAnotherClusterID: server 0's data directory swapped,
// between runs, for one another cluster of the same size wrote, with more
// writes in its log. Before, it was taken: its higher log indexes won the
// restart, and the other copies were re-seeded from it (an attack: 2,230
// of 3,645 acknowledged keys read back absent). Now the directory records
// its cluster's ID: the server refuses it, the coordinator exits 2 and
// says why, and neither directory changes; with its own directory back,
// the cluster restarts with every key it acknowledged.
func TestCoordDataDirOfAnotherClusterID(t *testing.T) {
	a := testcluster.Start(t, testcluster.Options{N: 3})
	b := testcluster.Start(t, testcluster.Options{N: 3})
	keys := keysOnShards(3, 20, "mine")
	fill := func(c *testcluster.Cluster, prefix string, rounds int) {
		cl := c.Client()
		defer cl.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		for r := range rounds {
			for _, k := range keys {
				if err := cl.Put(ctx, k, []byte(fmt.Sprintf("%s-%d", prefix, r))); err != nil {
					t.Fatalf("put %s: %v", k, err)
				}
			}
		}
	}
	fill(a, "a", 1)
	fill(b, "b", 3) // (more writes: the stranger's log indexes are higher)
	for _, c := range []*testcluster.Cluster{a, b} {
		if err := c.Shutdown(10 * time.Second); err != nil {
			t.Fatal(err)
		}
	}
	mine := filepath.Join(a.Dir, "ftkv-data", "server_0")
	theirs := filepath.Join(b.Dir, "ftkv-data", "server_0")
	idTheirs, err := os.ReadFile(filepath.Join(theirs, "IDENTITY"))
	if err != nil {
		t.Fatal(err)
	}
	idMine, err := os.ReadFile(filepath.Join(mine, "IDENTITY"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(idMine, []byte("\ncluster ")) || bytes.Equal(idMine, idTheirs) {
		t.Errorf("identities %q and %q: want each to name its own cluster", idMine, idTheirs)
	}
	must(t, os.Rename(mine, mine+".away"))
	must(t, os.CopyFS(mine, os.DirFS(theirs)))
	coordRefusesDataDir(t, a.Bin, a.Dir, a.ConfigPath)
	logb, _ := os.ReadFile(filepath.Join(a.Dir, "ftkv.log"))
	if !bytes.Contains(logb, []byte("belongs to cluster ")) {
		t.Errorf("the log lacks the server's own reason (another cluster's directory)")
	}
	if got, _ := os.ReadFile(filepath.Join(mine, "IDENTITY")); !bytes.Equal(got, idTheirs) {
		t.Errorf("the refused directory's identity changed: %q, was %q", got, idTheirs)
	}

	must(t, os.RemoveAll(mine))
	must(t, os.Rename(mine+".away", mine))
	a.RestartCoord(t)
	a.WaitFor(t, 60*time.Second, "every server serving", func(st *client.ClusterStatus) error {
		for _, s := range st.Servers {
			if s.State != "serving" {
				return fmt.Errorf("server %d is %s", s.ID, s.State)
			}
		}
		return nil
	})
	cl := a.Client()
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, k := range keys {
		if v, err := cl.Get(ctx, k); err != nil || string(v) != "a-0" {
			t.Errorf("after the restart %s = %q, %v; want a-0", k, v, err)
		}
	}
}

// TestCoordDataDirNotAServers: a data directory that holds files but no
// IDENTITY (not a server's) is refused as before, and the coordinator's
// line says the server refused it, not that "the config does not
// describe the committed cluster" (a review: nothing was committed, and
// the config was right).
func TestCoordDataDirNotAServers(t *testing.T) {
	bin := testcluster.Bin(t)
	dir, cfg, data := oneServerWithFile(t, "notes.txt", "mine")
	stderr := coordRefusesDataDir(t, bin, dir, cfg)
	if strings.Contains(stderr, "does not describe") || !strings.Contains(stderr, filepath.Join("ftkv-data", "server_0")) {
		t.Errorf("error %q: want the refused directory named, no word of the config not describing the cluster", stderr)
	}
	if b, err := os.ReadFile(filepath.Join(data, "notes.txt")); err != nil || string(b) != "mine" {
		t.Errorf("the directory's file was changed: %q, %v", b, err)
	}
}

// oneServerWithFile makes a directory with a config of one local server
// (c.txt) whose data directory (returned) holds one file, name, of
// content.
func oneServerWithFile(t *testing.T, name, content string) (dir, cfg, data string) {
	t.Helper()
	dir = t.TempDir()
	cfg = filepath.Join(dir, "c.txt")
	if err := os.WriteFile(cfg, []byte("1\nlocalhost 0 0 0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	data = filepath.Join(dir, "ftkv-data", "server_0")
	if err := os.MkdirAll(data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir, cfg, data
}

// coordRefusesDataDir runs bin/coord with config cfg in dir, whose
// server 0's data directory belongs to another cluster, and asserts that
// it exits 2 naming the refusing server and saying it was not retried.
// It returns the coordinator's standard error.
func coordRefusesDataDir(t *testing.T, bin, dir, cfg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 120*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(bin, "coord"), "-C", cfg, "-l", filepath.Join(dir, "ftkv.log"), "-c", "0", "-s", "0")
	cmd.Dir = dir
	cmd.Stdin = strings.NewReader("")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	begun := time.Now()
	err := cmd.Run()
	took := time.Since(begun)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("coord with another cluster's data dir: %v after %s, want exit 2; stderr %q", err, took.Round(time.Millisecond), stderr.String())
	}
	for _, want := range []string{"server 0", "refused", "not retried"} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("error %q does not say %q", stderr.String(), want)
		}
	}
	t.Logf("exit 2 after %s: %s", took.Round(time.Millisecond), strings.TrimSpace(stderr.String()))
	return stderr.String()
}

// TestCoordConfigMismatchOneLine: a coordinator started (logging to
// stderr, no -l) with a config that does not describe the cluster its
// directory holds (another number of servers) exits 2 after one line on
// stderr. Its log's first lines went to stderr before the mismatch was
// found (a black-box test saw four lines of JSON before the error); they
// are held at start-up and dropped when the start is refused.
func TestCoordConfigMismatchOneLine(t *testing.T) {
	bin := testcluster.Bin(t)
	dir := t.TempDir()
	write := func(name, cfg string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	two, one := write("two.txt", "2\nlocalhost 0 0 0\nlocalhost 0 0 0\n"), write("one.txt", "1\nlocalhost 0 0 0\n")
	run := func(cfg string, stopOnReady bool) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, filepath.Join(bin, "coord"), "-c", "0", "-s", "0", "-C", cfg)
		cmd.Dir = dir
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr syncBuf
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		if stopOnReady {
			for !strings.Contains(stderr.String(), "ready; clients connect to") {
				if ctx.Err() != nil {
					t.Fatalf("coord -C %s not ready in a minute: %s", cfg, stderr.String())
				}
				time.Sleep(20 * time.Millisecond)
			}
		}
		in.Close() // ctrl+d
		err = cmd.Wait()
		if ctx.Err() != nil {
			t.Fatalf("coord -C %s did not exit: %s", cfg, stderr.String())
		}
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode(), stderr.String()
		}
		return 0, stderr.String()
	}
	if code, out := run(two, true); code != 0 {
		t.Fatalf("the two-server cluster: exit %d: %s", code, out)
	}
	code, out := run(one, false)
	if code != 2 {
		t.Fatalf("a config of one server in the two-server cluster's directory: exit %d, want 2: %s", code, out)
	}
	oneErrorLine(t, "coord", out)
	if !strings.Contains(out, "does not describe the committed cluster") {
		t.Errorf("error %q does not say the config does not describe the cluster", out)
	}
}
