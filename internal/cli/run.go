package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/term"

	"ftkv/client"
)

// DefaultTimeout bounds dialing and each command unless -timeout says otherwise.
const DefaultTimeout = 5 * time.Second

// dialFunc connects to the coordinator at addr.
type dialFunc func(ctx context.Context, addr string) (Store, error)

func dialClient(ctx context.Context, addr string) (Store, error) {
	c, err := client.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// config is the parsed command line.
type config struct {
	host, port string
	file       string
	timeout    time.Duration
	words      []string // the one-shot command and its arguments
}

func (c config) addr() string { return net.JoinHostPort(c.host, c.port) }

// Run is bin/client: args are the arguments after the program name. It
// returns the exit status.
func Run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return run(args, stdin, stdout, stderr, dialClient)
}

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
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	cfg.words = fs.Args()
	switch {
	case cfg.host == "":
		return config{}, errors.New("-h: empty coordinator host")
	case cfg.port == "":
		return config{}, errors.New("missing -p <coord_port>")
	case cfg.timeout <= 0:
		return config{}, fmt.Errorf("-timeout: must be positive, got %s", cfg.timeout)
	case cfg.file != "" && len(cfg.words) > 0:
		return config{}, fmt.Errorf("-f and a command (%s) are mutually exclusive", cfg.words[0])
	}
	if n, err := strconv.Atoi(cfg.port); err != nil || n < 1 || n > 65535 {
		return config{}, fmt.Errorf("-p: bad port %q (want 1-65535)", cfg.port)
	}
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
	if err != nil {
		msg := describe(err, cfg.timeout, ctx.Err() != nil)
		// The client names the coordinator itself; say it once.
		msg = strings.TrimPrefix(msg, "ftkv: coordinator "+addr+": ")
		printError(stderr, "", fmt.Sprintf("cannot reach coordinator at %s: %s", addr, msg))
		return nil, ExitUnavailable
	}
	return store, ExitOK
}

// oneShot runs the command given on the command line. The shell has split
// the words already: they are never unquoted or unescaped.
func oneShot(cfg config, stdout, stderr io.Writer, dial dialFunc) int {
	toks := make([]Token, len(cfg.words))
	for i, w := range cfg.words {
		toks[i] = Token{Text: w}
	}
	cmd, err := parseCommand(toks)
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
