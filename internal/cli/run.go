package cli

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/term"

	"ftkv/client"
	"ftkv/internal/flagcheck"
	"ftkv/internal/tlsconf"
	"ftkv/wire"
)

// DefaultTimeout bounds dialing and each command unless -timeout says otherwise.
const DefaultTimeout = 5 * time.Second

// dialFunc connects to the coordinator at addr.
type dialFunc func(ctx context.Context, addr string) (Store, error)

// dialWith is the dial function of a client with opts.
func dialWith(opts ...client.Option) dialFunc {
	return func(ctx context.Context, addr string) (Store, error) {
		c, err := dialPatiently(ctx, func() (*client.Client, error) { return client.Dial(ctx, addr, opts...) })
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}

// permanent reports whether a failure to reach the coordinator is one a
// retry cannot change: nobody listening, a name that does not resolve, a
// port that speaks another protocol or is no coordinator's client port
// (client.ErrNotCoordinator), a TLS handshake's failure (a wrong CA or
// certificate, a port in clear). A failure to reach any of a list is
// permanent only if every coordinator's is: one electing its leader is
// waited for.
func permanent(err error) bool {
	if m, ok := err.(interface{ Unwrap() []error }); ok {
		causes := m.Unwrap()
		for _, e := range causes {
			if !permanent(e) {
				return false
			}
		}
		return len(causes) > 0
	}
	var ae tls.AlertError
	var ve *tls.CertificateVerificationError
	var rh tls.RecordHeaderError
	var dns *net.DNSError
	return errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &dns) && dns.IsNotFound) ||
		errors.Is(err, wire.ErrMalformed) || errors.Is(err, wire.ErrVersion) || errors.Is(err, client.ErrNotCoordinator) ||
		errors.As(err, &ae) || errors.As(err, &ve) || errors.As(err, &rh) || strings.Contains(err.Error(), "TLS with ")
}

// dialPatiently calls dial until it succeeds, fails for good (a refusal,
// bad credentials, TLS, nobody listening) or ctx (-timeout) ends: one
// round over the coordinators gives up on one that does not answer
// within the handshake timeout (2 s), and a group may be electing its
// leader, while -timeout promises that long for reaching the cluster.
func dialPatiently(ctx context.Context, dial func() (*client.Client, error)) (*client.Client, error) {
	backoff := 50 * time.Millisecond // timing: exception — the CLI's retry pace within -timeout
	for {
		c, err := dial()
		if err == nil || exitCode(err) != ExitUnavailable || permanent(err) || ctx.Err() != nil {
			return c, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("%w (last error: %w)", ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 500*time.Millisecond)
	}
}

// config is the parsed command line.
type config struct {
	host, port string
	coords     []string // the coordinators' client addresses, from -h and -p
	file       string
	timeout    time.Duration
	words      []string // the one-shot command and its arguments
	user       string   // -user: authenticate as (password: Password)
	pwFlag     string   // -a: refused (a password on the command line)
	// tls gives -tls-ca/-tls-cert/-tls-key's configuration (nil: no TLS).
	tls func() (*tls.Config, tlsconf.Files, error)
}

// addr is what the client dials: one address, or a comma-separated list.
func (c config) addr() string { return strings.Join(c.coords, ",") }

// coordAddrs turns -h (a host, or a comma-separated list of host:port or
// hosts) and -p into the coordinators' addresses: a list entry without a
// port takes -p's.
func coordAddrs(host, port string) ([]string, error) {
	var out []string
	for _, h := range strings.Split(host, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return nil, fmt.Errorf("-h: empty coordinator host in %q", host)
		}
		hh, p, err := net.SplitHostPort(h)
		fromP := false // the port is -p's
		if err != nil || strings.Count(h, ":") > 1 && !strings.HasPrefix(h, "[") {
			// A bare host (an IPv6 address unless in brackets): -p's port.
			if port == "" {
				return nil, errors.New("missing -p <coord_port> (or give -h host:port,host:port,...)")
			}
			hh, p, fromP = strings.Trim(h, "[]"), port, true
		}
		if hh == "" {
			return nil, fmt.Errorf("-h: empty coordinator host in %q", h)
		}
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			if fromP {
				return nil, fmt.Errorf("-p: bad port %q (want 1-65535)", p)
			}
			return nil, fmt.Errorf("-h: bad port %q in %q (want 1-65535)", p, h)
		}
		out = append(out, net.JoinHostPort(hh, p))
	}
	return out, nil
}

