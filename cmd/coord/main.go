// Command coord is the ftkv coordinator: it reads the cluster file, spawns
// the servers, serves the view to clients and shuts everything down in
// order (servers dump their tables) on end of stdin, SIGINT or SIGTERM.
package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"ftkv/coord"
	"ftkv/internal/auth"
	"ftkv/internal/flagcheck"
	"ftkv/limits"
	"ftkv/timing"
	"ftkv/wire"
)

const usage = `usage: coord -c <client_port> -s <servers_port> -C <config> [-l <logfile>] [-t <timeout>]
       coord -C <config> -id <k> [-d <dir>] [-l <logfile>] [-t <timeout>]   (one of a group)
       coord -hash-password [NAME ROLE]   (a bcrypt hash of the password on stdin)

  -c PORT        port clients connect to (default 7000; 0 = any free port)
  -s PORT        port servers send heartbeats to (default 7001; 0 = any)
  -C FILE        cluster file (default config.txt)
  -l FILE        log file for the coordinator and the servers (default stderr)
  -t TIMEOUT     failure timeout: a duration (500ms, 2s) or seconds (0.5) (default 500ms)
  -bind ADDR     address to listen on (default 127.0.0.1; 0.0.0.0 when the
                 config names ssh hosts)
  -server-bin P  path of the server binary (default: server beside coord)
  -sched POLICY  servers' Linux scheduling policy: batch (default;
                 SCHED_BATCH, a woken process does not preempt the running
                 one) or normal (sched line)
  -log-level L   debug, info, warn, error (default info)
  -no-stdin      do not shut down at end of stdin (only on SIGINT/SIGTERM)
  -id K          this coordinator's index among the config's "coordinator"
                 lines (a group of 3 or 5; their lines fix the ports)
  -d DIR         Raft data directory (default ftkv-coord, or ftkv-coord-K
                 in a group)
  -group-secret-file FILE  a file of at least 16 secret bytes, the same on
                 every coordinator of a group: without TLS, each Raft
                 connection proves it both ways (group_secret_file)
  -spare HOST    a host to move a server to when its respawns keep failing
                 (spare line); repeat it for several: given at all, these
                 replace the config file's spare lines (at a cluster's first
                 start: a restart keeps the spares left in its record)

durability (each overrides the config file's setting of that name):
  -data-dir DIR        servers' logs and snapshots, DIR/server_<id> (data_dir;
                       default ftkv-data under the working directory, on ssh
                       hosts under remote_dir; "none": no log, memory only)
  -fsync POLICY        always (default: a write is acknowledged once on disk),
                       everysec or no (fsync)
  -fsync-secondary     with -fsync always, a secondary also syncs before it
                       acknowledges (fsync_secondary yes)
  -snapshot-bytes N    snapshot once the log holds N bytes (snapshot_bytes;
                       64mb or 1GiB too; default 64 MiB; negative: never)

authentication (config lines "user <name> <read|readwrite|admin> <hash>"):
  -hash-password [NAME ROLE]  read a password from stdin (without echo on a
                       terminal, asked twice) and print its bcrypt hash, or
                       with NAME and ROLE the whole user line for the config
  -insecure-auth       allow user lines without TLS when every process is on
                       loopback (development only: passwords cross loopback
                       in clear); without TLS and this flag, users are refused
  -user "NAME ROLE HASH"  a user line's fields as one argument; repeat it for
                       several: given at all, these replace the config file's
                       user lines (other local users can read a command line:
                       prefer the config file, the hash can be attacked
                       offline; in a group, give every member the same users)

TLS (each overrides the config file's line of that name):
  -gen-certs DIR [-hosts H1,H2]  make a test CA and a certificate for each
                       role in DIR (servers, coordinators, clients; names
                       localhost, 127.0.0.1 and the hosts) and print the
                       config lines that use them
  -tls-ca FILE         the cluster CA's certificate (tls_ca)
  -tls-cert FILE       the servers' certificate, role server (tls_cert)
  -tls-key FILE        its key (tls_key)
  -tls-coord-cert FILE the coordinators' certificate (tls_coord_cert)
  -tls-coord-key FILE  its key (tls_coord_key)

metrics (Prometheus text format):
  -metrics ADDR             serve /metrics and /sd (service discovery of every
                            server's /metrics) on ADDR, e.g. 127.0.0.1:9100
  -server-metrics-port P    each server's /metrics port on its host: 0 any free
                            port (default; status --json shows metrics_addr),
                            P > 0 port P + server id, -1 none

servers on ssh hosts (each overrides the config file's setting of that name):
  -ssh-identity FILE         private key for ssh (ssh_identity)
  -ssh-known-hosts FILE      the only known-hosts file trusted (ssh_known_hosts)
  -ssh-connect-timeout SECS  ssh connect timeout (ssh_connect_timeout, default
                             10 x -t: 5)
  -remote-bin PATH           bin/server on the hosts (remote_bin; default: the
                             same absolute path as the local one)
  -remote-dir DIR            working directory on the hosts (remote_dir; default:
                             the coordinator's, created if missing)
  -copy-bin                  copy the local server binary to -remote-bin first
                             (copy_bin yes)
`

