package gateway

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"ftkv/client"
	"ftkv/wire"
)

// Error is an answer the gateway sends as a RESP error: the message starts
// with Redis's error code (ERR, WRONGTYPE, TRYAGAIN, CLUSTERDOWN, …), in
// Redis's words where Redis has some.
type Error string

func (e Error) Error() string { return string(e) }

// Redis's own messages, word for word, so that clients and scripts that
// match them keep working.
const (
	errSyntax      Error = "ERR syntax error"
	errNotInteger  Error = "ERR value is not an integer or out of range"
	errOverflow    Error = "ERR increment or decrement would overflow"
	errDBIndex     Error = "ERR DB index is out of range"
	errNoProto     Error = "NOPROTO unsupported protocol version"
	errMaxSize     Error = "ERR string exceeds maximum allowed size (proto-max-bulk-len)"
	errClientName  Error = "ERR Client names cannot contain spaces, newlines or special characters."
	errNoExpiry    Error = "ERR ftkv has no expiry: EX, PX, EXAT, PXAT and KEEPTTL are not supported"
	errNoMulti     Error = "ERR ftkv has no transactions: MULTI is not supported, and the commands up to EXEC or DISCARD are refused"
	errInMulti     Error = "ERR command not run: ftkv has no transactions (after MULTI, send EXEC or DISCARD)"
	errShutdown    Error = "ERR the gateway is shutting down"
	errMaxClients        = "-ERR max number of clients reached\r\n"
	protocolPrefix       = "ERR Protocol error: "
)

// wrongArity is Redis 7's answer to a command with the wrong number of
// arguments.
func wrongArity(name string) Error {
	return Error("ERR wrong number of arguments for '" + name + "' command")
}

// unknownCommand is Redis 7's answer to a command it does not know
// (server.c, processCommand): the name and the first arguments, 128 bytes
// of each at most, the arguments cut once 128 bytes are listed.
func unknownCommand(args [][]byte) Error {
	var sb strings.Builder
	for _, a := range args[1:] {
		if sb.Len() >= 128 {
			break
		}
		n := min(len(a), 128-sb.Len())
		sb.WriteString("'")
		sb.Write(a[:n])
		sb.WriteString("' ")
	}
	return Error(fmt.Sprintf("ERR unknown command '%s', with args beginning with: %s", cut(args[0], 128), sb.String()))
}

// unknownSubcommand is Redis's answer to an unknown subcommand of cmd.
func unknownSubcommand(cmd string, sub []byte) Error {
	return Error(fmt.Sprintf("ERR unknown subcommand '%s'. Try %s HELP.", cut(sub, 128), strings.ToUpper(cmd)))
}

func cut(b []byte, n int) string {
	if len(b) > n {
		b = b[:n]
	}
	return string(b)
}

func tooLarge(what string, n, limit int) Error {
	return Error(fmt.Sprintf("ERR %s of %d bytes is over ftkv's limit of %d bytes", what, n, limit))
}

// checkKey refuses a key over the cluster's limit before it is sent.
func checkKey(k []byte) error {
	if len(k) > wire.MaxKey {
		return tooLarge("key", len(k), wire.MaxKey)
	}
	return nil
}

// checkValue refuses a value over the cluster's limit before it is sent.
func checkValue(v []byte) error {
	if len(v) > wire.MaxValue {
		return tooLarge("value", len(v), wire.MaxValue)
	}
	return nil
}

// respError is replyError for a command that may have written: the
// answer to an error whose command is not known (a TRYAGAIN warns that a
// write may have been applied).
func respError(err error) Error { return replyError(err, true) }

// replyError turns an error of the cluster (the client library's) into
// the RESP error a Redis client understands; write: the command writes.
//
//   - a shard with no live copy for as long as the command could wait:
//     CLUSTERDOWN (the command was not applied);
//   - no answer in time (a failover longer than the gateway's timeout):
//     TRYAGAIN, for a write with the warning that its outcome is unknown
//     (it may have been applied);
//   - a write whose retries could no longer be exactly-once: TRYAGAIN
//     with the same warning;
//   - anything else: ERR with the library's message.
func replyError(err error, write bool) Error {
	var e Error
	switch msg := err.Error(); {
	case errors.As(err, &e):
		return e
	case errors.Is(err, client.ErrTooLarge):
		return Error("ERR " + oneLine(msg))
	case errors.Is(err, client.ErrUnavailable) || strings.Contains(msg, client.ErrUnavailable.Error()):
		// (A deadline reached while retrying names the last error only
		// in its text.)
		return Error("CLUSTERDOWN " + oneLine(msg))
	case errors.Is(err, client.ErrSessionExpired):
		return Error("TRYAGAIN " + oneLine(msg))
	case errors.Is(err, context.DeadlineExceeded) && write:
		return Error("TRYAGAIN ftkv did not answer in time (a write may have been applied): " + oneLine(msg))
	case errors.Is(err, context.DeadlineExceeded):
		return Error("TRYAGAIN ftkv did not answer in time: " + oneLine(msg))
	case errors.Is(err, client.ErrClosed), errors.Is(err, context.Canceled):
		return errShutdown
	}
	return Error("ERR " + oneLine(err.Error()))
}

func oneLine(s string) string {
	return strings.NewReplacer("\r", " ", "\n", " ").Replace(s)
}
