package coord

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"ftkv/timing"
)

// SSHSpawner starts servers on other hosts with the system ssh client. The
// server is detached there (its own session, output to a log file in the
// remote directory), so the ssh command returns once it printed the pid.
// The cluster secret and the users travel on ssh's stdin and reach the
// server on its stdin through a pipe from the shell's builtin printf:
// never on a command line, in an environment or in a file.
//
// ssh runs with BatchMode (never a password prompt), a connect timeout and
// keep-alives; StrictHostKeyChecking is left to ssh's configuration unless
// a known-hosts file is given, in which case only that file is trusted.
type SSHSpawner struct {
	SSH            string        // ssh client (default "ssh")
	Identity       string        // -i file ("" = ssh's default keys)
	KnownHosts     string        // UserKnownHostsFile ("" = ssh's default)
	ConnectTimeout time.Duration // default: Timing.SSHConnect
	Binary         string        // bin/server on the remote host
	Dir            string        // working directory on the remote host
	// CopyFrom, when set, is a local bin/server that is copied to Binary
	// on the host before starting it (when the host's copy differs).
	CopyFrom string
	Log      zerolog.Logger
	// Timing gives the ssh client's and the watchers' durations
	// (SSHConnect, SSHWaitDelay, SSHWatch, KillWait); zero: timing.Default().
	Timing timing.Config

	copyMu sync.Mutex
	copied map[string]string // destination -> sha256 copied there
}

// Options are the ssh flags every command of the spawner uses.
func (s *SSHSpawner) options(port string) []string {
	to := s.timeout()
	secs := int((to + time.Second - 1) / time.Second) // ssh takes whole seconds
	args := []string{
		"-o", "BatchMode=yes",
		"-o", "ConnectTimeout=" + strconv.Itoa(secs),
		// timing: exception — ssh's keep-alive (2 s x 3) is its own,
		// fixed setting: a session is dropped after about 6 s of silence
		// whatever the failure timeout (which heartbeats watch instead).
		"-o", "ServerAliveInterval=2",
		"-o", "ServerAliveCountMax=3",
		"-o", "LogLevel=ERROR",
		"-T",
	}
	if s.KnownHosts != "" {
		args = append(args, "-o", "UserKnownHostsFile="+s.KnownHosts, "-o", "StrictHostKeyChecking=yes",
			"-o", "GlobalKnownHostsFile=/dev/null")
	}
	if s.Identity != "" {
		args = append(args, "-i", s.Identity, "-o", "IdentitiesOnly=yes")
	}
	if port != "" {
		args = append(args, "-p", port)
	}
	return args
}

func (s *SSHSpawner) ssh() string {
	if s.SSH == "" {
		return "ssh"
	}
	return s.SSH
}

// run executes script on the host behind dest with stdin as its input and
// returns its standard output. Errors carry ssh's own one-line reason.
func (s *SSHSpawner) run(ctx context.Context, dest, script string, stdin io.Reader) (string, error) {
	d, port, _, err := ParseDestination(dest)
	if err != nil {
		return "", err
	}
	args := append(s.options(port), "--", d, script)
	cmd := exec.CommandContext(ctx, s.ssh(), args...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = s.timing().SSHWaitDelay
	// A coordinator killed with -9 leaves no ssh client behind.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	err = cmd.Run()
	if err != nil {
		reason := lastLine(errb.String())
		var ee *exec.ExitError
		switch {
		case ctx.Err() != nil:
			reason = "timed out"
		case errors.As(err, &ee) && ee.ExitCode() == 255:
			if reason == "" {
				reason = "ssh failed"
			}
			return out.String(), fmt.Errorf("ssh %s: %s", dest, reason)
		case reason == "":
			reason = err.Error()
		}
		return out.String(), fmt.Errorf("on %s: %s", dest, reason)
	}
	return out.String(), nil
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if l := strings.TrimSpace(lines[i]); l != "" {
			return l
		}
	}
	return ""
}

