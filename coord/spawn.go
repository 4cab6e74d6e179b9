package coord

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"ftkv/internal/tlsconf"
	"ftkv/limits"
)

// SpawnSpec says how to start one server incarnation.
type SpawnSpec struct {
	ID      int
	Servers int // N: the number of servers of the cluster (its data directory says so)
	// ClusterID names the cluster in the server's data directory (its
	// directory of another cluster is refused), unless AdoptCluster: the
	// first incarnation the committed state records for this server (a
	// new cluster, or a coordinator whose state was lost) takes over a
	// directory of another ID.
	ClusterID    string
	AdoptCluster bool
	Incarnation  uint64
	Spec         ServerSpec
	CoordAddr    string // the coordinator's servers address as the server must dial it
	// OtherCoords are the servers addresses of the other coordinators of
	// a group: the server turns to them when this one stops leading.
	OtherCoords []string
	// CoordHost is the coordinator's address for remote servers ("" = the
	// address the ssh connection came from).
	CoordHost string
	// Secret and Users (auth.Table.Encode; "" = none) reach the server on
	// its standard input (SecretsInput), never on its command line or in
	// its environment.
	Secret   string
	Users    string
	Dir      string // working directory (dumps land here)
	LogFile  string // "" = the server's stderr goes to Stderr
	LogLevel string
	// FailureTimeout is the coordinator's -t; the server derives every
	// duration from it with timing.New, as the coordinator does.
	FailureTimeout time.Duration
	// Limits are the client limits set in the cluster file or on the
	// coordinator's command line (zero: the server's default).
	Limits limits.Config
	// Storage is where and how the server logs its writes.
	Storage Storage
	// Sched is the server's -sched ("" = its default).
	Sched string
	// MetricsPort is the server's /metrics port (Options.ServerMetricsPort).
	MetricsPort int
	// TLS names the server's TLS files (paths only; zero: no TLS).
	TLS tlsconf.Files
}

// Process is a running server incarnation.
type Process interface {
	PID() int
	// Kill stops the incarnation for good (SIGKILL).
	Kill() error
	// Done is closed when the process has exited.
	Done() <-chan struct{}
}

// releaser is a Process watched from afar (over ssh, or by polling its
// pid) whose watching can stop without killing it: when another
// incarnation or another leader takes its place. Released is closed then;
// Done never is.
type releaser interface {
	Release()
	Released() <-chan struct{}
}

// release stops watching p if it can be (a child process cannot).
func release(p Process) {
	if r, ok := p.(releaser); ok {
		r.Release()
	}
}

// releaseWatchersLocked stops watching every node's process (c.mu held):
// another leader watches them now, or a restart replaces them.
func (c *Coordinator) releaseWatchersLocked() {
	for _, nd := range c.nodes {
		release(nd.proc)
	}
}

// Spawner starts server processes: locally, or over ssh.
type Spawner interface {
	Spawn(ctx context.Context, s SpawnSpec) (Process, error)
}

// Adopter is a Spawner that can watch an incarnation a previous
// coordinator started (on host dest, as process pid).
type Adopter interface {
	Adopt(dest string, pid, id int, inc uint64) Process
}

// LocalSpawner starts servers as child processes of the coordinator.
type LocalSpawner struct {
	Binary string    // path of bin/server
	Stderr io.Writer // where server output goes when SpawnSpec.LogFile is ""
}