// Log times to the millisecond: a failover takes tens of them.
func init() { zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00" }

func main() {
	if len(os.Args) == 3 && os.Args[1] == checkStoreArg {
		os.Exit(checkStoreChild(os.Args[2]))
	}
	os.Exit(run())
}

// testStartDelayEnv, for tests only, delays the start (before the
// coordinator is made) by a duration: a signal's handling in that window
// can be tested.
const testStartDelayEnv = "FTKV_TEST_COORD_START_DELAY"

// run parses the flags, starts the cluster and waits for the end of stdin
// or a signal; it returns the exit status (2: bad flags or config).
func run() int {
	// SIGINT and SIGTERM stop the coordinator in order (exit 1 during
	// start-up, below) from its first moment: handled only once the
	// config was read, one in the first tens of milliseconds killed it.
	// The servers are in their own process group and never see the
	// terminal's SIGINT.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	fs := flag.NewFlagSet("coord", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var opts coord.Options
	opts.CheckStore = checkStoreInChild
	fs.IntVar(&opts.ClientPort, "c", 7000, "")
	fs.IntVar(&opts.ServersPort, "s", 7001, "")
	cfgPath := fs.String("C", "config.txt", "")
	fs.StringVar(&opts.ServerLog, "l", "", "")
	timeout := fs.String("t", "500ms", "")
	fs.StringVar(&opts.Bind, "bind", "", "")
	fs.StringVar(&opts.ServerBin, "server-bin", "", "")
	level := fs.String("log-level", "info", "")
	noStdin := fs.Bool("no-stdin", false, "")
	fs.IntVar(&opts.ID, "id", -1, "")
	fs.StringVar(&opts.DataDir, "d", "", "")
	r := &opts.RemoteFlags
	fs.StringVar(&r.Identity, "ssh-identity", "", "")
	fs.StringVar(&r.KnownHosts, "ssh-known-hosts", "", "")
	fs.IntVar(&r.ConnectTimeout, "ssh-connect-timeout", 0, "")
	fs.StringVar(&r.Binary, "remote-bin", "", "")
	fs.StringVar(&r.Dir, "remote-dir", "", "")
	fs.BoolVar(&r.CopyBinary, "copy-bin", false, "")
	limits.Flags(fs, &opts.LimitFlags)
	st := &opts.StorageFlags
	fs.StringVar(&st.DataDir, "data-dir", "", "")
	fs.StringVar(&st.Fsync, "fsync", "", "")
	fsyncSec := fs.Bool("fsync-secondary", false, "")
	fs.Func("snapshot-bytes", "", func(v string) (err error) {
		st.SnapshotBytes, err = coord.ParseSnapshotBytes(v)
		return err
	})
	fs.StringVar(&opts.SchedFlag, "sched", "", "")
	fs.StringVar(&opts.MetricsAddr, "metrics", "", "")
	fs.IntVar(&opts.ServerMetricsPort, "server-metrics-port", 0, "")
	hashPW := fs.Bool("hash-password", false, "")
	fs.BoolVar(&opts.InsecureAuth, "insecure-auth", false, "")
	tf := &opts.TLSFlags
	fs.StringVar(&tf.CA, "tls-ca", "", "")
	fs.StringVar(&tf.Cert, "tls-cert", "", "")
	fs.StringVar(&tf.Key, "tls-key", "", "")
	fs.StringVar(&tf.CoordCert, "tls-coord-cert", "", "")
	fs.StringVar(&tf.CoordKey, "tls-coord-key", "", "")
	fs.StringVar(&opts.GroupSecretFile, "group-secret-file", "", "")
	genCerts := fs.String("gen-certs", "", "")
	certHosts := fs.String("hosts", "", "")
	var spares, users []string
	fs.Func("spare", "", func(v string) error { spares = append(spares, v); return nil })
	fs.Func("user", "", func(v string) error { users = append(users, v); return nil })
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Print(usage + limitsUsage())
			return 0
		}
		return bad(fmt.Sprintf("%v (run coord -help for usage)", err))
	}
	// An empty value of a flag would mean "not given" (the file's
	// setting or the default, silently): refused.
	if empty := flagcheck.Empty(fs); empty != "" {
		return bad(fmt.Sprintf("-%s needs a value, got an empty one (run coord -help for usage)", empty))
	}
	if *fsyncSec {
		st.FsyncSecondary = "yes"
	}
	if *hashPW {
		signal.Reset(syscall.SIGINT, syscall.SIGTERM) // ctrl+c ends the prompt
		return hashPassword(fs.Args())
	}
	if *genCerts != "" {
		lines, err := coord.GenerateCerts(*genCerts, strings.FieldsFunc(*certHosts, func(r rune) bool { return r == ',' }))
		if err != nil {
			return bad(err.Error())
		}
		fmt.Print(lines)
		return 0
	}
	if fs.NArg() > 0 {
		return bad(fmt.Sprintf("unexpected argument %q (run coord -help for usage)", fs.Arg(0)))
	}
	if err := opts.Validate(); err != nil {
		return bad(err.Error())
	}
	var err error
	if opts.Timeout, err = coord.ParseTimeout(*timeout); err != nil {
		return bad(fmt.Sprintf("-t %q: %v", *timeout, err))
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil || *level == "" {
		return bad(fmt.Sprintf("-log-level %q: expected debug, info, warn or error", *level))
	}
	if opts.Cluster, err = coord.LoadCluster(*cfgPath); err != nil {
		return bad(err.Error())
	}
	if err := opts.Cluster.OverrideLines(spares, users); err != nil {
		return bad(err.Error())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if len(opts.Cluster.Coordinators) == 0 && given["id"] {
		return bad(fmt.Sprintf("-id %d: %s has no coordinator lines: -id names one of a group's (without them, run one coordinator with -c and -s)", opts.ID, *cfgPath))
	}
	if len(opts.Cluster.Coordinators) > 0 && (given["c"] || given["s"]) {
		return bad(fmt.Sprintf("%s has coordinator lines: each coordinator listens on its line's ports, so -c and -s are not used (start it with -id <k>)", *cfgPath))
	}
	if k := len(opts.Cluster.Coordinators); k > 0 && !given["id"] {
		lines := "lines"
		if k == 1 {
			lines = "line"
		}
		return bad(fmt.Sprintf("%s has %d coordinator %s: start each coordinator with -id <k> (k from 0 to %d)", *cfgPath, k, lines, k-1))
	}
	if err := opts.Cluster.CheckPorts(coord.FlagPort{Port: opts.ClientPort, Default: !given["c"]},
		coord.FlagPort{Port: opts.ServersPort, Default: !given["s"]}); err != nil {
		return bad(err.Error())
	}
	if _, p, err := net.SplitHostPort(opts.MetricsAddr); opts.MetricsAddr != "" && err == nil {
		// -metrics must not take a port the coordinator listens on.
		own, what := []int{opts.ClientPort, opts.ServersPort}, "-c or -s"
		if cs := opts.Cluster.Coordinators; opts.ID >= 0 && opts.ID < len(cs) {
			_, rp, _ := net.SplitHostPort(cs[opts.ID].RaftAddr)
			raft, _ := strconv.Atoi(rp)
			own, what = []int{cs[opts.ID].ClientPort, cs[opts.ID].ServersPort, raft}, fmt.Sprintf("a port of its coordinator line (%s line %d)", *cfgPath, cs[opts.ID].Line)
		}
		if n, _ := strconv.Atoi(p); n != 0 && slices.Contains(own, n) {
			return bad(fmt.Sprintf("-metrics %s: port %d is also %s: each port needs its own number", opts.MetricsAddr, n, what))
		}
	}
	log, err := coord.OpenLog(opts.ServerLog, lvl, os.Stderr)
	if err != nil {
		return bad(err.Error())
	}
	// (Not closed: the exit closes it. Goroutines still ending may log
	// until then; closed on return, their lines failed with "file
	// already closed" on stderr: an attack saw one in 40 shutdowns.)
	opts.Logger, opts.ServerLevel = log.Logger, log.ServerLevel
	if d, err := time.ParseDuration(os.Getenv(testStartDelayEnv)); err == nil {
		// Tests: a start-up slowed by a loaded machine; they signal
		// after this line.
		fmt.Fprintln(os.Stderr, "coord: (test) start delayed")
		time.Sleep(d)
	}
	c, err := coord.New(opts)
	if err != nil {
		log.Refused()
		return bad(err.Error())
	}
	// A signal during start-up stops what was started and exits.
	begun := time.Now()
	startCtx, cancelStart := context.WithCancel(context.Background())
	interrupted := make(chan string, 2)
	started := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			interrupted <- s.String()
			cancelStart()
		case <-started:
		}
	}()
	var stdinEOF <-chan struct{} // (nil with -no-stdin: never)
	if !*noStdin {
		stdinEOF = watchStdin()
		// The end of stdin stops a start that has outlasted the usual
		// start limit (it waits on for servers rebuilding large logs);
		// within it, the started cluster is stopped once up, as always.
		go func() {
			select {
			case <-stdinEOF:
			case <-started:
				return
			}
			select {
			case <-time.After(time.Until(begun.Add(timing.New(opts.Timeout).Start))):
			case <-started:
				return
			}
			interrupted <- "end of stdin"
			cancelStart()
		}()
	}
	err = c.Start(startCtx)
	close(started)
	cancelStart()
	if errors.Is(err, coord.ErrConfigMismatch) {
		log.Refused() // (its one line below says it all)
	} else {
		log.Started()
	}
	select {
	case s := <-interrupted:
		if err == nil {
			// It came as the start ended: the cluster is up, and is
			// stopped in order (left running before: a review).
			_ = c.Shutdown(context.Background())
		}
		fmt.Fprintf(os.Stderr, "coord: %s during start-up: the servers started so far are stopped\n", s)
		return 1
	default:
	}
	if errors.Is(err, coord.ErrConfigMismatch) {
		return bad(err.Error())
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "coord: %v\n", err)
		return 1
	}
	stop := "ctrl+d or ctrl+c"
	switch {
	case *noStdin:
		stop = "ctrl+c or SIGTERM"
	case inBackground(os.Stdin):
		stop = fmt.Sprintf("kill %d, or ctrl+d once in the foreground", os.Getpid())
	}
	if len(opts.Cluster.Coordinators) > 0 {
		fmt.Fprintf(os.Stderr, "ftkv: coordinator %d of %d running; clients connect to %s (%s stops this coordinator only)\n",
			opts.ID, len(opts.Cluster.Coordinators), c.ClientAddr(), stop)
	} else {
		fmt.Fprintf(os.Stderr, "ftkv: %s ready; clients connect to %s (%s to stop)\n", readyServers(c.View(), len(opts.Cluster.Servers)), c.ClientAddr(), stop)
	}

	select {
	case s := <-sigs:
		log.Info().Str("signal", s.String()).Msg("shutting down")
	case <-stdinEOF:
		log.Info().Msg("end of stdin; shutting down")
		if nullStdin() {
			fmt.Fprintln(os.Stderr, "coord: end of stdin (/dev/null): shutting down; -no-stdin keeps the cluster running without input")
		}
	case <-c.Stopped():
		log.Info().Msg("the cluster was shut down; exiting")
	case err := <-c.Fatal():
		_ = c.Shutdown(context.Background())
		return bad(err.Error())
	}
	start := time.Now()
	if err := c.Shutdown(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "coord: shutdown: %v\n", err)
		return 1
	}
	log.Info().Float64("took_ms", float64(time.Since(start))/float64(time.Millisecond)).Msg("shutdown complete")
	return 0
}

