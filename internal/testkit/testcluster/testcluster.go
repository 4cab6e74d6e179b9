// Package testcluster starts real ftkv clusters for tests: it builds the
// binaries once, runs bin/coord as a separate process on random loopback
// ports with its stdin on a pipe (or a group of three or five, see
// Options.Coordinators), and offers the operations a test needs (shutdown
// by closing stdin, kill -9 of a server or a coordinator, polling helpers).
package testcluster

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"ftkv/client"
)

// A set of the product's binaries, built once per test binary.
type binSet struct {
	once sync.Once
	dir  string
	err  error
}

var raceBins, plainBins binSet

// Bin builds bin/coord, bin/server, bin/client, bin/bench and bin/gateway into a
// temporary directory (once per test binary) and returns that directory.
// Under the race detector they are built with it too.
func Bin(t testing.TB) string { return raceBins.get(t, raceEnabled) }

// PlainBin is Bin without the race detector, whatever the test runs with:
// for measurements of the servers' memory, which the race detector
// multiplies.
func PlainBin(t testing.TB) string { return plainBins.get(t, false) }

func (b *binSet) get(t testing.TB, race bool) string {
	t.Helper()
	b.once.Do(func() {
		_, file, _, _ := runtime.Caller(0)
		root := filepath.Join(filepath.Dir(file), "..", "..", "..")
		dir, err := os.MkdirTemp("", "ftkv-bin-")
		if err != nil {
			b.err = err
			return
		}
		b.dir = dir
		for _, name := range []string{"coord", "server", "client", "bench", "gateway"} {
			args := []string{"build", "-o", filepath.Join(dir, name)}
			if race {
				args = append(args, "-race")
			}
			cmd := exec.Command("go", append(args, "./cmd/"+name)...)
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				b.err = fmt.Errorf("go build %s: %v\n%s", name, err, out)
				return
			}
		}
		if Secure() {
			m, err := secureInit()
			if err == nil {
				b.dir, err = m.secureBin(dir)
			}
			b.err = err
		}
	})
	if b.err != nil {
		t.Fatal(b.err)
	}
	return b.dir
}

// Options for Start.
type Options struct {
	N       int      // servers (default 3), all on localhost with ports 0
	Config  string   // a cluster file's contents; overrides N
	Args    []string // extra coord flags
	Timeout string   // -t (default "500ms")
	// Wrap prefixes the coordinator's command line (e.g. "ip netns exec
	// NS" to run it on a namespace host); the process keeps its pid.
	Wrap []string
	// AddrHost replaces the host of the coordinator's client address
	// (a coordinator bound to 0.0.0.0 in another namespace).
	AddrHost string
	// Plain runs binaries built without the race detector even when the
	// test runs with it (PlainBin): for memory budgets, which must hold
	// for the binaries users run.
	Plain bool
	// Coordinators: 0 or 1 runs one coordinator (-c/-s, as always); 3 or
	// 5 run a Raft group: the config gets one `coordinator` line each on
	// free loopback ports, and coordinator k runs as `bin/coord -C cfg
	// -id k -d Dir/ftkv-coord-k`. Wrap and AddrHost apply to one
	// coordinator only (a group has CoordHosts and CoordWraps).
	Coordinators int
	// CoordHosts, for a group, is the host of each coordinator's
	// `coordinator` line (default 127.0.0.1): the Raft address and the
	// address clients and servers reach it at.
	CoordHosts []string
	// ClientOptions are given to every Go client the harness dials (its
	// status client, Client's), e.g. an admin's client.WithAuth for a
	// cluster with users (one coordinator only; in secure mode, see
	// Secure, a group's clients get them too, after the harness's own).
	ClientOptions []client.Option
	// CoordWraps, for a group, prefixes coordinator k's command line
	// (e.g. "ip netns exec NS" to run it on the namespace host that has
	// CoordHosts[k]); the process keeps its pid.
	CoordWraps [][]string
	// CoordWorkDirs, for a group, runs coordinator k in a working
	// directory of its own (Dir/wd-k) instead of Dir.
	CoordWorkDirs bool
}

