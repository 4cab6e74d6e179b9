package coord

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"ftkv/internal/sched"
	"ftkv/limits"
	"ftkv/timing"
)

// Options configure a Coordinator. Zero values mean the documented default.
type Options struct {
	// CheckStore checks the Raft store at path before it is opened (nil:
	// CheckStore in this process; bin/coord runs it in a child process
	// with a time limit: a damaged store can make bbolt loop).
	CheckStore  func(path string) error
	Cluster     *Cluster
	Bind        string // address for both ports (default 127.0.0.1)
	ClientPort  int    // -c; 0 = any free port
	ServersPort int    // -s; 0 = any free port

	// Timeout is the failure timeout (-t): a server silent for this long
	// is considered failed (default timing.DefaultFailureTimeout).
	Timeout time.Duration
	// Timing is every duration the coordinator and its servers wait,
	// retry or give up after. Zero: timing.New(Timeout); when set (a
	// test's preset), its FailureTimeout is the failure timeout.
	Timing timing.Config

	Dir     string  // servers' working directory (default: current)
	Spawner Spawner // local servers; default: LocalSpawner running ServerBin
	// Remote starts servers on ssh hosts; default: an SSHSpawner built from
	// the cluster file's settings overridden by RemoteFlags.
	Remote      Spawner
	RemoteFlags RemoteSettings
	// LimitFlags are client limits from the command line; each one set
	// overrides the cluster file's line. Servers get them as flags.
	LimitFlags limits.Config
	// StorageFlags are -data-dir, -fsync, -fsync-secondary and
	// -snapshot-bytes; each one set overrides the cluster file's line.
	StorageFlags Storage
	// SchedFlag is -sched: the servers' scheduling policy, overriding the
	// cluster file's sched line ("" = the file's, else the server's
	// default).
	SchedFlag   string
	ServerBin   string // default: "server" beside the running executable
	ServerLog   string // servers' log file ("" = the coordinator's stderr)
	ServerLevel string // servers' log level (default "info")
	// MetricsAddr serves Prometheus /metrics and the service-discovery
	// document /sd (-metrics; "" = off). ServerMetricsPort is each
	// server's /metrics port on its client host: 0 any free port (the
	// default), negative none, P > 0 port P + the server's id.
	MetricsAddr       string
	ServerMetricsPort int

	Logger zerolog.Logger

	// ID is this coordinator's index among the config's coordinator lines
	// (-id); ignored without such lines.
	ID int
	// InsecureAuth (-insecure-auth) allows user lines without TLS when
	// every process listens on loopback (development): passwords then
	// cross only the machine's loopback in clear.
	InsecureAuth bool

	// DataDir holds this coordinator's Raft log and snapshots (-d);
	// default DataDir(Dir, ID): ftkv-coord (single) or ftkv-coord-<id>.
	DataDir string

	// TLSFlags are -tls-ca, -tls-cert, -tls-key, -tls-coord-cert and
	// -tls-coord-key; each one set overrides the cluster file's line.
	TLSFlags TLSFiles
	tls      *coordTLS // loaded by New (nil: no TLS)

	// GroupSecretFile is -group-secret-file (overrides the cluster file's
	// group_secret_file line): the secret every coordinator of a group
	// proves on its Raft connections when there is no TLS (raftauth.go).
	GroupSecretFile string
	groupKey        []byte // loaded by New (nil: none)
}

