package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/chzyer/readline"
)

// session runs commands read line by line against one connection.
type session struct {
	store   Store
	timeout time.Duration
	stdout  *bufio.Writer
	stderr  io.Writer
}

// do runs one line. where prefixes error messages ("file:line", or empty
// at the prompt). It returns the exit status of a failure (0 if none) and
// whether the session should end. ctx is the parent of the command's
// deadline.
func (s *session) do(ctx context.Context, line, where string) (code int, quit bool) {
	trimmed := strings.TrimLeft(line, " \t\r\v\f")
	if trimmed == "" || trimmed[0] == '#' {
		return ExitOK, false
	}
	defer s.stdout.Flush()
	expired := false // the command's deadline ran out
	toks, err := Tokenize(line)
	if err == nil {
		var cmd command
		if cmd, err = parseCommand(toks); err == nil {
			switch cmd.op {
			case opQuit:
				return ExitOK, true
			case opHelp:
				s.stdout.WriteString(CommandHelp)
				return ExitOK, false
			}
			cctx, cancel := context.WithTimeout(ctx, s.timeout)
			_, err = execute(cctx, s.store, cmd, s.stdout)
			expired = cctx.Err() != nil
			cancel()
		}
	}
	if err != nil {
		s.stdout.Flush() // answers so far come before this error
		printError(s.stderr, where, describe(err, s.timeout, expired))
		return exitCode(err), false
	}
	return ExitOK, false
}

// batch reads commands from a file or pipe: no prompt, errors name the line.
func (s *session) batch(in io.Reader, name string) int {
	r := bufio.NewReaderSize(in, 64<<10)
	status := ExitOK
	for lineNo := 1; ; lineNo++ {
		// No line length limit: an escaped 1 MiB value is a 4 MiB line.
		line, err := r.ReadString('\n')
		if line != "" {
			code, quit := s.do(context.Background(), strings.TrimSuffix(line, "\n"), fmt.Sprintf("%s:%d", name, lineNo))
			if code != ExitOK {
				status = code
			}
			if quit {
				return status
			}
		}
		if err == io.EOF {
			return status
		}
		if err != nil {
			printError(s.stderr, name, err.Error())
			return ExitUsage
		}
	}
}

// interactive reads commands at a terminal with line editing and history.
// ctrl+C clears the line or interrupts the running command; ctrl+D or quit
// ends the session.
func (s *session) interactive(in *os.File, addr string) int {
	cfg := &readline.Config{
		Prompt:            "ftkv> ",
		HistorySearchFold: true,
		InterruptPrompt:   "^C",
		EOFPrompt:         "exit",
		Stdin:             in,
		Stdout:            os.Stderr, // the prompt is not output: `client > file` stays clean
		Stderr:            os.Stderr,
	}
	if home, err := os.UserHomeDir(); err == nil {
		cfg.HistoryFile = filepath.Join(home, ".ftkv_history")
	}
	rl, err := readline.NewEx(cfg)
	if err != nil {
		printError(s.stderr, "", "terminal: "+err.Error())
		return ExitUsage
	}
	defer rl.Close()
	fmt.Fprintf(s.stderr, "connected to %s; type help for the commands, quit to leave\n", addr)
	for {
		line, err := rl.Readline()
		if errors.Is(err, readline.ErrInterrupt) {
			continue
		}
		if err != nil { // io.EOF: ctrl+D
			return ExitOK
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
		_, quit := s.do(ctx, line, "")
		stop()
		if quit {
			return ExitOK
		}
	}
}
