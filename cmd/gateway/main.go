// Command gateway serves Redis clients (RESP2/RESP3) and an HTTP API in
// front of an ftkv cluster; see package ftkv/gateway.
//
//	gateway -h <coord_host> -p <coord_port> [-listen 127.0.0.1:6380] [-http <addr>]
//	gateway -h <host:port,host:port,...> [flags]
package main

import (
	"context"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rs/zerolog"

	"ftkv/client"
	"ftkv/gateway"
	"ftkv/internal/cli"
	"ftkv/internal/flagcheck"
	"ftkv/internal/sched"
	"ftkv/internal/tlsconf"
	"ftkv/limits"
)

const usage = `usage: gateway -h <coord_host> -p <coord_port> [-listen 127.0.0.1:6380] [-http <addr>] [-metrics <addr>] [flags]
       gateway -h <host:port,host:port,...> [flags]

Serves Redis clients (redis-cli, redis-benchmark, client libraries; RESP2,
and RESP3 after HELLO 3) on -listen and an HTTP API on -http
(GET/PUT/DELETE /v1/kv/{key}, POST /v1/kv/{key}?append, GET /v1/status),
forwarding every command to the cluster. Stateless: run as many as needed.
SIGINT or SIGTERM stops it.

With users in the cluster: -user NAME (password in FTKV_PASSWORD) is the
gateway's own login; its clients must then log in as users of the cluster
(AUTH [user] password, HELLO 3 AUTH user password, HTTP Basic; AUTH
password is user "default") and may do what their role allows.

flags:
`

// Log times to the millisecond: a failover takes tens of them.
func init() { zerolog.TimeFieldFormat = "2006-01-02T15:04:05.000Z07:00" }

func main() {
	if p := os.Getenv("FTKV_CPUPROFILE"); p != "" {
		// Profiling aid for benchmarks: a CPU profile of the gateway,
		// written when it stops.
		if f, err := os.Create(p); err == nil && pprof.StartCPUProfile(f) == nil {
			code := run(os.Args[1:])
			pprof.StopCPUProfile()
			os.Exit(code)
		}
	}
	os.Exit(run(os.Args[1:]))
}

func init() {
	// gnet's event loops wait in epoll_wait outside Go's scheduler: with
	// one P (a gateway given one CPU), every goroutine that Go's poller
	// wakes (the client's readers of the servers' answers) waits for
	// sysmon to take the P back from the blocked loop, 20 µs or more each
	// time. A second P runs them at once (measured pinned to one CPU:
	// redis-benchmark -P 1 through the gateway 10-40% faster).
	if os.Getenv("GOMAXPROCS") == "" && runtime.GOMAXPROCS(0) < 2 {
		runtime.GOMAXPROCS(2)
	}
}