// Cluster is a running coordinator process (or group of them) and its
// servers.
type Cluster struct {
	t          testing.TB
	Dir        string // working directory: dumps and logs land here
	Bin        string
	ConfigPath string // the cluster file every coordinator reads
	race       bool   // the binaries report data races (built with -race)
	// Addr is the coordinator's client address; for a group the
	// comma-separated list of every coordinator's (ClientAddrs).
	Addr    string
	main    *proc   // the single coordinator (nil for a group)
	group   []*proc // a group's coordinators, by index (nil for one)
	members []groupMember
	args    []string
	wrap    []string
	addrHst string
	known   []int // server pids of earlier coordinator processes
	stderr  *lockedBuf

	procMu sync.Mutex
	pids   []int // every coordinator process this cluster started

	statusMu   sync.Mutex
	statusCl   *client.Client  // TryStatus's client, dialled on first use
	clientOpts []client.Option // Options.ClientOptions
}

// proc is one coordinator process: its command line, its output and its
// exit.
type proc struct {
	cmd     *exec.Cmd
	wrap    []string // what prefixes the command line
	args    []string
	stdin   io.WriteCloser
	out     *lockedBuf // stderr and stdout
	exited  chan struct{}
	exitErr error
}

type lockedBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// DefaultTimeout is the coordinator's failure timeout (-t) in test
// clusters: the product default, except under the race detector, which
// slows everything ~5x; on a 2-core machine heartbeats then come late
// enough to look like failures (kill -9 is detected at once either way).
var DefaultTimeout = func() time.Duration {
	if raceEnabled {
		return 1500 * time.Millisecond
	}
	return 500 * time.Millisecond
}()

var readyRE = regexp.MustCompile(`clients connect to (\S+)`)

// Start runs a cluster and waits until its coordinator serves clients. The
// cluster is shut down (or killed) when the test ends.
func Start(t testing.TB, o Options) *Cluster {
	t.Helper()
	bin, race := Bin(t), raceEnabled
	if o.Plain {
		bin, race = PlainBin(t), false
	}
	if o.Coordinators > 1 {
		return startGroup(t, o, bin, race)
	}
	dir := t.TempDir()
	cfg := o.Config
	if cfg == "" {
		n := o.N
		if n == 0 {
			n = 3
		}
		cfg = fmt.Sprintf("%d\n", n)
		for i := 0; i < n; i++ {
			cfg += "localhost 0 0 0\n"
		}
	}
	if Secure() {
		m := secure(t)
		cfg = m.secureConfig(cfg)
		o.ClientOptions = m.clientOptions(o.ClientOptions)
	}
	cfgPath := filepath.Join(dir, "cluster.txt")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	to := o.Timeout
	if to == "" {
		to = DefaultTimeout.String()
	}
	// Fixed ports outside the ephemeral range (see freePorts): a
	// restarted coordinator takes them again.
	ports := freePorts(t, 2)
	args := append([]string{"-c", strconv.Itoa(ports[0]), "-s", strconv.Itoa(ports[1]), "-C", cfgPath, "-t", to, "-l", filepath.Join(dir, "ftkv.log")}, o.Args...)
	c := &Cluster{t: t, Dir: dir, Bin: bin, ConfigPath: cfgPath, race: race, stderr: &lockedBuf{}, args: args, wrap: o.Wrap, addrHst: o.AddrHost,
		clientOpts: o.ClientOptions}
	c.launch(t, args)
	t.Cleanup(func() {
		c.closeStatusClient()
		select {
		case <-c.main.exited:
		default:
			_ = c.Shutdown(5 * time.Second)
		}
		// Servers of a coordinator the test killed (and did not restart)
		// outlive it: kill them by pid, checking they are ours.
		for _, pid := range c.known {
			if cmd, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(cmd), c.Bin) {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		c.checkRaces(t)
		if t.Failed() {
			t.Logf("coordinator stderr:\n%s", c.stderr.String())
			t.Logf("log (tail):\n%s", tail(c.Log(), 60))
		}
		c.keepLog(t)
	})
	return c
}

func (c *Cluster) closeStatusClient() {
	c.statusMu.Lock()
	if c.statusCl != nil {
		c.statusCl.Close()
		c.statusCl = nil
	}
	c.statusMu.Unlock()
}

// checkRaces fails the test if a process of the cluster reported a data race.
func (c *Cluster) checkRaces(t testing.TB) {
	reports, _ := filepath.Glob(filepath.Join(c.Dir, "race.*"))
	for _, r := range reports {
		b, _ := os.ReadFile(r)
		t.Errorf("data race reported by a cluster process (%s):\n%s", filepath.Base(r), tail(string(b), 80))
	}
}

// launch starts the coordinator process with args and waits until it
// serves.
func (c *Cluster) launch(t testing.TB, args []string) {
	t.Helper()
	p := c.spawn(t, c.wrap, args, c.stderr)
	c.main = p
	pr, pw := io.Pipe()
	p.cmd.Stderr = io.MultiWriter(c.stderr, pw)
	go func() {
		<-p.exited
		pw.Close()
	}()
	c.startProc(t, p)
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := readyRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
				break
			}
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	select {
	case c.Addr = <-addr:
		if c.addrHst != "" {
			_, p, _ := net.SplitHostPort(c.Addr)
			c.Addr = net.JoinHostPort(c.addrHst, p)
		}
	case <-p.exited:
		t.Fatalf("coord exited during start: %v\nstderr:\n%s\nlog:\n%s", p.exitErr, c.stderr.String(), c.Log())
	case <-time.After(40 * time.Second): // (a restart may wait out a server's tries: 15 x RespawnMin)
		_ = p.cmd.Process.Kill()
		t.Fatalf("coord not ready after 40s\nstderr:\n%s\nlog:\n%s", c.stderr.String(), c.Log())
	}
}