// shq quotes s for a POSIX shell.
func shq(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Spawn starts bin/server for sp on its host and returns a handle that
// kills it there by pid.
func (s *SSHSpawner) Spawn(ctx context.Context, sp SpawnSpec) (Process, error) {
	dest := sp.Spec.Host
	_, _, host, err := ParseDestination(dest)
	if err != nil {
		return nil, err
	}
	if s.CopyFrom != "" {
		if err := s.copyBinary(ctx, dest); err != nil {
			return nil, err
		}
		if sp.TLS.Enabled() {
			if sp.TLS, err = s.copyTLS(ctx, dest, sp.TLS); err != nil {
				return nil, err
			}
		}
	}
	_, coordPort, err := splitPort(sp.CoordAddr)
	if err != nil {
		return nil, err
	}
	coordHost := sp.CoordHost // "" = the address this ssh connection came from
	sp.LogFile = fmt.Sprintf("server_%d.log", sp.ID)
	sp.CoordAddr = "" // filled in by the script below
	others := ""
	for _, a := range sp.OtherCoords {
		others += "," + a
	}
	sp.OtherCoords = nil
	args := serverArgs(sp, "0.0.0.0")
	args = append(args, "-advertise", host)
	var q []string
	for _, a := range args {
		q = append(q, shq(a))
	}
	// -coord's value is filled in by the shell: ssh tells the remote side
	// which address it came from, and that is where the coordinator is.
	script := strings.Join([]string{
		"set -e",
		"S=$(cat)",
		"mkdir -p " + shq(s.Dir),
		"cd " + shq(s.Dir),
		"if [ ! -x " + shq(s.Binary) + " ]; then echo \"ftkv: server binary \"" + shq(s.Binary) + "\" is missing or not executable on this host\" >&2; exit 127; fi",
		"C=" + shq(coordHost),
		`if [ -z "$C" ]; then C=${SSH_CLIENT%% *}; fi`,
		`case $C in *:*) C="[$C]";; esac`,
		`printf '%s\n' "$S" | setsid ` + shq(s.Binary) + " " + strings.Join(q, " ") + ` -coord "$C:` + coordPort + others + `" >>` + shq(sp.LogFile) + " 2>&1 &",
		// The pid is told once it runs the server's command line (setsid
		// has exec'd; its arguments are the server's): a Kill in the
		// instant before would find no marker (sshProc.alive), take the
		// process for gone, and the server would start anyway
		// (TestRemoteStartKillableBeforeExec). The marker is built from
		// variables: the script's own text (the command line of the
		// shell, and of its child before the exec) must not hold it. An
		// empty command line: it exited already (a zombie). Past the wait
		// the child is killed and the start fails. timing: exception —
		// "sleep 0.01" (up to 200 times; a sleep without fractions: 1 s,
		// twice) is a local wait on the host for an exec.
		fmt.Sprintf(`I=%d; N=%d; p=$!; i=0`, sp.ID, sp.Incarnation),
		`while :; do c=$(tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null) || break`,
		`case $c in ''|*" -id $I -inc $N "*) break;; esac`,
		`i=$((i+1)); if [ $i -gt 200 ]; then kill -9 $p 2>/dev/null || :; echo "ftkv: the server process did not start within 2 s" >&2; exit 1; fi`,
		`sleep 0.01 2>/dev/null || { sleep 1; i=$((i+100)); }; done`,
		`echo "ftkv-pid $p"`,
	}, "\n")
	out, err := s.run(ctx, dest, script, strings.NewReader(SecretsInput(sp)))
	if err != nil {
		return nil, err
	}
	pid := 0
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "ftkv-pid "); ok {
			pid, _ = strconv.Atoi(v)
		}
	}
	if pid <= 0 {
		return nil, fmt.Errorf("on %s: no pid reported by the start script (got %q)", dest, lastLine(out))
	}
	return s.Adopt(dest, pid, sp.ID, sp.Incarnation), nil
}

func splitPort(addr string) (string, string, error) {
	i := strings.LastIndexByte(addr, ':')
	if i < 0 {
		return "", "", fmt.Errorf("address %q has no port", addr)
	}
	return addr[:i], addr[i+1:], nil
}