func run(args []string) int {
	fs := flag.NewFlagSet("gateway", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	host := fs.String("h", "localhost", "coordinator host, or a comma-separated list host:port,host:port,...")
	port := fs.String("p", "", "coordinator client port")
	var cfg gateway.Config
	fs.StringVar(&cfg.Listen, "listen", gateway.DefaultListen, "RESP (Redis protocol) address")
	fs.StringVar(&cfg.HTTP, "http", "", "HTTP API address (empty: none)")
	metricsAddr := fs.String("metrics", "", "Prometheus /metrics address (empty: none)")
	fs.DurationVar(&cfg.Timeout, "timeout", gateway.DefaultTimeout, "longest wait of one command for the cluster")
	fs.IntVar(&cfg.Limits.MaxClients, "max-clients", 0, "open RESP connections (default 10000)")
	fs.IntVar(&cfg.Limits.MaxInflight, "max-inflight", 0, "commands read but not answered per connection (default 4096)")
	// The output and input limits, as the servers take them.
	limits.Flags(fs, &cfg.Limits, "output_soft_limit", "output_hard_limit", "output_grace", "output_budget", "input_budget", "inflight_budget")
	fs.IntVar(&cfg.Loops, "loops", 0, "event loops (default: one per CPU)")
	conns := fs.Int("conns", 1, "pipelined connections to each server")
	logFile := fs.String("log", "", "log file (default stderr)")
	level := fs.String("log-level", "info", "log level")
	tlsFlags := tlsconf.ClientFlags(fs) // -tls-cert also puts TLS on the RESP port
	schedPolicy := fs.String("sched", sched.Batch, sched.FlagUsage)
	user := fs.String("user", "", "the cluster's user the gateway acts as (password: FTKV_PASSWORD, or typed at the terminal); its clients then log in as users of the cluster (AUTH, HELLO AUTH, HTTP Basic)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Print(usage)
			fs.SetOutput(os.Stdout)
			fs.PrintDefaults()
			return 0
		}
		fmt.Fprintf(os.Stderr, "gateway: %v (gateway -help for usage)\n", err)
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "gateway: unexpected argument %q (gateway -help for usage)\n", fs.Arg(0))
		return 2
	}
	if empty := flagcheck.Empty(fs); empty != "" {
		// (Read as not given: -tls-ca "" spoke plaintext, -http "" served
		// no HTTP API, -log "" logged to stderr.)
		fmt.Fprintf(os.Stderr, "gateway: -%s needs a value, got an empty one (gateway -help for usage)\n", empty)
		return 2
	}
	for _, c := range []struct {
		bad  bool
		flag string
		val  any
		want string
	}{
		{cfg.Timeout <= 0, "-timeout", cfg.Timeout, "a positive duration such as 5s"},
		{cfg.Limits.MaxClients < 0, "-max-clients", cfg.Limits.MaxClients, "a number of connections (0: the default)"},
		{cfg.Limits.MaxInflight < 0, "-max-inflight", cfg.Limits.MaxInflight, "a number of commands (0: the default)"},
		{cfg.Loops < 0, "-loops", cfg.Loops, "a number of event loops (0: one per CPU)"},
		{*conns < 1, "-conns", *conns, "at least 1"},
		{sched.Check(*schedPolicy) != nil, "-sched", *schedPolicy, sched.Batch + " or " + sched.Normal},
		{badAddr(cfg.Listen, false), "-listen", cfg.Listen, "host:port"},
		{badAddr(cfg.HTTP, true), "-http", cfg.HTTP, "host:port"},
		{badAddr(*metricsAddr, true), "-metrics", *metricsAddr, "host:port"},
	} {
		if c.bad {
			fmt.Fprintf(os.Stderr, "gateway: %s %v: expected %s\n", c.flag, c.val, c.want)
			return 2
		}
	}
	if err := cfg.Limits.Validate(); err != nil {
		fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
		return 2
	}
	coord, err := coordAddr(*host, *port)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
		return 2
	}
	var auth []client.Option
	tcfg, tfiles, err := tlsFlags()
	if err != nil {
		fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
		return 2
	}
	if tcfg != nil {
		auth = append(auth, client.WithTLS(tcfg))
	}
	var gwTLS *tlsconf.Material
	if tfiles.Cert != "" {
		if gwTLS, err = tlsconf.Load(tfiles, ""); err != nil {
			fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
			return 2
		}
		if err := gwTLS.UsableFor(x509.ExtKeyUsageServerAuth, "the gateway serves its RESP and HTTP ports with it"); err != nil {
			fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
			return 2
		}
		cfg.TLS = gwTLS.Server(false)
	}
	if *user != "" {
		// Its clients' passwords would cross the network in clear on a
		// plaintext RESP or HTTP port.
		for _, a := range []struct{ flag, addr string }{{"-listen", cfg.Listen}, {"-http", cfg.HTTP}} {
			if a.addr != "" && !loopback(a.addr) && cfg.TLS == nil {
				fmt.Fprintf(os.Stderr, "gateway: -user: %s %s is not a loopback address (clients' passwords would cross the network in clear)\n", a.flag, a.addr)
				return 2
			}
		}
		pw, err := cli.Password(*user, os.Stdin, os.Stderr)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
			return 2
		}
		auth = append(auth, client.WithAuth(*user, pw))
	}
	out := os.Stderr
	if *logFile != "" {
		f, err := os.OpenFile(*logFile, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
			return 2
		}
		defer f.Close()
		out = f
	}
	lvl, err := zerolog.ParseLevel(*level)
	if err != nil {
		fmt.Fprintf(os.Stderr, "gateway: bad -log-level %q\n", *level)
		return 2
	}
	log := zerolog.New(out).Level(lvl).With().Timestamp().Str("node", "gateway").Logger()
	if gwTLS != nil {
		gwTLS.LogReloads(log)
	}
	if err := sched.Apply(*schedPolicy); err != nil {
		log.Warn().Err(err).Msg("scheduling policy left as it was")
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second) // timing: exception — start-up only
	cl, err := client.Dial(dctx, coord, append(auth, client.WithLogger(log), client.WithConnsPerServer(*conns))...)
	cancel()
	if err != nil {
		fmt.Fprintf(os.Stderr, "gateway: cannot reach the cluster at %s: %v\n", coord, err)
		return 1
	}
	defer cl.Close()
	cfg.Store, cfg.Logger = cl, log
	if *user != "" {
		cfg.Authenticate = cl.CheckCredentials
	}
	if os.Getenv("GOGC") == "" {
		// The collector's headroom: at least tens of MiB (see
		// gateway.TuneGC) unless GOGC says otherwise.
		go gateway.TuneGC(ctx)
	}
	met := gateway.NewMetrics()
	cfg.Observe, cfg.OnLogin = met.Observe, met.Login
	g, err := gateway.New(cfg)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%v\n", err)
		return 2
	}
	if err := g.Start(); err != nil {
		fmt.Fprintf(os.Stderr, "%v\n", err)
		return 1
	}
	if *metricsAddr != "" {
		met.Attach(g)
		ml, err := met.Listen(*metricsAddr, cfg.TLS)
		if err != nil {
			fmt.Fprintf(os.Stderr, "gateway: -metrics %s: %v\n", *metricsAddr, err)
			_ = g.Close(context.Background())
			return 1
		}
		defer ml.Close()
		log.Info().Str("addr", ml.Addr()).Msg("metrics listening")
	}
	ev := log.Info().Str("resp", g.Addr()).Str("coordinator", coord)
	if a := g.HTTPAddr(); a != "" {
		ev = ev.Str("http", a)
	}
	ev.Msg("gateway listening")
	code := 0
	select {
	case <-ctx.Done():
	case err := <-g.Err():
		fmt.Fprintf(os.Stderr, "gateway: %v\n", err)
		code = 1
	}
	sctx, scancel := context.WithTimeout(context.Background(), 5*time.Second) // timing: exception — shutdown only
	defer scancel()
	_ = g.Close(sctx)
	return code
}