// spawn prepares a coordinator process with args, prefixed by wrap, its
// output going to out (stdout, and stderr unless the caller replaces it).
func (c *Cluster) spawn(t testing.TB, wrap, args []string, out *lockedBuf) *proc {
	t.Helper()
	argv := append(append([]string(nil), wrap...), filepath.Join(c.Bin, "coord"))
	argv = append(argv, args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = c.Dir
	if c.race {
		// A race inside the coordinator or a server (they inherit the
		// environment) is reported to files the test checks at the end:
		// on their stderr it would go unnoticed.
		cmd.Env = append(os.Environ(), "GORACE=halt_on_error=0 log_path="+filepath.Join(c.Dir, "race"))
	}
	cmd.WaitDelay = 2 * time.Second
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = out
	cmd.Stdout = out
	return &proc{cmd: cmd, wrap: wrap, args: args, stdin: stdin, out: out, exited: make(chan struct{})}
}

// startProc starts p and reaps it when it exits.
func (c *Cluster) startProc(t testing.TB, p *proc) {
	t.Helper()
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c.procMu.Lock()
	c.pids = append(c.pids, p.cmd.Process.Pid)
	c.procMu.Unlock()
	go func() {
		p.exitErr = p.cmd.Wait()
		close(p.exited)
	}()
}

var serversPortRE = regexp.MustCompile(`"addr":"([^"]+)","time":"[^"]*","message":"servers port listening"`)

// KillCoord kills the coordinator with SIGKILL and waits until it is gone;
// the servers keep running. It remembers their pids as the cluster's own.
func (c *Cluster) KillCoord(t testing.TB) {
	t.Helper()
	c.single(t)
	c.rememberServers()
	_ = c.main.cmd.Process.Signal(syscall.SIGKILL)
	<-c.main.exited
}

// rememberServers notes the servers' pids from the status as the
// cluster's own, for Owns and the final cleanup.
func (c *Cluster) rememberServers() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if st, err := c.TryStatus(ctx); err == nil {
		c.procMu.Lock()
		for _, s := range st.Servers {
			if s.PID > 0 && !slices.Contains(c.known, s.PID) {
				c.known = append(c.known, s.PID)
			}
		}
		c.procMu.Unlock()
	}
}

// single fails the test when c is a group (the helper is for one
// coordinator; a group has the …K variants).
func (c *Cluster) single(t testing.TB) {
	t.Helper()
	if c.main == nil {
		t.Fatal("testcluster: a single-coordinator helper used on a group of coordinators (use the ...K variants)")
	}
}

// RestartCoord starts the coordinator again with the same flags and the
// same ports as the first one (so clients and servers find it again).
func (c *Cluster) RestartCoord(t testing.TB) { t.Helper(); c.RestartCoordWith(t) }