// copyBinary puts CopyFrom at Binary on the host unless the host's copy is
// already identical (compared by sha256).
func (s *SSHSpawner) copyBinary(ctx context.Context, dest string) error {
	b, err := os.ReadFile(s.CopyFrom)
	if err != nil {
		return fmt.Errorf("copy_bin: %w", unwrapPathErr(err))
	}
	sum := sha256.Sum256(b)
	want := hex.EncodeToString(sum[:])
	s.copyMu.Lock()
	defer s.copyMu.Unlock()
	if s.copied[dest] == want {
		return nil
	}
	bin := shq(s.Binary)
	script := "set -e\n" +
		"if [ -x " + bin + " ] && [ \"$(sha256sum < " + bin + " | cut -d' ' -f1)\" = " + want + " ]; then cat >/dev/null; echo same; exit 0; fi\n" +
		"mkdir -p " + shq(path.Dir(s.Binary)) + "\n" +
		"t=" + shq(s.Binary) + ".tmp.$$\n" +
		"cat > \"$t\"\n" +
		"chmod 755 \"$t\"\n" +
		"mv -f \"$t\" " + bin + "\n" +
		"echo copied"
	out, err := s.run(ctx, dest, script, bytes.NewReader(b))
	if err != nil {
		return fmt.Errorf("copy server binary: %w", err)
	}
	if s.copied == nil {
		s.copied = map[string]string{}
	}
	s.copied[dest] = want
	s.Log.Info().Str("host", dest).Str("path", s.Binary).Str("result", strings.TrimSpace(out)).Msg("server binary copied")
	return nil
}

// Adopt returns a handle on an incarnation already running on dest.
func (s *SSHSpawner) Adopt(dest string, pid, id int, inc uint64) Process {
	p := &sshProc{s: s, dest: dest, pid: pid, marker: fmt.Sprintf(" -id %d -inc %d ", id, inc),
		logFile: fmt.Sprintf("server_%d.log", id), refused: refusedLine(id, inc, pid),
		done: make(chan struct{}), stop: make(chan struct{})}
	p.code.Store(-1)
	go p.watch()
	return p
}

// sshProc is a server on another host. Its exit is known only when the
// host says so (a watcher ssh session that polls the pid there); a host
// that cannot be reached tells nothing, and the coordinator then goes by
// heartbeats alone.
type sshProc struct {
	s      *SSHSpawner
	dest   string
	pid    int
	marker string // in the process's command line: guards against pid reuse
	// logFile is the server's log on the host (in Dir); its last lines
	// hold refused when the server refused its data directory.
	logFile, refused string
	code             atomic.Int32 // exit status once known: serverRefused, else -1
	done             chan struct{}
	stop             chan struct{}
	once, stopOnce   sync.Once

	killMu   sync.Mutex
	killErr  error     // the last kill's failure
	killTime time.Time // when it failed
}

func (p *sshProc) PID() int { return p.pid }

// ExitCode is serverRefused once Done is closed if the server refused its
// data directory (its log says so), else -1: over ssh no other status is
// known.
func (p *sshProc) ExitCode() int         { return int(p.code.Load()) }
func (p *sshProc) Done() <-chan struct{} { return p.done }

// alive is a shell function that holds while our incarnation runs: the
// pid exists, is not a zombie and (checked once, "alive check") runs this
// incarnation's command line, so a reused pid is never mistaken for it.
func (p *sshProc) alive() string {
	pid := strconv.Itoa(p.pid)
	return `alive() { read -r s 2>/dev/null < /proc/` + pid + `/stat || return 1; s=${s##*) }; [ "${s%% *}" != Z ] || return 1; ` +
		`[ "$1" != check ] || tr '\0' ' ' < /proc/` + pid + `/cmdline 2>/dev/null | grep -q -- ` + shq(p.marker) + `; }`
}

// watchRounds is how many checks (0.2 s apart) one watcher session makes
// before it ends and a new one takes over (a minute).
const watchRounds = 300

// watchScript is the remote side of a watcher: it prints "exited" once
// the process is gone, and "renew" after rounds checks.
func (p *sshProc) watchScript(rounds int) string {
	// The loop also ends when its ssh session is gone ($PPID is the
	// session's sshd), so a watcher outlives no coordinator. A session
	// closed as it opened (a watcher released at once) left a shell whose
	// parent was init from its start, and it polled on as long as the
	// server ran (an attack: after leaderships of half a second); so the
	// loop also ends at a parent of 1, and every session after rounds
	// checks, whatever its parent (a reaper other than init).
	// timing: exception — the remote loop's "sleep 0.2" is a shell
	// literal, the period of a local check on the host (no network).
	script := p.alive() + "\nif alive check; then n=0; while alive; do " +
		"{ [ \"$PPID\" != 1 ] && kill -0 $PPID 2>/dev/null; } || exit 0; " +
		"n=$((n+1)); [ $n -le " + strconv.Itoa(rounds) + " ] || { echo renew; exit 0; }; sleep 0.2; done; fi\necho exited\n" +
		"tail -n 3 " + shq(p.logFile) + " 2>/dev/null | grep -qxF " + shq(p.refused) + " && echo refused-data-dir"
	if p.s.Dir != "" {
		script = "cd " + shq(p.s.Dir) + " 2>/dev/null\n" + script // where Spawn started it (a relative dir: from the login's)
	}
	return script
}