// Validate reports the first bad option, in the words of the
// coordinator's flags (the error is printed after "coord: "). The cluster
// is New's to check: a command validates its flags before reading the
// cluster file.
func (o *Options) Validate() error {
	for _, p := range []struct {
		name string
		v    int
	}{{"-c", o.ClientPort}, {"-s", o.ServersPort}} {
		if p.v < 0 || p.v > 65535 {
			return fmt.Errorf("%s %d: not a port number 0-65535", p.name, p.v)
		}
	}
	if t := o.RemoteFlags.ConnectTimeout; t < 0 || t > 600 {
		return fmt.Errorf("-ssh-connect-timeout %d: expected seconds from 1 to 600", t)
	}
	for _, f := range []struct{ name, path string }{{"-ssh-identity", o.RemoteFlags.Identity}, {"-ssh-known-hosts", o.RemoteFlags.KnownHosts}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			return fmt.Errorf("%s %s: %v", f.name, f.path, errors.Unwrap(err))
		}
	}
	if o.Timeout != 0 && (o.Timeout < timing.MinFailureTimeout || o.Timeout > timing.MaxFailureTimeout) {
		return fmt.Errorf("-t %s: %w", o.Timeout, errTimeoutRange)
	}
	if o.MetricsAddr != "" {
		if _, p, err := net.SplitHostPort(o.MetricsAddr); err != nil {
			return fmt.Errorf("-metrics %q: expected host:port (port 0: any free port)", o.MetricsAddr)
		} else if v, err := strconv.Atoi(p); err != nil || v < 0 || v > 65535 {
			return fmt.Errorf("-metrics %q: not a port number 0-65535", o.MetricsAddr)
		}
	}
	if o.ServerMetricsPort > 65535 {
		return fmt.Errorf("-server-metrics-port %d: not a port number", o.ServerMetricsPort)
	}
	if err := o.LimitFlags.Validate(); err != nil {
		return err
	}
	if err := o.StorageFlags.Validate(); err != nil {
		return err
	}
	if o.SchedFlag != "" {
		if err := sched.Check(o.SchedFlag); err != nil {
			return fmt.Errorf("-sched %w", err)
		}
	}
	if o.Timing != (timing.Config{}) {
		if err := o.Timing.Validate(); err != nil {
			return fmt.Errorf("timing: %w", err)
		}
	}
	return nil
}

var errTimeoutRange = fmt.Errorf("must be between %s and %s", timing.MinFailureTimeout, "1h")

// ParseTimeout reads the -t flag: a Go duration ("500ms") or a number of
// seconds ("0.5"), from 10ms to 1h.
func ParseTimeout(s string) (time.Duration, error) {
	var d time.Duration
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		d = time.Duration(f * float64(time.Second))
	} else if d, err = time.ParseDuration(strings.TrimSpace(s)); err != nil {
		return 0, errors.New("expected a duration such as 500ms or a number of seconds")
	}
	if d < timing.MinFailureTimeout || d > timing.MaxFailureTimeout {
		return 0, errTimeoutRange
	}
	return d, nil
}

// withDefaults fills the zero options New documents.
func (o Options) withDefaults() (Options, error) {
	if o.Bind == "" {
		// Servers on other hosts must reach the servers port, and their
		// clients the client port.
		o.Bind = "127.0.0.1"
		if o.Cluster.HasRemote() {
			o.Bind = "0.0.0.0"
		}
		// One of a group listens on its line's host: the address the
		// other coordinators, the servers and the clients are told.
		if k := len(o.Cluster.Coordinators); k > 0 && o.ID >= 0 && o.ID < k {
			if h := o.Cluster.Coordinators[o.ID].Host; net.ParseIP(h) != nil {
				o.Bind = h
			} else {
				o.Bind = "0.0.0.0"
			}
		}
	}
	if o.Timing == (timing.Config{}) {
		o.Timing = timing.New(o.Timeout)
	}
	o.Timeout = o.Timing.FailureTimeout
	if o.Dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return o, err
		}
		o.Dir = wd
	} else if abs, err := filepath.Abs(o.Dir); err == nil {
		o.Dir = abs // (committed for other coordinators: Coordinator.home)
	}
	if o.DataDir == "" {
		id := -1
		if len(o.Cluster.Coordinators) > 0 {
			id = o.ID
		}
		o.DataDir = DataDir(o.Dir, id)
	}
	if o.ServerLevel == "" {
		o.ServerLevel = "info"
	}
	if o.Spawner == nil || (o.Remote == nil && o.Cluster.HasRemote()) {
		bin := o.ServerBin
		if bin == "" {
			exe, err := os.Executable()
			if err != nil {
				return o, fmt.Errorf("locate server binary: %w", err)
			}
			bin = filepath.Join(filepath.Dir(exe), "server")
		}
		if abs, err := filepath.Abs(bin); err == nil {
			bin = abs
		}
		if _, err := os.Stat(bin); err != nil {
			return o, fmt.Errorf("server binary %s: %w", bin, unwrapPathErr(err))
		}
		if o.Spawner == nil {
			o.Spawner = &LocalSpawner{Binary: bin, Stderr: os.Stderr}
		}
		if o.Remote == nil && o.Cluster.HasRemote() {
			o.Remote = newSSHSpawner(o.Cluster.Remote, o.RemoteFlags, bin, o.Dir, o.Timing, o.Logger)
		}
	}
	return o, nil
}