// limitsUsage lists the client-limit flags, one line each.
func limitsUsage() string {
	var b strings.Builder
	b.WriteString("\nclient limits passed to every server (each overrides the config file's line of that name):\n")
	for _, s := range limits.Settings {
		fmt.Fprintf(&b, "  -%-22s %s (%s, default %s)\n", s.Flag+" V", s.Doc, s.Line, s.Default())
	}
	return b.String()
}

// bad prints a bad flag or config on one line and returns exit status 2.
func bad(msg string) int {
	fmt.Fprintf(os.Stderr, "coord: %s\n", msg)
	return 2
}

// hashPassword is -hash-password [NAME ROLE]: it reads a password from
// stdin (on a terminal without echo, asked twice) and prints its bcrypt
// hash, or the user line for NAME and ROLE. The password is never an
// argument: it would show in ps and in the shell's history.
func hashPassword(args []string) int {
	var line auth.User
	switch len(args) {
	case 0:
	case 2:
		if err := auth.ValidName(args[0]); err != nil {
			return bad("-hash-password: " + err.Error())
		}
		r, err := auth.ParseRole(args[1])
		if err != nil {
			return bad("-hash-password: " + err.Error())
		}
		line = auth.User{Name: args[0], Role: r}
	default:
		return bad("-hash-password takes no argument, or a user name and a role (read, readwrite or admin); the password comes from stdin")
	}
	pw, err := readPassword()
	if err != nil {
		return bad("-hash-password: " + err.Error())
	}
	h, err := auth.HashPassword(pw, 0)
	clear(pw)
	if err != nil {
		return bad("-hash-password: " + err.Error())
	}
	if line.Name == "" {
		fmt.Println(h)
		return 0
	}
	line.Hash = h
	fmt.Println(line.Line())
	return 0
}