// watch keeps one ssh session open that prints "exited" when the process
// is gone; a broken session is reopened after a pause, a renewed one at
// once.
func (p *sshProc) watch() {
	script := p.watchScript(watchRounds)
	for {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-p.stop:
			case <-p.done:
			case <-ctx.Done():
			}
			cancel()
		}()
		began := time.Now()
		out, _ := p.s.run(ctx, p.dest, script, nil)
		cancel()
		if strings.Contains(out, "renew") && time.Since(began) >= 10*p.s.timing().SSHWatch {
			// (A session that renewed sooner, its host's sleep not
			// sleeping, is reopened after the pause below.)
			select {
			case <-p.stop:
				return
			case <-p.done:
				return
			default:
				continue
			}
		}
		if strings.Contains(out, "exited") {
			if strings.Contains(out, "refused-data-dir") {
				p.code.Store(serverRefused)
			}
			p.once.Do(func() { close(p.done) })
			return
		}
		select {
		case <-p.stop:
			return
		case <-p.done: // killed (Kill saw it gone)
			return
		case <-time.After(p.s.timing().SSHWatch):
		}
	}
}

// Kill sends SIGKILL to the server on its host, by pid (never to a local
// ssh client), and only if that pid still runs this incarnation.
func (p *sshProc) Kill() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	// One kill at a time; a host that could not be reached a moment ago
	// is not asked again at once (each try costs a connect timeout).
	p.killMu.Lock()
	defer p.killMu.Unlock()
	if p.killErr != nil && time.Since(p.killTime) < 2*p.s.timeout() {
		return p.killErr
	}
	ctx, cancel := context.WithTimeout(context.Background(), p.s.timeout()+p.s.timing().KillWait)
	defer cancel()
	// timing: exception — "sleep 0.05" is the remote shell's wait for
	// the killed pid to be gone, a local check on the host.
	script := p.alive() + "\nif alive check; then kill -9 " + strconv.Itoa(p.pid) + "; while alive; do sleep 0.05; done; fi\necho exited"
	out, err := p.s.run(ctx, p.dest, script, nil)
	if err != nil {
		p.killErr, p.killTime = fmt.Errorf("kill pid %d: %w", p.pid, err), time.Now()
		return p.killErr
	}
	p.killErr = nil
	if strings.Contains(out, "exited") {
		p.once.Do(func() { close(p.done) })
	}
	return nil
}

// Release stops watching without killing: the coordinator has replaced
// this incarnation (its host may be gone for good).
func (p *sshProc) Release() { p.stopOnce.Do(func() { close(p.stop) }) }

func (p *sshProc) Released() <-chan struct{} { return p.stop }

func (s *SSHSpawner) timeout() time.Duration {
	if s.ConnectTimeout <= 0 {
		return s.timing().SSHConnect
	}
	return s.ConnectTimeout
}

func (s *SSHSpawner) timing() timing.Config {
	if s.Timing == (timing.Config{}) {
		return timing.Default()
	}
	return s.Timing
}

// newSSHSpawner builds the spawner for ssh hosts: flags override the
// cluster file's settings; the binary defaults to the same absolute path
// as the local one, the directory to the coordinator's.
func newSSHSpawner(file, flags RemoteSettings, localBin, dir string, t timing.Config, log zerolog.Logger) *SSHSpawner {
	pick := func(a, b string) string {
		if a != "" {
			return a
		}
		return b
	}
	r := RemoteSettings{
		Identity:       pick(flags.Identity, file.Identity),
		KnownHosts:     pick(flags.KnownHosts, file.KnownHosts),
		Binary:         pick(pick(flags.Binary, file.Binary), localBin),
		Dir:            pick(pick(flags.Dir, file.Dir), dir),
		CopyBinary:     flags.CopyBinary || file.CopyBinary,
		ConnectTimeout: file.ConnectTimeout,
	}
	if flags.ConnectTimeout > 0 {
		r.ConnectTimeout = flags.ConnectTimeout
	}
	s := &SSHSpawner{Identity: r.Identity, KnownHosts: r.KnownHosts, Binary: r.Binary, Dir: r.Dir,
		ConnectTimeout: time.Duration(r.ConnectTimeout) * time.Second, Log: log, Timing: t}
	if r.CopyBinary {
		s.CopyFrom = localBin
	}
	return s
}