// Log is the coordinator's logger as its command sets it up.
type Log struct {
	zerolog.Logger
	// ServerLevel is the servers' log level: the coordinator's, but at
	// least warn when both log to a terminal.
	ServerLevel string
	// Started ends the start-up's hold on lines to stderr (held lines
	// are written); Refused drops them: the start was refused, and the
	// one line that says why is all a user should read (a config that
	// does not describe the committed cluster was found only after a
	// few lines of log). Both are no-ops with a log file.
	Started, Refused func()
}

// startHold bounds how long lines to stderr are held at start-up.
// timing: exception — what a terminal's user waits for, not the cluster's timing.
const startHold = 5 * time.Second

// heldWriter holds what is written (up to heldMax bytes) until released
// (then writes it and passes the rest through) or dropped. Each write is
// one event, written on its own (zerolog's console writer parses each).
type heldWriter struct {
	mu   sync.Mutex
	out  io.Writer
	buf  [][]byte
	size int
	held bool
}

const heldMax = 1 << 20

func (h *heldWriter) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held && h.size+len(p) <= heldMax {
		h.buf = append(h.buf, append([]byte(nil), p...))
		h.size += len(p)
		return len(p), nil
	}
	h.flushLocked()
	return h.out.Write(p)
}

func (h *heldWriter) flushLocked() {
	for _, b := range h.buf {
		_, _ = h.out.Write(b)
	}
	h.buf, h.size, h.held = nil, 0, false
}

func (h *heldWriter) release(keep bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !keep {
		h.buf = nil
	}
	h.flushLocked()
}

// OpenLog builds the coordinator's logger: JSON lines appended to path,
// or to stderr when path is ""; on a terminal, human-readable lines
// (zerolog's console writer) instead of JSON.
func OpenLog(path string, lvl zerolog.Level, stderr *os.File) (Log, error) {
	l := Log{ServerLevel: lvl.String(), Started: func() {}, Refused: func() {}}
	var out io.Writer = stderr
	if path != "" {
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return l, fmt.Errorf("-l %s: %v", path, err)
		}
		out = f // (closed by the exit: cmd/coord)
	} else {
		if term.IsTerminal(int(stderr.Fd())) {
			out = zerolog.ConsoleWriter{Out: stderr, TimeFormat: "15:04:05.000"}
		}
		if lvl < zerolog.WarnLevel {
			l.ServerLevel = "warn" // keep a terminal readable
		}
		h := &heldWriter{out: out, held: true}
		t := time.AfterFunc(startHold, func() { h.release(true) })
		l.Started = func() { t.Stop(); h.release(true) }
		l.Refused = func() { t.Stop(); h.release(false) }
		out = h
	}
	l.Logger = zerolog.New(out).Level(lvl).With().Timestamp().Str("role", "coord").Logger()
	return l, nil
}

// millis is a duration as a log field: float milliseconds (the field's
// name ends in _ms).
func millis(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
