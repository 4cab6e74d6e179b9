package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"ftkv/client"
)

// Exit statuses of bin/client.
const (
	ExitOK          = 0 // success
	ExitMiss        = 1 // G found nothing, T mismatched
	ExitUsage       = 2 // bad flag, command, quoting, or key/value too large
	ExitUnavailable = 3 // the cluster did not answer in time
	ExitDenied      = 4 // authentication failed, or the user's role does not allow the command
)

// exitCode maps an error to the exit status it stands for.
func exitCode(err error) int {
	var ue *usageError
	var se *SyntaxError
	switch {
	case err == nil:
		return ExitOK
	case errors.As(err, &ue), errors.As(err, &se), errors.Is(err, client.ErrTooLarge):
		return ExitUsage
	case errors.Is(err, client.ErrAuth), errors.Is(err, client.ErrPermission):
		return ExitDenied
	default:
		// Unreachable coordinator, deadline, unavailable shard, a server
		// error: the cluster did not give an answer.
		return ExitUnavailable
	}
}

// describe turns err into the text after "error: "; expired says whether
// the invocation's own deadline (-timeout) ran out.
func describe(err error, timeout time.Duration, expired bool) string {
	switch {
	case errors.Is(err, context.DeadlineExceeded) && expired:
		return fmt.Sprintf("no answer within %s: %v", timeout, err)
	case errors.Is(err, context.DeadlineExceeded):
		// A shorter deadline of the client's own (a handshake) ran out.
		return fmt.Sprintf("no answer in time: %v", err)
	case errors.Is(err, context.Canceled):
		return "interrupted"
	}
	return err.Error()
}

// printError writes one line "error: <where>: <msg>" (where may be empty).
func printError(w io.Writer, where, msg string) {
	if where != "" {
		msg = where + ": " + msg
	}
	// One line whatever the server or the OS put in the message.
	msg = strings.Join(strings.Fields(strings.ToValidUTF8(msg, "?")), " ")
	fmt.Fprintf(w, "error: %s\n", msg)
}
