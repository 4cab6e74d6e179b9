// Command coord is the ftkv coordinator: it reads the cluster file, spawns
// the servers, serves the view to clients and shuts everything down in
// order (servers dump their tables) on end of stdin, SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/term"

	"ftkv/coord"
)

const usage = `usage: coord -c <client_port> -s <servers_port> -C <config> [-l <logfile>] [-t <timeout>]

  -c PORT        port clients connect to (default 7000; 0 = any free port)
  -s PORT        port servers send heartbeats to (default 7001; 0 = any)
  -C FILE        cluster file (default config.txt)
  -l FILE        log file for the coordinator and the servers (default stderr)
  -t TIMEOUT     failure timeout: a duration (500ms, 2s) or seconds (0.5) (default 500ms)
  -bind ADDR     address to listen on (default 127.0.0.1; 0.0.0.0 when the
                 config names ssh hosts)
  -server-bin P  path of the server binary (default: server beside coord)

servers on ssh hosts (each overrides the config file's setting of that name):
  -ssh-identity FILE         private key for ssh (ssh_identity)
  -ssh-known-hosts FILE      the only known-hosts file trusted (ssh_known_hosts)
  -ssh-connect-timeout SECS  ssh connect timeout (ssh_connect_timeout, default 5)
  -remote-bin PATH           bin/server on the hosts (remote_bin; default: the
                             same absolute path as the local one)
  -remote-dir DIR            working directory on the hosts (remote_dir; default:
                             the coordinator's, created if missing)
  -copy-bin                  copy the local server binary to -remote-bin first
                             (copy_bin yes)
  -log-level L   debug, info, warn, error (default info)
  -no-stdin      do not shut down at end of stdin (only on SIGINT/SIGTERM)
`

func main() { os.Exit(run()) }

func run() int {
	fs := flag.NewFlagSet("coord", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var (
		clientPort  = fs.Int("c", 7000, "")
		serversPort = fs.Int("s", 7001, "")
		cfgPath     = fs.String("C", "config.txt", "")
		logPath     = fs.String("l", "", "")
		timeout     = fs.String("t", "500ms", "")
		bind        = fs.String("bind", "", "")
		remote      coord.RemoteSettings
		serverBin   = fs.String("server-bin", "", "")
		level       = fs.String("log-level", "info", "")
		noStdin     = fs.Bool("no-stdin", false, "")
	)
	fs.StringVar(&remote.Identity, "ssh-identity", "", "")
	fs.StringVar(&remote.KnownHosts, "ssh-known-hosts", "", "")
	fs.IntVar(&remote.ConnectTimeout, "ssh-connect-timeout", 0, "")
	fs.StringVar(&remote.Binary, "remote-bin", "", "")
	fs.StringVar(&remote.Dir, "remote-dir", "", "")
	fs.BoolVar(&remote.CopyBinary, "copy-bin", false, "")
	if err := fs.Parse(os.Args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Print(usage)
			return 0
		}
		fmt.Fprintf(os.Stderr, "coord: %v (run coord -help for usage)\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "coord: unexpected argument %q (run coord -help for usage)\n", fs.Arg(0))
		return 2
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"-c", *clientPort}, {"-s", *serversPort}} {
		if p.v < 0 || p.v > 65535 {
			fmt.Fprintf(os.Stderr, "coord: %s %d: not a port number 0-65535\n", p.name, p.v)
			return 2
		}
	}
	if remote.ConnectTimeout < 0 || remote.ConnectTimeout > 600 {
		fmt.Fprintf(os.Stderr, "coord: -ssh-connect-timeout %d: expected seconds from 1 to 600\n", remote.ConnectTimeout)
		return 2
	}
	for _, f := range []struct{ name, path string }{{"-ssh-identity", remote.Identity}, {"-ssh-known-hosts", remote.KnownHosts}} {
		if f.path == "" {
			continue
		}
		if _, err := os.Stat(f.path); err != nil {
			fmt.Fprintf(os.Stderr, "coord: %s %s: %v\n", f.name, f.path, errors.Unwrap(err))
			return 2
		}
	}
	to, err := parseTimeout(*timeout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "coord: -t %q: %v\n", *timeout, err)
		return 2
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil || *level == "" {
		fmt.Fprintf(os.Stderr, "coord: -log-level %q: expected debug, info, warn or error\n", *level)
		return 2
	}
	cluster, err := coord.LoadCluster(*cfgPath)
	if err != nil {
		fmt.Fprintf(os.Stderr, "coord: %v\n", err)
		return 2
	}

	var logOut io.Writer = os.Stderr
	serverLevel := lvl.String()
	if *logPath != "" {
		f, err := os.OpenFile(*logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "coord: -l %s: %v\n", *logPath, err)
			return 2
		}
		defer f.Close()
		logOut = f
	} else {
		if term.IsTerminal(int(os.Stderr.Fd())) {
			logOut = zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: "15:04:05.000"}
		}
		if lvl < zerolog.WarnLevel {
			serverLevel = "warn" // keep a terminal readable
		}
	}
	log := zerolog.New(logOut).Level(lvl).With().Timestamp().Str("role", "coord").Logger()

	c, err := coord.New(coord.Options{
		Cluster: cluster, Bind: *bind, ClientPort: *clientPort, ServersPort: *serversPort,
		Timeout: to, ServerBin: *serverBin, ServerLog: *logPath, ServerLevel: serverLevel, Logger: log,
		RemoteFlags: remote,
	})
	if err != nil {
		fmt.Fprintf(os.Stderr, "coord: %v\n", err)
		return 2
	}
	// Ignore the terminal's SIGINT until the handler below is in place;
	// the servers are in their own process group and never see it.
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM)
	if err := c.Start(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "coord: %v\n", err)
		return 1
	}
	fmt.Fprintf(os.Stderr, "ftkv: %d servers ready; clients connect to %s (ctrl+d or ctrl+c to stop)\n", len(cluster.Servers), c.ClientAddr())

	stdinEOF := make(chan struct{})
	if !*noStdin {
		go func() {
			_, _ = io.Copy(io.Discard, os.Stdin)
			close(stdinEOF)
		}()
	}
	select {
	case s := <-sigs:
		log.Info().Str("signal", s.String()).Msg("shutting down")
	case <-stdinEOF:
		log.Info().Msg("end of stdin; shutting down")
	}
	start := time.Now()
	if err := c.Shutdown(context.Background()); err != nil {
		fmt.Fprintf(os.Stderr, "coord: shutdown: %v\n", err)
		return 1
	}
	log.Info().Dur("took", time.Since(start)).Msg("shutdown complete")
	return 0
}

// parseTimeout accepts a Go duration ("500ms") or a number of seconds ("0.5").
func parseTimeout(s string) (time.Duration, error) {
	var d time.Duration
	if f, err := strconv.ParseFloat(s, 64); err == nil {
		d = time.Duration(f * float64(time.Second))
	} else if d, err = time.ParseDuration(strings.TrimSpace(s)); err != nil {
		return 0, errors.New("expected a duration such as 500ms or a number of seconds")
	}
	if d < 10*time.Millisecond || d > time.Hour {
		return 0, errors.New("must be between 10ms and 1h")
	}
	return d, nil
}