// coordAddr turns -h (a host, or a comma-separated list of host:port or
// hosts) and -p into the address client.Dial takes.
// badAddr reports whether a is no address to listen on (host:port, the
// port a number or a service name; "" only when optional): a mistyped one exits 2 at once,
// as other bad flags do, not 1 once the cluster was dialled.
func badAddr(a string, optional bool) bool {
	if a == "" {
		return !optional
	}
	_, p, err := net.SplitHostPort(a)
	if err != nil {
		return true
	}
	_, err = net.LookupPort("tcp", p)
	return err != nil
}

func coordAddr(host, port string) (string, error) {
	var out []string
	for _, h := range strings.Split(host, ",") {
		h = strings.TrimSpace(h)
		hh, p, err := net.SplitHostPort(h)
		if err != nil {
			if port == "" {
				return "", errors.New("missing -p <coord_port> (or give -h host:port,host:port,...)")
			}
			hh, p = strings.Trim(h, "[]"), port
		}
		if hh == "" {
			return "", fmt.Errorf("-h: empty coordinator host in %q", host)
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return "", fmt.Errorf("bad coordinator port %q (want 1-65535)", p)
		}
		out = append(out, net.JoinHostPort(hh, p))
	}
	return strings.Join(out, ","), nil
}

// loopback reports whether addr (host:port) listens on loopback only.
func loopback(addr string) bool {
	h, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(h, "localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}
