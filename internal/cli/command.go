package cli

import (
	"fmt"
	"strings"

	"ftkv/client"
	"ftkv/wire"
)

type op int

const (
	opPut op = iota + 1
	opGet
	opDelete
	opCAS
	opAppend
	opStatus
	opShutdown
	opHelp
	opQuit
)

// nilWord, unquoted as T's old value, means "only if the key is absent".
const nilWord = "(nil)"

// spec describes one command: its names (the first is canonical) and the
// words it takes after the name.
type spec struct {
	op     op
	names  []string
	args   []string // placeholders, for messages
	maxArg int      // > len(args) when trailing words are optional
}

var specs = []spec{
	{op: opPut, names: []string{"P", "PUT"}, args: []string{"key", "value"}},
	{op: opGet, names: []string{"G", "GET"}, args: []string{"key"}},
	{op: opDelete, names: []string{"D", "DEL", "DELETE"}, args: []string{"key"}},
	{op: opCAS, names: []string{"T", "CAS"}, args: []string{"key", "old", "new"}},
	{op: opAppend, names: []string{"A", "APPEND"}, args: []string{"key", "value"}},
	{op: opStatus, names: []string{"status"}, maxArg: 1},
	{op: opShutdown, names: []string{"shutdown"}},
	{op: opHelp, names: []string{"help"}},
	{op: opQuit, names: []string{"quit", "exit"}},
}

func lookup(name string) (spec, bool) {
	for _, s := range specs {
		for _, n := range s.names {
			if strings.EqualFold(n, name) {
				return s, true
			}
		}
	}
	return spec{}, false
}

// command is one validated request.
type command struct {
	op    op
	key   string
	value []byte // P, A: the value; T: the new value
	old   []byte // T: the expected value; nil means "absent"
	json  bool   // status --json
}

// usageError is bad input from the user: exit status 2.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return &usageError{msg: fmt.Sprintf(format, a...)} }

// parseCommand validates a tokenized line (or the words of one-shot mode).
func parseCommand(toks []Token) (command, error) {
	if len(toks) == 0 {
		return command{}, usagef("empty command")
	}
	sp, ok := lookup(toks[0].Text)
	if !ok {
		return command{}, usagef("unknown command %q (commands: P G D T A status shutdown help quit)", toks[0].Text)
	}
	args := toks[1:]
	lo, hi := len(sp.args), max(sp.maxArg, len(sp.args))
	if len(args) < lo || len(args) > hi {
		return command{}, usagef("%s takes %s, got %d", sp.names[0], synopsis(sp), len(args))
	}
	cmd := command{op: sp.op}
	switch sp.op {
	case opPut, opAppend:
		cmd.key, cmd.value = args[0].Text, bytesOf(args[1].Text)
	case opGet, opDelete:
		cmd.key = args[0].Text
	case opCAS:
		cmd.key, cmd.value = args[0].Text, bytesOf(args[2].Text)
		if args[1].Quoted || args[1].Text != nilWord {
			cmd.old = bytesOf(args[1].Text)
		}
	case opStatus:
		if len(args) == 1 {
			if f := args[0].Text; f != "--json" && f != "-json" {
				return command{}, usagef("status takes only --json, got %q", f)
			}
			cmd.json = true
		}
	}
	if err := checkLimits(cmd); err != nil {
		return command{}, err
	}
	return cmd, nil
}

// synopsis says what a command takes, e.g. `3 arguments (T key old new)`.
func synopsis(sp spec) string {
	if len(sp.args) == 0 && sp.maxArg == 0 {
		return "no arguments"
	}
	if sp.op == opStatus {
		return "no arguments or --json"
	}
	plural := "s"
	if len(sp.args) == 1 {
		plural = ""
	}
	return fmt.Sprintf("%d argument%s (%s %s)", len(sp.args), plural, sp.names[0], strings.Join(sp.args, " "))
}

// bytesOf copies s into a non-nil slice: an empty value is present, not absent.
func bytesOf(s string) []byte {
	b := make([]byte, len(s))
	copy(b, s)
	return b
}

// checkLimits rejects what the cluster would refuse anyway, before dialing,
// so that one-shot mode reports bad input as bad input even when the
// cluster is down.
func checkLimits(c command) error {
	if len(c.key) > wire.MaxKey {
		return fmt.Errorf("%w: key of %d bytes, limit %d", client.ErrTooLarge, len(c.key), wire.MaxKey)
	}
	for _, v := range [][]byte{c.value, c.old} {
		if len(v) > wire.MaxValue {
			return fmt.Errorf("%w: value of %d bytes, limit %d", client.ErrTooLarge, len(v), wire.MaxValue)
		}
	}
	return nil
}