// Spawn starts bin/server for s. The child gets its own process group so a
// ctrl+c on the coordinator's terminal reaches only the coordinator, which
// then shuts the servers down in order (dumping their tables). It inherits
// no descriptor but stdout/stderr (Go marks every other one close-on-exec,
// and gnet >= 2.9.7 does too for its listeners).
func (l *LocalSpawner) Spawn(ctx context.Context, s SpawnSpec) (Process, error) {
	args := serverArgs(s, "127.0.0.1")
	cmd := exec.Command(l.Binary, args...)
	cmd.Dir = s.Dir
	cmd.Env = childEnv()
	cmd.Stdin = strings.NewReader(SecretsInput(s))
	cmd.Stdout = l.Stderr
	cmd.Stderr = l.Stderr
	if s.LogFile != "" {
		// With a log file the server's own output (a panic, say) goes
		// there too, and it holds no descriptor of the coordinator's: a
		// killed coordinator leaves no pipe open behind it.
		f, err := os.OpenFile(s.LogFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		cmd.Stdout, cmd.Stderr = f, f
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", l.Binary, err)
	}
	p := &localProc{cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait()
		p.code = cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	return p, nil
}

// SecretsInput is what a spawned server reads on its standard input
// (bin/server -secrets-stdin): the cluster secret on the first line, then
// the users' lines.
func SecretsInput(s SpawnSpec) string { return s.Secret + "\n" + s.Users }

// secretEnv are variables a server must not inherit: a password the
// operator exported for bin/client, a cluster secret.
var secretEnv = []string{"FTKV_PASSWORD=", "FTKV_SECRET="}

// childEnv is the coordinator's environment without secretEnv.
func childEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		keep := true
		for _, p := range secretEnv {
			if strings.HasPrefix(kv, p) {
				keep = false
			}
		}
		if keep {
			env = append(env, kv)
		}
	}
	return env
}

func serverArgs(s SpawnSpec, bind string) []string {
	args := []string{
		"-id", strconv.Itoa(s.ID),
		"-inc", strconv.FormatUint(s.Incarnation, 10),
		"-bind", bind,
		"-client-port", strconv.Itoa(s.Spec.ClientPort),
		"-peer-port", strconv.Itoa(s.Spec.ServerPort),
		"-ctl-port", strconv.Itoa(s.Spec.CoordPort),
	}
	if s.Servers > 0 {
		args = append(args, "-servers", strconv.Itoa(s.Servers))
	}
	if s.ClusterID != "" {
		args = append(args, "-cluster-id", s.ClusterID)
		if s.AdoptCluster {
			args = append(args, "-cluster-adopt")
		}
	}
	if s.CoordAddr != "" {
		args = append(args, "-coord", strings.Join(append([]string{s.CoordAddr}, s.OtherCoords...), ","))
	}
	if s.LogFile != "" {
		args = append(args, "-log", s.LogFile)
	}
	if s.LogLevel != "" {
		args = append(args, "-log-level", s.LogLevel)
	}
	if s.FailureTimeout > 0 {
		// One duration, as a duration: the server derives the rest with
		// timing.New, as the coordinator does.
		args = append(args, "-failure-timeout", s.FailureTimeout.String())
	}
	if s.MetricsPort != 0 {
		port := s.MetricsPort // negative: none
		if port > 0 {
			port += s.ID
		}
		args = append(args, "-metrics-port", strconv.Itoa(port))
	}
	args = append(args, s.Storage.Args(s.ID)...)
	if s.Sched != "" {
		args = append(args, "-sched", s.Sched)
	}
	args = append(args, s.Limits.Args()...)
	if s.TLS.Enabled() {
		args = append(args, "-tls-ca", s.TLS.CA, "-tls-cert", s.TLS.Cert, "-tls-key", s.TLS.Key)
		if s.TLS.Roleless {
			args = append(args, "-tls-roleless")
		}
	}
	return append(args, "-secrets-stdin")
}

type localProc struct {
	cmd  *exec.Cmd
	done chan struct{}
	code int // the exit status, once done is closed
}

// ExitCode is the process's exit status once Done is closed (-1: killed
// by a signal).
func (p *localProc) ExitCode() int { return p.code }

func (p *localProc) PID() int              { return p.cmd.Process.Pid }
func (p *localProc) Done() <-chan struct{} { return p.done }
func (p *localProc) Kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	return p.cmd.Process.Kill()
}