// Run is bin/client: args are the arguments after the program name. It
// returns the exit status.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(args, stdin, stdout, stderr, nil)
}

// run is Run with dial connecting (nil: the Go client, authenticating
// with -user's credentials).
func run(args []string, stdin io.Reader, stdout, stderr io.Writer, dial dialFunc) int {
	cfg, err := parseFlags(args)
	if errors.Is(err, flag.ErrHelp) {
		io.WriteString(stdout, Usage)
		return ExitOK
	}
	if err != nil {
		printError(stderr, "", err.Error()+" (see -help)")
		return ExitUsage
	}
	if dial == nil {
		var opts []client.Option
		if cfg.tls != nil {
			tcfg, _, err := cfg.tls()
			if err != nil {
				printError(stderr, "", err.Error())
				return ExitUsage
			}
			if tcfg != nil {
				opts = append(opts, client.WithTLS(tcfg))
			}
		}
		dial = dialWith(opts...)
		if cfg.user != "" {
			f, _ := stdin.(*os.File)
			pw, err := Password(cfg.user, f, stderr)
			if err != nil {
				printError(stderr, "", err.Error())
				return ExitUsage
			}
			dial = authDialer(cfg.user, pw, opts...)
		}
	}
	if len(cfg.words) > 0 {
		return oneShot(cfg, stdout, stderr, dial)
	}

	// Session mode: open the input before dialing so a wrong path is
	// reported as such even when the cluster is down.
	in, name := stdin, "stdin"
	if cfg.file != "" && cfg.file != "-" {
		f, err := os.Open(cfg.file)
		if err != nil {
			printError(stderr, "", err.Error())
			return ExitUsage
		}
		defer f.Close()
		in, name = f, cfg.file
	}
	tty := false
	if f, ok := in.(*os.File); ok && term.IsTerminal(int(f.Fd())) {
		tty = true
	}

	store, code := connect(cfg, stderr, dial)
	if store == nil {
		return code
	}
	defer store.Close()
	s := &session{store: store, timeout: cfg.timeout, stdout: bufio.NewWriter(stdout), stderr: stderr}
	if tty {
		return s.interactive(in.(*os.File), cfg.addr())
	}
	return s.batch(in, name)
}