// RestartCoordWith is RestartCoord with flags added after the first
// one's (a flag given twice: the later wins).
func (c *Cluster) RestartCoordWith(t testing.TB, extra ...string) {
	t.Helper()
	c.single(t)
	args := append(append([]string(nil), c.args...), extra...)
	_, port, _ := net.SplitHostPort(c.Addr)
	m := serversPortRE.FindAllStringSubmatch(c.Log(), -1)
	if len(m) == 0 {
		t.Fatal("servers port not found in the log")
	}
	_, sport, _ := net.SplitHostPort(m[len(m)-1][1])
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "-c":
			args[i+1] = port
		case "-s":
			args[i+1] = sport
		}
	}
	c.launch(t, args)
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// keepLog copies the whole log (a group's: every coordinator's) to the
// directory FTKV_KEEP_LOG names, if set (the failure output shows only
// its tail).
func (c *Cluster) keepLog(t testing.TB) {
	if d := os.Getenv("FTKV_KEEP_LOG"); d != "" {
		_ = os.WriteFile(filepath.Join(d, strings.ReplaceAll(t.Name(), "/", "_")+fmt.Sprintf(".%d.log", time.Now().UnixNano())), []byte(c.Log()), 0o644)
	}
}

// Log returns the coordinator's and servers' log file (for a group each
// coordinator's in turn).
func (c *Cluster) Log() string {
	if c.group != nil {
		var b strings.Builder
		for k := range c.group {
			fmt.Fprintf(&b, "==== coordinator %d log ====\n", k)
			raw, _ := os.ReadFile(c.groupLog(k))
			b.Write(raw)
		}
		return b.String()
	}
	b, _ := os.ReadFile(filepath.Join(c.Dir, "ftkv.log"))
	return string(b)
}

// Stderr returns what the coordinator wrote to stderr and stdout (for a
// group each coordinator's in turn).
func (c *Cluster) Stderr() string {
	if c.group != nil {
		var b strings.Builder
		for k, p := range c.group {
			fmt.Fprintf(&b, "==== coordinator %d stderr ====\n%s", k, p.out.String())
		}
		return b.String()
	}
	return c.stderr.String()
}

// Client dials the cluster with the Go client.
func (c *Cluster) Client(opts ...client.Option) *client.Client {
	c.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cl, err := client.Dial(ctx, c.Addr, append(append([]client.Option(nil), c.clientOpts...), opts...)...)
	if err != nil {
		c.t.Fatalf("dial %s: %v", c.Addr, err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// Shutdown closes the coordinator's stdin (ctrl+d) and waits for it to exit
// within d; it returns the exit error (nil for status 0). For a group it
// stops every coordinator that way (each stops only itself) and then
// kills the servers.
func (c *Cluster) Shutdown(d time.Duration) error {
	if c.group != nil {
		return c.shutdownGroup(d)
	}
	return c.main.stop(d)
}

// stop closes p's stdin and waits for it to exit within d.
func (p *proc) stop(d time.Duration) error {
	_ = p.stdin.Close()
	select {
	case <-p.exited:
		return p.exitErr
	case <-time.After(d):
		_ = p.cmd.Process.Kill()
		<-p.exited
		return fmt.Errorf("coord did not exit within %s after end of stdin", d)
	}
}

// Signal sends sig to the coordinator process.
func (c *Cluster) Signal(sig syscall.Signal) error { return c.first().cmd.Process.Signal(sig) }

// Exited is closed when the coordinator process has exited (for a group:
// coordinator 0).
func (c *Cluster) Exited() <-chan struct{} { return c.first().exited }

// ExitErr is the coordinator's exit error once Exited is closed.
func (c *Cluster) ExitErr() error { return c.first().exitErr }

// CoordPID is the coordinator's process id (for a group: coordinator 0's).
func (c *Cluster) CoordPID() int { return c.first().cmd.Process.Pid }

// first is the single coordinator, or a group's coordinator 0.
func (c *Cluster) first() *proc {
	if c.main != nil {
		return c.main
	}
	return c.group[0]
}

// Eventually polls cond every 20ms until it holds or d passes.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
