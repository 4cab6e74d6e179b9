package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/term"

	"ftkv/client"
)

// PasswordEnv is the environment variable bin/client, bin/bench and
// bin/gateway read a user's password from (-user NAME). A password is
// never a flag's value: it would show in ps and in the shell's history.
const PasswordEnv = "FTKV_PASSWORD"

// errPasswordFlag: -a given (redis-cli's password flag).
var errPasswordFlag = errors.New("-a: ftkv takes no password on the command line (ps would show it): use -user NAME with the password in " + PasswordEnv + " or typed at the prompt")

// ttyFile is where the password prompt reads and writes when stdin is not
// a terminal (tests replace it).
var ttyFile = func() (*os.File, error) { return os.OpenFile("/dev/tty", os.O_RDWR, 0) }

// Password returns user's password: from PasswordEnv, or typed without
// echo at the terminal (stdin if it is one, else /dev/tty), prompting on
// prompt (stderr). It is how the ftkv commands that take -user get it.
func Password(user string, stdin *os.File, prompt io.Writer) (string, error) {
	if pw, ok := os.LookupEnv(PasswordEnv); ok {
		if pw == "" {
			return "", fmt.Errorf("%s is set but empty", PasswordEnv)
		}
		return pw, nil
	}
	in := stdin
	if in == nil || !term.IsTerminal(int(in.Fd())) {
		tty, err := ttyFile()
		if err != nil {
			return "", fmt.Errorf("-user %s: no password: set %s, or run at a terminal to type it", user, PasswordEnv)
		}
		defer tty.Close()
		in, prompt = tty, tty
	}
	fmt.Fprintf(prompt, "Password for %s: ", user)
	pw, err := term.ReadPassword(int(in.Fd()))
	fmt.Fprintln(prompt)
	if err != nil {
		return "", fmt.Errorf("reading the password: %w", err)
	}
	if len(pw) == 0 {
		return "", errors.New("empty password")
	}
	return string(pw), nil
}

// authDialer is the dial function of a client authenticating as user.
func authDialer(user, password string, opts ...client.Option) dialFunc {
	return func(ctx context.Context, addr string) (Store, error) {
		c, err := dialPatiently(ctx, func() (*client.Client, error) {
			return client.Dial(ctx, addr, append(opts, client.WithAuth(user, password))...)
		})
		if err != nil {
			return nil, err
		}
		return c, nil
	}
}