// readPassword reads a password: on a terminal without echo, twice; else
// the first line of stdin.
func readPassword() ([]byte, error) {
	fd := int(os.Stdin.Fd())
	if term.IsTerminal(fd) {
		fmt.Fprint(os.Stderr, "Password: ")
		pw, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, err
		}
		fmt.Fprint(os.Stderr, "Again: ")
		again, err := term.ReadPassword(fd)
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(pw, again) {
			return nil, errors.New("the passwords differ")
		}
		return pw, nil
	}
	pw, err := bufio.NewReader(io.LimitReader(os.Stdin, 4096)).ReadBytes('\n')
	if err != nil && err != io.EOF {
		return nil, err
	}
	pw = bytes.TrimRight(pw, "\r\n")
	if len(pw) == 0 {
		return nil, errors.New("no password on stdin")
	}
	return pw, nil
}

// readyServers says how many of the n servers the first view v serves
// with: "3 servers", or, after a restart without servers that did not
// start, "2 of 3 servers (server 1 down, respawned until it starts;
// shard 1 unavailable until then)".
func readyServers(v wire.View, n int) string {
	var down, gone []string
	for _, m := range v.Servers {
		if m.State != wire.StateServing && m.State != wire.StateReseeding {
			down = append(down, strconv.Itoa(int(m.ID)))
		}
	}
	for s, p := range v.Shards {
		if p.Primary < 0 {
			gone = append(gone, strconv.Itoa(s))
		}
	}
	if len(down) == 0 && len(gone) == 0 {
		if n == 1 {
			return "1 server"
		}
		return fmt.Sprintf("%d servers", n)
	}
	out := fmt.Sprintf("%d of %d servers (", n-len(down), n)
	switch len(down) {
	case 0:
	case 1:
		out += "server " + down[0] + " down, respawned until it starts"
	default:
		out += "servers " + strings.Join(down, ", ") + " down, respawned until they start"
	}
	if len(gone) > 0 {
		if len(down) > 0 {
			out += "; "
		}
		if len(gone) == 1 {
			out += "shard " + gone[0] + " unavailable"
		} else {
			out += "shards " + strings.Join(gone, ", ") + " unavailable"
		}
		out += ": see the log"
	}
	return out + ")"
}