func parseFlags(args []string) (config, error) {
	cfg := config{}
	fs := flag.NewFlagSet("client", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported by the caller, in one line
	fs.StringVar(&cfg.host, "h", "localhost", "coordinator host")
	fs.StringVar(&cfg.port, "p", "", "coordinator client port")
	fs.StringVar(&cfg.file, "f", "", "read commands from file")
	fs.DurationVar(&cfg.timeout, "timeout", DefaultTimeout, "deadline per command")
	fs.StringVar(&cfg.user, "user", "", "authenticate as this user")
	fs.StringVar(&cfg.pwFlag, "a", "", "refused: a password on the command line")
	cfg.tls = tlsconf.ClientFlags(fs)
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	cfg.words = fs.Args()
	switch empty := flagcheck.Empty(fs, "h", "a"); {
	case cfg.pwFlag != "":
		return config{}, errPasswordFlag
	case cfg.host == "":
		return config{}, errors.New("-h: empty coordinator host")
	case empty != "":
		// (Read as not given: -f "" read stdin, -tls-ca "" spoke plaintext.)
		return config{}, fmt.Errorf("-%s needs a value, got an empty one", empty)
	case cfg.timeout <= 0:
		return config{}, fmt.Errorf("-timeout: must be positive, got %s", cfg.timeout)
	case cfg.file != "" && len(cfg.words) > 0:
		return config{}, fmt.Errorf("-f and a command (%s) are mutually exclusive", cfg.words[0])
	}
	if cfg.port != "" {
		if n, err := strconv.Atoi(cfg.port); err != nil || n < 1 || n > 65535 {
			return config{}, fmt.Errorf("-p: bad port %q (want 1-65535)", cfg.port)
		}
	}
	coords, err := coordAddrs(cfg.host, cfg.port)
	if err != nil {
		if i := slices.IndexFunc(cfg.words, func(w string) bool { return strings.HasPrefix(w, "-") && fs.Lookup(strings.TrimLeft(w, "-")) != nil }); i > 0 {
			// (bin/client G k -p 7000: flags stop at the command.)
			return config{}, fmt.Errorf("%w (flags go before the command: %s came after %s)", err, cfg.words[i], cfg.words[0])
		}
		return config{}, err
	}
	cfg.coords = coords
	return cfg, nil
}

// connect dials the coordinator within the timeout. On failure it reports
// the error and returns a nil Store with the exit status.
func connect(cfg config, stderr io.Writer, dial dialFunc) (Store, int) {
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	return connectCtx(ctx, cfg, stderr, dial)
}

func connectCtx(ctx context.Context, cfg config, stderr io.Writer, dial dialFunc) (Store, int) {
	addr := cfg.addr()
	store, err := dial(ctx, addr)
	if err != nil && (errors.Is(err, client.ErrAuth) || errors.Is(err, client.ErrPermission)) {
		printError(stderr, "", err.Error())
		return nil, ExitDenied
	}
	if err != nil {
		msg := describe(err, cfg.timeout, ctx.Err() != nil)
		// The client names the coordinators itself; say it once.
		if len(cfg.coords) == 1 {
			msg = strings.TrimPrefix(msg, "ftkv: coordinator "+addr+": ")
			printError(stderr, "", fmt.Sprintf("cannot reach coordinator at %s: %s", addr, msg))
		} else {
			msg = strings.TrimPrefix(msg, "ftkv: no coordinator of "+addr+" answered: ")
			printError(stderr, "", fmt.Sprintf("cannot reach any coordinator of %s: %s", addr, msg))
		}
		return nil, ExitUnavailable
	}
	return store, ExitOK
}

// oneShot runs the command given on the command line. The shell has split
// the words already: they are never unquoted or unescaped. The whole
// command in one argument with blanks in it (`bin/client … 'G "a b"'`)
// is a line of input, read as stdin's are.
func oneShot(cfg config, stdout, stderr io.Writer, dial dialFunc) int {
	toks := make([]Token, len(cfg.words))
	for i, w := range cfg.words {
		toks[i] = Token{Text: w}
	}
	var err error
	if len(cfg.words) == 1 && strings.ContainsAny(cfg.words[0], " \t") {
		toks, err = Tokenize(cfg.words[0])
	}
	var cmd command
	if err == nil {
		cmd, err = parseCommand(toks)
	}
	if err != nil {
		printError(stderr, "", err.Error())
		return exitCode(err)
	}
	switch cmd.op {
	case opHelp:
		io.WriteString(stdout, CommandHelp)
		return ExitOK
	case opQuit:
		return ExitOK
	}
	// One deadline for the whole invocation: dialing and the command.
	ctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
	defer cancel()
	store, code := connectCtx(ctx, cfg, stderr, dial)
	if store == nil {
		return code
	}
	defer store.Close()
	miss, err := execute(ctx, store, cmd, stdout)
	if err != nil {
		printError(stderr, "", describe(err, cfg.timeout, ctx.Err() != nil))
		return exitCode(err)
	}
	if miss {
		return ExitMiss
	}
	return ExitOK
}
