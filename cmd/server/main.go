// Command server is one ftkv storage server. The coordinator starts it;
// running it by hand is only useful for debugging.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"ftkv/internal/auth"
	"ftkv/internal/sched"
	"ftkv/internal/timerslack"
	"ftkv/internal/tlsconf"
	"ftkv/limits"
	"ftkv/server"
	"ftkv/timing"
)

// Log times to the millisecond: a failover takes tens of them.
func init() { zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00" }

func main() {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	var cfg server.Config
	var id uint
	var logFile, level string
	fs.UintVar(&id, "id", 0, "server id (its line in the config, from 0)")
	fs.Uint64Var(&cfg.Incarnation, "inc", 1, "incarnation number")
	fs.IntVar(&cfg.Servers, "servers", 0, "the cluster's number of servers (N), recorded in the data directory: a directory of a cluster of another size is refused (0: not checked)")
	fs.StringVar(&cfg.ClusterID, "cluster-id", "", "the cluster's ID (from the coordinator), recorded in the data directory: a directory of another cluster is refused (empty: not checked)")
	fs.BoolVar(&cfg.AdoptCluster, "cluster-adopt", false, "a data directory of another cluster ID takes -cluster-id instead of being refused (the coordinator's state was new)")
	fs.StringVar(&cfg.CoordAddr, "coord", "", "coordinator servers address host:port (required)")
	fs.StringVar(&cfg.BindHost, "bind", "127.0.0.1", "address to listen on")
	fs.StringVar(&cfg.AdvertiseHost, "advertise", "", "address to advertise (default: -bind)")
	fs.IntVar(&cfg.ClientPort, "client-port", 0, "client port (0 = any free port)")
	fs.IntVar(&cfg.PeerPort, "peer-port", 0, "replication port (0 = any free port)")
	fs.IntVar(&cfg.CtlPort, "ctl-port", 0, "control port (0 = any free port)")
	fs.StringVar(&cfg.DumpDir, "dir", ".", "directory for server_<id>.primary/.secondary at shutdown")
	fs.StringVar(&cfg.DataDir, "data-dir", "", "directory of this server's write-ahead log (empty: no log)")
	fs.StringVar(&cfg.Fsync, "fsync", "always", "when the log is fsynced: always, everysec or no")
	fs.Int64Var(&cfg.SnapshotBytes, "snapshot-bytes", 0, "snapshot the tables and truncate the log once it holds this many bytes and at least the last snapshot's size (0 = 64 MiB, negative = never)")
	fs.BoolVar(&cfg.SyncSecondary, "fsync-secondary", false, "with -fsync always, a secondary acknowledges a write only once its own log synced it")
	ft := fs.Duration("failure-timeout", 0, "the coordinator's failure timeout -t, from which every duration derives (0 = "+timing.DefaultFailureTimeout.String()+")")
	fs.IntVar(&cfg.Loops, "loops", 0, "client event loops (default: one per CPU)")
	fs.IntVar(&cfg.MetricsPort, "metrics-port", 0, "port of Prometheus /metrics on the -bind address (0 = any free port, -1 = none)")
	limits.Flags(fs, &cfg.Limits)
	schedPolicy := fs.String("sched", sched.Batch, sched.FlagUsage)
	// timing: exception — a runtime knob of the process, not a failure-related duration.
	slack := fs.Duration("timer-slack", time.Millisecond, "timer slack of the process (Linux; 0 = the system's, 50µs)")
	fs.StringVar(&logFile, "log", "", "log file (default stderr)")
	fs.StringVar(&level, "log-level", "info", "log level")
	var tlsFiles tlsconf.Files
	fs.StringVar(&tlsFiles.CA, "tls-ca", "", "TLS on every port and link: the cluster CA's certificate file")
	fs.StringVar(&tlsFiles.Cert, "tls-cert", "", "TLS: this server's certificate file (role server)")
	fs.StringVar(&tlsFiles.Key, "tls-key", "", "TLS: its private key file")
	fs.BoolVar(&tlsFiles.Roleless, "tls-roleless", false, "TLS: the cluster runs on one certificate without an ftkv role (tls_cert alone)")
	secretsStdin := fs.Bool("secrets-stdin", false, "read the cluster secret (first line) and the users (user lines) from standard input, as the coordinator gives them (without it: the secret from FTKV_SECRET, no users)")
	fs.SetOutput(io.Discard)
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Println("usage: server -coord <host:port> [flags] (the coordinator starts servers; by hand only for debugging)")
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			os.Exit(0)
		}
		fmt.Fprintf(os.Stderr, "server: %v (server -help for usage)\n", err)
		os.Exit(2)
	}
	if err := sched.Check(*schedPolicy); err != nil {
		fmt.Fprintf(os.Stderr, "server: -sched %v\n", err)
		os.Exit(2)
	}
	// First, while nothing is open: this may execute the program again.
	slackErr := timerslack.Ensure(*slack)
	cfg.ID = uint32(id)
	if *secretsStdin {
		// The coordinator's way: nothing on the command line or in the
		// environment (/proc/<pid>/environ) holds a secret.
		var err error
		if cfg.Secret, cfg.Users, err = readSecrets(os.Stdin); err != nil {
			fmt.Fprintf(os.Stderr, "server %d: -secrets-stdin: %v\n", cfg.ID, err)
			os.Exit(2)
		}
	} else {
		cfg.Secret = os.Getenv("FTKV_SECRET") // by hand, for debugging
		os.Unsetenv("FTKV_SECRET")
	}
	out := os.Stderr
	if logFile != "" {
		f, err := os.OpenFile(logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "server: %v\n", err)
			os.Exit(2)
		}
		out = f
	}
	lvl, err := zerolog.ParseLevel(level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "server: bad -log-level %q\n", level)
		os.Exit(2)
	}
	cfg.Logger = zerolog.New(out).Level(lvl).With().Timestamp().Logger()
	cfg.Timing = timing.New(*ft)
	if err := cfg.Timing.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "server: -failure-timeout: %v\n", err)
		os.Exit(2)
	}
	nodeLog := cfg.Logger.With().Uint32("node", cfg.ID).Uint64("inc", cfg.Incarnation).Logger() // (server.New adds them to its own)
	if slackErr != nil {
		nodeLog.Warn().Err(slackErr).Msg("timer slack left as it was")
	}
	if err := sched.Apply(*schedPolicy); err != nil {
		nodeLog.Warn().Err(err).Msg("scheduling policy left as it was")
	}
	if dir := os.Getenv("FTKV_CPUPROFILE_DIR"); dir != "" {
		// Profiling aid for benchmarks: a CPU profile per server, written
		// when the server stops.
		f, err := os.Create(filepath.Join(dir, fmt.Sprintf("server_%d.cpu.prof", cfg.ID)))
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer pprof.StopCPUProfile()
		}
	}
	if addr := os.Getenv("FTKV_PPROF_ADDR"); addr != "" {
		// Profiling aid: net/http/pprof on a loopback port (base + id).
		host, port, _ := net.SplitHostPort(addr)
		if p, err := strconv.Atoi(port); err == nil {
			go func() { _ = http.ListenAndServe(net.JoinHostPort(host, strconv.Itoa(p+int(cfg.ID))), nil) }()
		}
	}
	// Unless GOGC says otherwise, the collector's headroom follows the
	// heap: 100 % while it is small, 20 % once the tables are large.
	cfg.TuneGC = os.Getenv("GOGC") == ""
	if tlsFiles.Enabled() {
		if cfg.TLS, err = tlsconf.Load(tlsFiles, tlsconf.RoleServer); err != nil {
			fmt.Fprintf(os.Stderr, "server: %v\n", err)
			os.Exit(2)
		}
	}
	srv, err := server.New(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%v\n", err) // it names the server
		if errors.Is(err, server.ErrDataDirRefused) {
			fmt.Fprintln(os.Stderr, server.RefusedLine(cfg.ID, cfg.Incarnation, os.Getpid()))
			os.Exit(server.ExitDataDirRefused) // not started again
		}
		os.Exit(2)
	}
	// The coordinator decides when servers stop (and makes them dump
	// first); a stray SIGINT from the terminal must not kill them.
	signal.Ignore(syscall.SIGINT, syscall.SIGHUP)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := srv.Run(ctx); err != nil && ctx.Err() == nil {
		line, me := err.Error(), fmt.Sprintf("server %d: ", cfg.ID)
		if !strings.HasPrefix(line, me) { // (most of Run's errors name it already)
			line = me + line
		}
		fmt.Fprintln(os.Stderr, line)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// readSecrets reads what the coordinator writes on a server's standard
// input (coord.SecretsInput): the cluster secret, then user lines.
func readSecrets(r io.Reader) (string, *auth.Table, error) {
	b, err := io.ReadAll(io.LimitReader(r, 4<<20))
	if err != nil {
		return "", nil, err
	}
	secret, users, _ := strings.Cut(string(b), "\n")
	if secret == "" {
		return "", nil, errors.New("no cluster secret on standard input")
	}
	t, err := auth.DecodeTable(users)
	if err != nil {
		return "", nil, err
	}
	return secret, t, nil
}
